"""Training building blocks without a model: configs, schedules, error rates, checkpoints, logs, plots."""

from __future__ import annotations

import json
import math
import os
import random

import numpy as np
import pytest
import torch

from asr.metrics import error_rate
from asr.train.checkpoint import (
    CheckpointManager,
    average_checkpoints,
    average_experiment,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    select_checkpoints,
)
from asr.train.config import OptimConfig, TrainerConfig
from asr.train.metrics_log import MetricsLogger, read_metrics
from asr.train.optim import build_optimizer, build_scheduler
from asr.train.plots import plot_attention, plot_training_curves

# --- configs ------------------------------------------------------------------------------------


def test_config_from_dict_rejects_unknown_keys():
    assert OptimConfig.from_dict({"lr": 2e-3, "betas": [0.9, 0.99]}).betas == (0.9, 0.99)
    with pytest.raises(ValueError, match="OptimConfig: unknown key 'learning_rate'"):
        OptimConfig.from_dict({"learning_rate": 1e-3})
    with pytest.raises(ValueError, match="TrainerConfig: unknown key 'max_epoch'"):
        TrainerConfig.from_dict({"max_epoch": 3})
    with pytest.raises(ValueError, match="TrainerConfig.best_metric"):
        TrainerConfig(best_metric="bleu")
    with pytest.raises(ValueError, match="OptimConfig.scheduler"):
        OptimConfig(scheduler="linear")
    config = TrainerConfig(sampling_prob=0.4, sampling_ramp_steps=10, best_metric="valid_acc")
    assert config.higher_is_better and not TrainerConfig().higher_is_better
    assert [config.sampling_prob_at(s) for s in (0, 5, 10, 50)] == [0.0, 0.2, 0.4, 0.4]
    assert TrainerConfig.from_dict(config.to_dict()) == config


# --- schedules ----------------------------------------------------------------------------------


def _lrs(config: OptimConfig, steps: int, total: int = 100) -> list[float]:
    model = torch.nn.Linear(4, 4)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config, total)
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_noam_warmup_peak_and_decay():
    lrs = _lrs(OptimConfig(lr=1e-3, warmup_steps=10), 40)
    assert max(lrs) == pytest.approx(1e-3) and int(np.argmax(lrs)) == 9  # update 10 uses the peak
    assert lrs[0] == pytest.approx(1e-4)
    assert all(a < b for a, b in zip(lrs[:9], lrs[1:10]))
    assert lrs[39] == pytest.approx(1e-3 * math.sqrt(10 / 40))


def test_cosine_reaches_min_lr_and_constant_is_flat():
    lrs = _lrs(OptimConfig(lr=1e-3, warmup_steps=10, scheduler="cosine", min_lr=1e-5), 60, total=50)
    assert max(lrs) == pytest.approx(1e-3) and int(np.argmax(lrs)) == 9
    assert lrs[49] == pytest.approx(1e-5) and lrs[59] == pytest.approx(1e-5)
    assert lrs[29] == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5, rel=1e-6)  # halfway: update 30
    assert _lrs(OptimConfig(lr=1e-3, warmup_steps=0, scheduler="constant"), 5) == [1e-3] * 5


def test_scheduler_state_roundtrip_is_weights_only(tmp_path):
    config = OptimConfig(lr=1e-3, warmup_steps=4, scheduler="cosine")
    model = torch.nn.Linear(4, 4)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config, total_steps=20)
    for _ in range(7):
        optimizer.step()
        scheduler.step()
    save_checkpoint({"scheduler": scheduler.state_dict(), "optimizer": optimizer.state_dict()}, tmp_path / "s.pt")
    state = torch.load(tmp_path / "s.pt", weights_only=True)
    optimizer2 = build_optimizer(model, config)
    scheduler2 = build_scheduler(optimizer2, config, total_steps=20)
    optimizer2.load_state_dict(state["optimizer"])
    scheduler2.load_state_dict(state["scheduler"])
    optimizer.step(), scheduler.step(), optimizer2.step(), scheduler2.step()
    assert optimizer2.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]


def test_weight_decay_only_on_matrices():
    optimizer = build_optimizer(torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.LayerNorm(3)), OptimConfig())
    decays = sorted((g["weight_decay"], len(g["params"])) for g in optimizer.param_groups)
    assert decays == [(0.0, 3), (0.01, 1)]


