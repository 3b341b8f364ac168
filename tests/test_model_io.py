"""The model directory: save_model_dir -> load_model round trip, clear errors for broken directories, the
LM loaded with a model for fusion, and translation decoding without CTC."""

from __future__ import annotations

from contextlib import nullcontext

import pytest
import torch
import yaml

import asr
from asr.decode import DecodeOptions
from asr.features import CMVNStats, FeatureConfig
from asr.model import (
    DecoderConfig,
    EncoderConfig,
    LMConfig,
    ModelConfig,
    TransformerLM,
    build_lm,
    build_model,
    save_lm_dir,
)
from asr.model.io import (
    CONFIG_FILE,
    DEFAULT_CTC_WEIGHT,
    WEIGHTS_FILE,
    apply_task_defaults,
    read_model_config,
    save_model_dir,
)
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


def test_weights_of_the_wrong_shape_name_the_file_and_the_parameters(tmp_path):
    model, _ = tiny_model_dir(tmp_path)
    config = yaml.safe_load((tmp_path / CONFIG_FILE).read_text())
    config["model"]["decoder"]["ffn_dim"] = 48  # same parameters, other shapes
    (tmp_path / CONFIG_FILE).write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match=r"model.pt: weights do not match config.yaml: wrong shape "
                                         r"\[decoder\.layers\.0\.ffn\.\S+ \(64, 32\) \(config.yaml: \(48, 32\)\)"):
        asr.load_model(tmp_path)
    # The same check for another weights file (e.g. an averaged checkpoint) names that file.
    state = model.state_dict()
    state["ctc.proj.weight"] = "not a tensor"
    torch.save({"model": state}, tmp_path / "avg.pt")
    config["model"]["decoder"]["ffn_dim"] = 64
    (tmp_path / CONFIG_FILE).write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match=r"avg.pt: weights do not match config.yaml: wrong shape "
                                         r"\[ctc.proj.weight <str, not a tensor>"):
        asr.load_model(tmp_path, weights=tmp_path / "avg.pt")


def test_config_file_errors(tmp_path):
    tiny_model_dir(tmp_path)
    config = yaml.safe_load((tmp_path / CONFIG_FILE).read_text())
    (tmp_path / CONFIG_FILE).write_text(yaml.safe_dump({**config, "features": {**config["features"], "n_mels": 80}}))
    with pytest.raises(ValueError, match=r"model input_dim \(40\) does not match the features' n_mels \(80\)"):
        asr.load_model(tmp_path)
    (tmp_path / CONFIG_FILE).write_text(yaml.safe_dump({"model": config["model"]}))
    with pytest.raises(ValueError, match="expected a mapping with 'model' and 'features' sections"):
        read_model_config(tmp_path)
    (tmp_path / CONFIG_FILE).write_text(yaml.safe_dump({**config, "format_version": "two"}))
    with pytest.raises(ValueError, match="config.yaml: format_version 'two': expected an integer"):
        read_model_config(tmp_path)


def test_translation_decodes_without_ctc_unless_asked(tmp_path):
    tiny_model_dir(tmp_path)
    speech = asr.load_model(tmp_path)
    default = DecodeOptions()
    assert DecodeOptions(**default.to_dict()) == default and default.to_dict()["ctc_weight"] == DEFAULT_CTC_WEIGHT
    # The default ctc_weight means "the task's default": 0 for translation, unchanged for transcription.
    assert apply_task_defaults(DecodeOptions(task="st")).ctc_weight == 0.0
    assert apply_task_defaults(DecodeOptions(task="asr")).ctc_weight == DEFAULT_CTC_WEIGHT
    assert apply_task_defaults(DecodeOptions(task="st", ctc_weight=0.5)).ctc_weight == 0.5
    feats, lengths = torch.randn(2, 80, 40), torch.tensor([80, 60])
    translated = speech.decode(feats, lengths, DecodeOptions(task="st", beam_size=2))
    untouched = speech.decode(feats, lengths, DecodeOptions(task="st", beam_size=2, ctc_weight=0.0))
    assert [r.tokens for r in translated] == [r.tokens for r in untouched]
    wave = torch.randn(8000).numpy() * 0.1
    assert speech.transcribe(wave, task="st", beam_size=2).tokens == speech.transcribe(
        wave, task="st", beam_size=2, ctc_weight=0.0).tokens
    # An explicit ctc_weight is kept, and the search says why it cannot translate with it.
    with pytest.raises(ValueError, match="ctc_weight=0.5 with task='st'"):
        speech.transcribe(wave, task="st", ctc_weight=0.5)
    with pytest.raises(ValueError, match="ctc_weight=0.5 with task='st'"):
        speech.decode(feats, lengths, DecodeOptions(task="st", ctc_weight=0.5))


