"""The LM recipe end to end (tiny synth corpus): recipe=synth_lm trains a language model with the experiment's
tokenizer, and the ASR decode stage fuses it (decode.lm_weight > 0). Plus the lm stage's text sources and errors."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import asr
from asr.cli.run import CONF_DIR
from asr.cli.transcribe import main as transcribe_main
from asr.data import TextDataset, read_manifest
from asr.model import LMConfig, ModelConfig, TransformerLM, build_model, load_lm
from asr.model.io import save_model_dir
from asr.recipe import stages
from asr.recipe.config import ExperimentConfig
from asr.text import load_tokenizer
from tests.test_recipe import asr_run

TINY_LM = ("lm.model.d_model=32", "lm.model.n_heads=2", "lm.model.n_layers=1", "lm.model.ffn_dim=64")


def experiment(*overrides: str) -> ExperimentConfig:
    """The ExperimentConfig that `asr-run *overrides` would run (composed from conf/ like the CLI)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides))
    return ExperimentConfig.from_hydra(OmegaConf.to_container(cfg, resolve=True))


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    """`asr-run recipe=synth_lm mode=tiny`: prepare, tokenizer and lm stages on the tiny synth corpus."""
    root = tmp_path_factory.mktemp("synth_lm")
    paths = (f"data.dir={root / 'data'}", f"exp_dir={root / 'exp'}")
    result = asr_run("recipe=synth_lm", "mode=tiny", *paths, "trainer.progress_bar=false")  # mode=tiny: a tiny LM
    assert result.returncode == 0, result.stderr[-3000:]
    return root, paths


def test_synth_lm_recipe_trains_a_language_model_with_the_experiments_tokenizer(lm_run):
    root, _ = lm_run
    exp = root / "exp"
    assert len(read_manifest(root / "data" / "train.jsonl")) == 40  # the tiny corpus, prepared by the recipe
    lm_dir = exp / "lm" / "model"
    assert {p.name for p in lm_dir.iterdir()} >= {"config.yaml", "lm.pt", "tokenizer.json"}
    assert (exp / "lm" / "checkpoints" / "index.json").is_file() and (exp / "lm" / "metrics.jsonl").is_file()
    assert not (exp / "checkpoints").exists()  # the speech model's training state stays apart
    resolved = yaml.safe_load((exp / "config.yaml").read_text())
    assert resolved["recipe"]["stages"] == ["prepare", "tokenizer", "lm"] and resolved["recipe"]["name"] == "synth"
    tokenizer = load_tokenizer(exp / "model")
    lm = load_lm(lm_dir, tokenizer=tokenizer)  # the same tokenizer, token for token
    assert isinstance(lm, TransformerLM) and lm.config.d_model == 64 and lm.config.vocab_size == tokenizer.vocab_size
    # The LM's weights are the average of its two validated checkpoints (mode=tiny: average.num=2).
    index = json.loads((exp / "lm" / "checkpoints" / "index.json").read_text())
    assert len(index["best"]) == 2
    averaged = torch.load(exp / "lm" / "model.avg.pt", weights_only=True)["model"]
    for name, value in lm.state_dict().items():
        torch.testing.assert_close(value, averaged[name])


def test_decode_stage_fuses_the_language_model(lm_run):
    root, paths = lm_run
    exp = root / "exp"
    # An (untrained) tiny speech model with the experiment's tokenizer stands in for the train stage.
    tokenizer = load_tokenizer(exp / "model")
    config = experiment("recipe=synth", "mode=tiny", *paths, "stages=[decode,score]", "decode.lm_weight=0.2",
                        "decode.max_len=6")
    features = config.data.features
    torch.manual_seed(0)
    model = build_model(ModelConfig.from_dict({**config.model, "vocab_size": tokenizer.vocab_size,
                                               "input_dim": features.n_mels}))
    save_model_dir(exp / "model", model, tokenizer, features)
    assert config.lm_dir == exp / "lm" / "model" and config.decode_options.lm_weight == 0.2
    stages.run_stages(config)
    hyp = (exp / "decode" / "test" / "hyp.txt").read_text().splitlines()
    assert len(hyp) == 8 and all(line.startswith("synth-test-") for line in hyp)
    settings = json.loads((exp / "decode" / "test" / "results.json").read_text())["settings"]
    assert settings["lm_weight"] == 0.2 and settings["lm"] == str(exp / "lm" / "model")
    assert "lm=" in (exp / "RESULTS.md").read_text()
    # The Python API loads the same pair.
    speech = asr.load_model(exp / "model", lm=exp / "lm" / "model")
    assert speech.lm is not None and speech.lm.config.vocab_size == tokenizer.vocab_size
    # And so does asr-transcribe (--lm-weight without --lm is an error that says what is missing).
    wav = read_manifest(root / "data" / "test.jsonl")[0].audio
    lm_args = ["--beam-size", "2", "--lm-weight", "0.2"]
    assert transcribe_main([str(exp / "model"), wav, *lm_args, "--lm", str(exp / "lm" / "model")]) == 0
    assert transcribe_main([str(exp / "model"), wav, *lm_args]) == 2

    # Without a language model, decode.lm_weight > 0 says how to get one.
    missing = experiment("recipe=synth", "mode=tiny", *paths, "stage=decode", "decode.lm_weight=0.2",
                         f"lm.dir={root / 'nowhere'}")
    with pytest.raises(FileNotFoundError, match=r"lm_weight=0.2 needs a language model, but \S*nowhere holds none"):
        stages.decode(missing)