# --- error rates --------------------------------------------------------------------------------


def test_error_rate_matches_hand_count():
    # "a b c d" -> "a x c": 1 sub (b->x), 1 del (d); "e f" -> "e f g": 1 ins; "h" -> "h": correct.
    r = error_rate(["a b c d", "e f", "h"], ["a x c", "e  f g ", "h"])
    assert (r.substitutions, r.deletions, r.insertions, r.hits, r.ref_words) == (1, 1, 1, 5, 7)
    assert r.wer == pytest.approx(3 / 7)
    assert r.sentence_error_rate == pytest.approx(2 / 3) and r.num_utts == 3
    # chars: "a b c d" (7) -> "a x c": b->x, " d" deleted = 3 errors; "e f" -> "e f g": 2 insertions.
    assert (r.char_errors, r.ref_chars) == (5, 11) and r.cer == pytest.approx(5 / 11)


def test_error_rate_empty_references_and_hypotheses():
    r = error_rate(["", "a b"], ["x y", ""])
    assert (r.substitutions, r.deletions, r.insertions, r.ref_words) == (0, 2, 2, 2)
    assert r.wer == pytest.approx(2.0) and r.sentence_error_rate == 1.0
    only_empty = error_rate(["", " "], ["", "z"])
    assert only_empty.insertions == 1 and only_empty.wer == 1.0 and only_empty.ref_words == 0
    assert error_rate([""], [""]).wer == 0.0 and error_rate([], []).num_utts == 0
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        error_rate(["a", "b"], ["a"])


# --- checkpoints --------------------------------------------------------------------------------


def test_rng_state_roundtrip_through_weights_only_checkpoint(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.standard_normal()  # leaves a cached gaussian in numpy's state
    save_checkpoint({"rng": capture_rng_state()}, tmp_path / "rng.pt")
    expected = (random.random(), np.random.standard_normal(3).tolist(), torch.rand(3))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True)["rng"])
    got = (random.random(), np.random.standard_normal(3).tolist(), torch.rand(3))
    assert got[:2] == expected[:2]
    torch.testing.assert_close(got[2], expected[2], rtol=0, atol=0)


def test_load_checkpoint_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt: cannot load checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")
    assert not list(tmp_path.glob(".*.tmp"))


def test_checkpoint_files_follow_the_umask_and_partial_writes_are_removed(tmp_path):
    umask = os.umask(0o022)
    try:
        save_checkpoint({"w": torch.zeros(1)}, tmp_path / "checkpoints" / "last.pt")
    finally:
        os.umask(umask)
    assert (tmp_path / "checkpoints" / "last.pt").stat().st_mode & 0o777 == 0o644  # not mkstemp's private 0600
    # What a process killed in the middle of a write leaves; the next run's manager removes it.
    (tmp_path / "checkpoints" / ".last.pt.0123abcd.tmp").write_bytes(b"half")
    CheckpointManager(tmp_path / "checkpoints", keep_best=1, higher_is_better=False).remove_partial_writes()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last.pt"]


def test_best_k_retention_and_index(tmp_path):
    manager = CheckpointManager(tmp_path / "checkpoints", keep_best=2, higher_is_better=False)
    for step, loss in [(10, 3.0), (20, 2.0), (30, 2.5), (40, 1.0), (50, float("nan"))]:
        manager.save_validated({"model": {"w": torch.full((2,), float(step))}}, step, 0, loss)
    names = sorted(p.name for p in (tmp_path / "checkpoints").glob("*.pt"))
    assert names == ["last.pt", "step20.pt", "step40.pt"]
    assert [e["step"] for e in manager.kept] == [40, 20]
    assert load_checkpoint(tmp_path / "checkpoints/last.pt")["model"]["w"][0] == 50.0
    index = json.loads((tmp_path / "checkpoints/index.json").read_text())
    assert [e["name"] for e in index["best"]] == ["step40.pt", "step20.pt"]
    assert [p.name for p in select_checkpoints(tmp_path, 5, by="last")] == ["step40.pt", "step20.pt"]
    # Higher is better (accuracy): the ranking flips.
    acc = CheckpointManager(tmp_path / "acc", keep_best=1, higher_is_better=True)
    for step, value in [(1, 0.5), (2, 0.9), (3, 0.7)]:
        acc.save_validated({"model": {}}, step, 0, value)
    assert [e["step"] for e in acc.kept] == [2] and (tmp_path / "acc/step2.pt").exists()
    # A resumed manager continues the same ranking and removes checkpoints written after it.
    restored = CheckpointManager(tmp_path / "acc", keep_best=1, higher_is_better=True)
    restored.load_state_dict({"kept": []})
    restored.remove_strays()
    assert not list((tmp_path / "acc").glob("step*.pt"))