def test_a_language_model_is_loaded_with_the_model_and_fused(tmp_path):
    _, tokenizer = tiny_model_dir(tmp_path / "model")
    torch.manual_seed(0)
    lm = build_lm(LMConfig(vocab_size=tokenizer.vocab_size, d_model=16, n_heads=2, n_layers=1, ffn_dim=32))
    save_lm_dir(tmp_path / "lm", lm, tokenizer)
    speech = asr.load_model(tmp_path / "model", lm=tmp_path / "lm")
    assert isinstance(speech.lm, TransformerLM) and not speech.lm.training
    feats, lengths = torch.randn(2, 80, 40), torch.tensor([80, 60])
    plain = speech.decode(feats, lengths, DecodeOptions(beam_size=3, nbest=3))
    fused = speech.decode(feats, lengths, DecodeOptions(beam_size=3, nbest=3, lm_weight=0.5))
    assert len(fused) == 2 and [r.score for r in fused] != [r.score for r in plain]
    with pytest.raises(ValueError, match="needs a language model"):
        asr.load_model(tmp_path / "model").decode(feats, lengths, DecodeOptions(lm_weight=0.5))
    # An LM trained with another tokenizer cannot be fused.
    other = train_tokenizer(["completely different text with more letters xyz"], kind="char")
    save_lm_dir(tmp_path / "other_lm", build_lm(LMConfig(vocab_size=other.vocab_size, d_model=16, n_heads=2,
                                                         n_layers=1, ffn_dim=32)), other)
    with pytest.raises(ValueError, match="an LM must be trained with the model's tokenizer"):
        asr.load_model(tmp_path / "model", lm=tmp_path / "other_lm")


def test_a_model_loaded_in_bfloat16_computes_in_it_close_to_float32(tmp_path):
    _, tokenizer = tiny_model_dir(tmp_path / "model")
    torch.manual_seed(0)
    save_lm_dir(tmp_path / "lm", build_lm(LMConfig(vocab_size=tokenizer.vocab_size, d_model=16, n_heads=2,
                                                   n_layers=1, ffn_dim=32)), tokenizer)
    exact = asr.load_model(tmp_path / "model", lm=tmp_path / "lm")
    fast = asr.load_model(tmp_path / "model", lm=tmp_path / "lm", dtype="bfloat16")
    assert exact.dtype == torch.float32 and fast.dtype == torch.bfloat16
    assert next(fast.lm.parameters()).dtype == torch.bfloat16
    # The CMVN statistics keep float32: they are applied before the cast to the encoder's dtype.
    assert fast.model.cmvn.mean.dtype == torch.float32 and torch.equal(fast.model.cmvn.mean, exact.model.cmvn.mean)
    feats, lengths = torch.randn(2, 120, 40) * 3 + 1, torch.tensor([120, 90])
    tokens = torch.tensor([tokenizer.encode("one two three")] * 2)
    with torch.no_grad():
        enc, enc_lengths = exact.model.encode(feats, lengths)
        enc16, _ = fast.model.encode(feats, lengths)
        logp = exact.model.decoder(tokens, enc, enc_lengths).log_softmax(-1)
        logp16 = fast.model.decoder(tokens, enc16, enc_lengths).float().log_softmax(-1)
    assert enc16.dtype == torch.bfloat16
    assert (enc16.float() - enc).abs().max() < 0.05 * enc.abs().max()
    assert (logp16 - logp).abs().max() < 0.05
    # Every decoding method runs on it, and scores stay float32 (each scorer log-softmaxes in float32).
    for options in (DecodeOptions(beam_size=3, nbest=3, lm_weight=0.3), DecodeOptions(beam_size=1, ctc_weight=0.0),
                    DecodeOptions(method="ctc_greedy"), DecodeOptions(method="ctc_prefix_beam"),
                    DecodeOptions(method="attention_rescoring")):
        results = fast.decode(feats, lengths, options)
        assert len(results) == 2 and all(isinstance(r.score, float) and r.score > float("-inf") for r in results)
    with pytest.raises(ValueError, match="dtype 'int8': expected one of float32, bfloat16, float16"):
        asr.load_model(tmp_path / "model", dtype="int8")
    # float16 works on a CPU too, but is no faster there without AMX-FP16: it says so.
    warns = pytest.warns(UserWarning, match="float16 on a CPU without AMX-FP16 is no faster than float32")
    with nullcontext() if torch.cpu._is_amx_fp16_supported() else warns:
        half = asr.load_model(tmp_path / "model", dtype="float16")
    assert half.dtype == torch.float16 and len(half.decode(feats, lengths, DecodeOptions(beam_size=2))) == 2