def test_lm_stage_reads_text_files_and_manifests(lm_run, tmp_path):
    root, _ = lm_run
    text = tmp_path / "extra.txt"
    text.write_text("Turn on the lights.\n\nplay some music\n", encoding="utf-8")
    (tmp_path / "exp" / "model").mkdir(parents=True)
    for path in (root / "exp" / "model").glob("tokenizer.*"):  # tokenizer.json (+ the SentencePiece model)
        shutil.copy(path, tmp_path / "exp" / "model")
    manifest = str(root / "data" / "dev.jsonl")
    config = experiment("recipe=synth_lm", "mode=tiny", f"data.dir={root / 'data'}", f"exp_dir={tmp_path / 'exp'}",
                        "stage=lm", *TINY_LM, f"lm.text=[{text},{manifest}]", f"lm.valid_text=[{text}]",
                        f"lm.dir={tmp_path / 'fusion_lm'}", "trainer.max_epochs=1", "average.num=1",
                        "trainer.progress_bar=false")
    tokenizer = load_tokenizer(tmp_path / "exp" / "model")
    reused = stages.tokenizer(config)  # the tokenizer stage reuses the saved one
    assert [reused.id_to_token(i) for i in range(reused.vocab_size)] == [
        tokenizer.id_to_token(i) for i in range(tokenizer.vocab_size)]
    train_set, lengths = stages._lm_texts(config, config.lm.text, config.data.train, tokenizer, "lm.text")
    dev = read_manifest(manifest, check_audio=False)
    assert len(train_set) == 2 + len(dev) and len(lengths) == len(train_set)
    assert tokenizer.decode(train_set[0]["targets"].tolist()) == "turn on the lights"
    assert train_set[2]["id"] == dev[0].id
    stages.run_stages(config)
    assert load_lm(tmp_path / "fusion_lm", tokenizer=tokenizer).config.n_layers == 1  # written to lm.dir

    # task=st: the LM learns the translations, the target side of the manifests.
    st = experiment("recipe=synth_lm", "mode=tiny", f"data.dir={root / 'data'}", "task=st")
    dev_set, _ = stages._lm_texts(st, (manifest,), st.data.valid, tokenizer, "lm.text")
    assert dev_set[0]["targets"].tolist() == tokenizer.encode(dev[0].target_text)


def test_lm_stage_errors(tmp_path):
    config = experiment("recipe=synth_lm", f"exp_dir={tmp_path}", f"data.dir={tmp_path}")
    with pytest.raises(FileNotFoundError, match="run the tokenizer stage first"):
        stages.lm(config)
    from asr.text import train_tokenizer

    train_tokenizer(["some text"]).save(tmp_path / "model")
    with pytest.raises(ValueError, match="trainer.best_metric=valid_wer: a language model decodes no audio"):
        stages.lm(experiment("recipe=synth_lm", f"exp_dir={tmp_path}", "trainer.best_metric=valid_wer"))
    with pytest.raises(FileNotFoundError, match=r"lm.text: \S*missing.txt: no such file"):
        stages.lm(experiment("recipe=synth_lm", f"exp_dir={tmp_path}", f"lm.text=[{tmp_path / 'missing.txt'}]"))
    with pytest.raises(ValueError, match="config.lm.model: unknown key 'layers'"):
        stages.lm(experiment("recipe=synth_lm", f"exp_dir={tmp_path}", f"data.dir={tmp_path}",
                             f"lm.text=[{_write(tmp_path / 'a.txt')}]", f"lm.valid_text=[{tmp_path / 'a.txt'}]",
                             "+lm.model.layers=2"))
    with pytest.raises(ValueError, match="lm.max_tokens=0"):
        experiment("recipe=synth_lm", "lm.max_tokens=0")


def test_lm_recipes_reuse_their_corpus_recipe():
    config = experiment("recipe=librispeech_lm", "data.root=/data/LibriSpeech")
    assert config.stages == ("prepare", "tokenizer", "lm") and config.recipe.name == "librispeech"
    assert config.exp_dir == "exp/librispeech_asr" and config.lm_dir.as_posix() == "exp/librispeech_asr/lm/model"
    assert config.lm.model["d_model"] == 512 and config.trainer.best_metric == "valid_loss"
    st = experiment("recipe=synth_lm", "task=st", "mode=tiny")
    assert st.model_dir.as_posix() == "exp/synth_st_tiny/model" and st.data.dir == "data/synth_tiny"


def test_language_model_and_text_dataset_are_exported():
    import asr.data
    import asr.model

    assert asr.model.TransformerLM is TransformerLM and asr.model.LMConfig is LMConfig
    assert asr.data.TextDataset is TextDataset and "TextDataset" in asr.data.__all__
    assert {"TransformerLM", "LMConfig", "build_lm", "load_lm", "save_lm_dir"} <= set(asr.model.__all__)


def _write(path):
    path.write_text("open the door\n", encoding="utf-8")
    return path