def test_average_checkpoints_math(tmp_path):
    paths = []
    for i, (w, n) in enumerate([(1.0, 7), (2.0, 8), (6.0, 9)]):
        state = {"weight": torch.full((2, 2), w), "half": torch.full((3,), w, dtype=torch.bfloat16),
                 "num_batches_tracked": torch.tensor(n)}
        paths.append(tmp_path / f"c{i}.pt")
        # Both layouts: a training checkpoint (weights under "model") and a bare state_dict.
        save_checkpoint({"model": state, "step": i} if i % 2 == 0 else state, paths[-1])
    avg = average_checkpoints(paths)
    torch.testing.assert_close(avg["weight"], torch.full((2, 2), 3.0))
    assert avg["half"].dtype == torch.bfloat16 and float(avg["half"][0]) == 3.0
    assert avg["num_batches_tracked"].item() == 9  # integer buffers: copied from the last, not averaged
    save_checkpoint({"model": {"other": torch.zeros(1)}}, tmp_path / "odd.pt")
    with pytest.raises(ValueError, match="odd.pt: parameters differ"):
        average_checkpoints([paths[0], tmp_path / "odd.pt"])


def test_average_experiment_writes_model_avg(tmp_path):
    manager = CheckpointManager(tmp_path / "checkpoints", keep_best=3, higher_is_better=False)
    for step, loss in [(1, 3.0), (2, 1.0), (3, 2.0), (4, 4.0)]:
        manager.save_validated({"model": {"w": torch.tensor([float(step)])}}, step, 0, loss)
    out = average_experiment(tmp_path, num=2, by="best")
    state = torch.load(out, weights_only=True)
    assert out.name == "model.avg.pt" and state["model"]["w"].item() == 2.5  # steps 2 and 3
    assert state["averaged_from"] == ["step2.pt", "step3.pt"]
    assert average_experiment(tmp_path, num=2, by="last", output=tmp_path / "l.pt").exists()


# --- logs and plots -----------------------------------------------------------------------------


def _history() -> list[dict]:
    records = [{"event": "train", "step": s, "epoch": 0, "loss": 5.0 / s} for s in range(1, 9)]
    records += [{"event": "valid", "step": s, "epoch": 0, "valid_loss": 4.0 / s, "valid_acc": 0.1 * s,
                 "valid_wer": 1.0 / s} for s in (4, 8)]
    return records


def test_metrics_logger_rewrites_history_on_resume(tmp_path):
    logger = MetricsLogger(tmp_path, tensorboard=True)
    for record in _history():
        logger.log(record)
    logger.log({"event": "train", "step": 9, "epoch": 0, "loss": float("nan")})
    logger.close()
    assert read_metrics(tmp_path / "metrics.jsonl")[-1]["loss"] != read_metrics(tmp_path / "metrics.jsonl")[-1]["loss"]
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    # Resuming from step 8: the step-9 record of the killed run disappears from both files.
    MetricsLogger(tmp_path, history=_history(), purge_step=9, tensorboard=False).close()
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [r["step"] for r in _history()]
    csv_lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert csv_lines[0].startswith("event,step,epoch,loss") and len(csv_lines) == 1 + len(_history())


def test_plots_are_nonempty_pngs(tmp_path):
    curves = plot_training_curves(_history(), tmp_path / "train_curves.png")
    attention = plot_attention(torch.softmax(torch.randn(5, 30), -1), tmp_path / "attention/step8.png",
                               title="utt1", tokens=list("abcde"))
    for path in (curves, attention):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 2000
