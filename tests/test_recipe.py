"""asr-run end to end on real speech (FSDD, tiny mode), the typed experiment config, and its errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import torch
import yaml

import asr
from asr.recipe.config import ExperimentConfig
from asr.train import load_checkpoint


def asr_run(*overrides: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "asr.cli.run", *overrides], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def fsdd_run(shared_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("fsdd")
    overrides = ("recipe=fsdd", "mode=tiny", f"data.root={shared_dir / 'data' / 'fsdd'}",
                 f"exp_dir={root / 'exp'}", f"data.dir={root / 'data'}", "trainer.save_every_steps=1")
    result = asr_run(*overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    return root, overrides, result


def test_all_stages_write_their_artefacts(fsdd_run):
    root, _, _ = fsdd_run
    exp = root / "exp"
    for split in ("train", "dev", "test"):
        assert (root / "data" / f"{split}.jsonl").is_file()
    assert len(asr.read_manifest(root / "data" / "train.jsonl")) == 40  # mode=tiny: 40 digit strings
    resolved = yaml.safe_load((exp / "config.yaml").read_text())
    assert resolved["exp_dir"] == str(exp) and resolved["model"]["encoder"]["d_model"] == 64
    assert (exp / "checkpoints" / "last.pt").is_file() and (exp / "model.avg.pt").is_file()
    assert (exp / "train_curves.png").is_file() and (exp / "metrics.jsonl").is_file()
    speech = asr.load_model(exp / "model")
    averaged = torch.load(exp / "model.avg.pt", weights_only=True)["model"]
    for name, value in speech.model.state_dict().items():
        torch.testing.assert_close(value, averaged[name])
    decode_dir = exp / "decode" / "test"
    hyp = (decode_dir / "hyp.txt").read_text().splitlines()
    ref = (decode_dir / "ref.txt").read_text().splitlines()
    assert len(hyp) == len(ref) == 10 and [h.split()[0] for h in hyp] == [r.split()[0] for r in ref]
    results = json.loads((decode_dir / "results.json").read_text())
    assert "wer" in json.dumps(results)
    assert (exp / "RESULTS.md").is_file()


def test_rerunning_a_stage_resumes_instead_of_restarting(fsdd_run):
    root, overrides, _ = fsdd_run
    before = json.loads((root / "exp" / "metrics.jsonl").read_text().splitlines()[-1])
    result = asr_run(*overrides, "stage=train")
    assert result.returncode == 0, result.stderr[-3000:]
    after = json.loads((root / "exp" / "metrics.jsonl").read_text().splitlines()[-1])
    assert after["step"] == before["step"]  # nothing left to train: it resumed at the end


def test_a_decode_run_keeps_the_training_config(fsdd_run):
    root, overrides, _ = fsdd_run
    exp = root / "exp"
    trained = (exp / "config.yaml").read_text()
    result = asr_run(*overrides, "stages=[decode,score]", "decode.beam_size=2", "decode_dtype=bfloat16")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (exp / "config.yaml").read_text() == trained
    assert yaml.safe_load((exp / "config.decode_score.yaml").read_text())["decode"]["beam_size"] == 2
    assert "beam_size=2" in (exp / "RESULTS.md").read_text() and "dtype=bfloat16" in (exp / "RESULTS.md").read_text()


def test_num_procs_trains_in_processes_started_by_asr_run(fsdd_run, shared_dir, tmp_path):
    # trainer.num_procs=2: asr-run starts a 2-process DDP group itself (no torchrun) for the train
    # stage, then averages, decodes and scores in the one process, as a 1-process run does.
    root, _, _ = fsdd_run
    exp = tmp_path / "exp"
    result = asr_run("recipe=fsdd", "mode=tiny", f"data.root={shared_dir / 'data' / 'fsdd'}", f"exp_dir={exp}",
                     f"data.dir={root / 'data'}", "trainer.num_procs=2", "trainer.max_epochs=1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "train: 2 processes" in result.stderr
    # The processes log into run.log in Hydra's format, as asr-run itself does (rank 0's progress).
    log = (exp / "run.log").read_text()
    assert re.search(r"^\[[^]]+\]\[asr\.train\.trainer\]\[INFO\] - event=valid step=", log, re.M), log[-2000:]
    last = load_checkpoint(exp / "checkpoints" / "last.pt")
    assert len(last["rng"]) == 2  # both ranks' RNG streams: it really trained in two processes
    assert (exp / "RESULTS.md").is_file() and (exp / "decode" / "test").is_dir()


def test_config_errors_name_the_field(tmp_path):
    result = asr_run("recipe=fsdd", "+trainer.max_epoch=3", f"exp_dir={tmp_path}", "stage=train")
    assert result.returncode != 0 and "config.trainer: unknown key 'max_epoch'" in result.stderr
    result = asr_run("recipe=fsdd", "stage=prepare", f"exp_dir={tmp_path}", f"data.dir={tmp_path}/d")
    assert result.returncode != 0 and "set data.root" in result.stderr
    with pytest.raises(ValueError, match="unknown stage"):
        ExperimentConfig.from_hydra({"recipe": {"name": "x"}, "stages": ["train", "eval"]})
    with pytest.raises(ValueError, match="task='mt'"):
        ExperimentConfig.from_hydra({"recipe": {"name": "x"}, "task": "mt"})
    with pytest.raises(ValueError, match="decode_dtype='half': expected one of float32, bfloat16, float16"):
        ExperimentConfig.from_hydra({"recipe": {"name": "x"}, "decode_dtype": "half"})


def test_tiny_mode_and_task_settings():
    config = ExperimentConfig.from_hydra({"recipe": {"name": "x", "prepare": {"kind": "fsdd", "a": 1},
                                                     "tiny_prepare": {"a": 2}, "tiny": True},
                                          "task": "st", "stage": "decode"})
    assert config.stages == ("decode",) and config.recipe.prepare_settings == {"kind": "fsdd", "a": 2}
    assert config.prefix_tokens == ("<st>", "<de>")
    assert config.decode_options.task == "st" and config.decode_options.target_lang == "de"


def test_translation_decodes_without_ctc():
    # The default decode.ctc_weight (0.3) means "the task's default": 0 for translation, whose CTC head
    # models the source transcript; an explicit other weight with task=st fails before anything runs.
    recipe = {"name": "x"}
    assert ExperimentConfig.from_hydra({"recipe": recipe, "task": "st"}).decode_options.ctc_weight == 0.0
    assert ExperimentConfig.from_hydra({"recipe": recipe, "task": "asr"}).decode_options.ctc_weight == 0.3
    st = ExperimentConfig.from_hydra({"recipe": recipe, "task": "st", "decode": {"ctc_weight": 0.0, "beam_size": 3}})
    assert st.decode_options.ctc_weight == 0.0 and st.decode_options.beam_size == 3
    with pytest.raises(ValueError, match="decode.ctc_weight=0.5 with task=st: the CTC head models the source"):
        ExperimentConfig.from_hydra({"recipe": recipe, "task": "st", "decode": {"ctc_weight": 0.5}})


def test_stage_guards(tmp_path, monkeypatch):
    from asr.data import Utterance, write_manifest
    from asr.recipe import stages

    with pytest.raises(ValueError, match="average: num must be >= 1 and by 'best' or 'last'"):
        ExperimentConfig.from_hydra({"recipe": {"name": "x"}, "average": {"num": 0}})
    config = ExperimentConfig.from_hydra({"recipe": {"name": "x"}, "task": "st", "data": {"dir": str(tmp_path)},
                                          "stages": ["decode"]})
    write_manifest(tmp_path / "train.jsonl", [Utterance("a", str(tmp_path / "a.wav"), 1.0, "hello")])
    with pytest.raises(ValueError, match=r"train.jsonl: task=st needs target_text, missing in 1 utterances"):
        stages._read(config, "train", check_audio=False)
    with pytest.raises(FileNotFoundError, match=r"test.jsonl: manifest not found; run the prepare stage first"):
        stages._read(config, "test")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match=r"under torchrun \(WORLD_SIZE=2\) run only the train \(or lm\) stage"):
        stages.run_stages(config)
