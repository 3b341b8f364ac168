"""The model directory: save_model_dir -> load_model round trip, and clear errors for broken directories."""

from __future__ import annotations

import pytest
import torch
import yaml

import asr
from asr.features import CMVNStats, FeatureConfig
from asr.model import DecoderConfig, EncoderConfig, ModelConfig, build_model
from asr.model.io import CONFIG_FILE, WEIGHTS_FILE, read_model_config, save_model_dir
from asr.text import train_tokenizer

FEATURES = FeatureConfig(n_mels=40, sample_rate=8000, n_fft=256)


def tiny_model_dir(path, kind="char"):
    tokenizer = train_tokenizer(["one two three", "four five six seven"] * 5, kind=kind, vocab_size=30,
                                extra_tokens=("<asr>",))
    torch.manual_seed(0)
    model = build_model(ModelConfig(
        vocab_size=tokenizer.vocab_size, input_dim=FEATURES.n_mels,
        encoder=EncoderConfig(d_model=32, n_heads=2, n_layers=1, ffn_dim=64, subsampling_channels=8),
        decoder=DecoderConfig(d_model=32, n_heads=2, n_layers=1, ffn_dim=64)))
    stats = CMVNStats(FEATURES.n_mels)
    stats.update(torch.randn(50, FEATURES.n_mels) * 3 + 1)
    model.cmvn.set_stats(stats)
    save_model_dir(path, model, tokenizer, FEATURES, cmvn=stats)
    return model, tokenizer


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_round_trip_gives_the_same_model(tmp_path, kind):
    model, tokenizer = tiny_model_dir(tmp_path, kind)
    assert {p.name for p in tmp_path.iterdir()} >= {"config.yaml", "model.pt", "tokenizer.json", "cmvn.json"}
    # model.pt is a plain state dict of tensors: loadable without unpickling anything.
    state = torch.load(tmp_path / WEIGHTS_FILE, weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())

    speech = asr.load_model(tmp_path)
    assert not speech.model.training and speech.sample_rate == 8000
    assert speech.tokenizer.encode("one two") == tokenizer.encode("one two")
    feats, lengths = torch.randn(2, 120, 40), torch.tensor([120, 90])
    model.eval()
    with torch.no_grad():
        expected = model.encode(feats, lengths)[0]
        loaded = speech.model.encode(feats, lengths)[0]
    torch.testing.assert_close(loaded, expected)
    assert "SpeechModel(" in repr(speech)


def test_broken_directories_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.yaml: no such file"):
        asr.load_model(tmp_path)
    tiny_model_dir(tmp_path)
    config = yaml.safe_load((tmp_path / CONFIG_FILE).read_text())

    config["model"]["encoder"]["n_layers"] = 2  # the weights no longer fit the config
    (tmp_path / CONFIG_FILE).write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match="weights do not match config.yaml: missing"):
        asr.load_model(tmp_path)

    config["model"]["encoder"]["n_layer"] = 1
    (tmp_path / CONFIG_FILE).write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match=r"config.yaml: ModelConfig.encoder: unknown key 'n_layer'"):
        read_model_config(tmp_path)

    (tmp_path / CONFIG_FILE).write_text("model: [unclosed")
    with pytest.raises(ValueError, match="not valid YAML"):
        read_model_config(tmp_path)

    config["model"]["encoder"].pop("n_layer")
    config["model"]["encoder"]["n_layers"] = 1
    (tmp_path / CONFIG_FILE).write_text(yaml.safe_dump(config))
    (tmp_path / WEIGHTS_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="model.pt: cannot load"):
        asr.load_model(tmp_path)


def test_vocabulary_mismatch_is_an_error(tmp_path):
    model, _ = tiny_model_dir(tmp_path)
    other = train_tokenizer(["completely different text with more letters xyz"], kind="char")
    other.save(tmp_path)
    with pytest.raises(ValueError, match="does not match the tokenizer"):
        asr.load_model(tmp_path)
