"""Training acceptance tests on real speech (FSDD spoken digits) with a tiny real model.

Learning, logs and figures, best-k retention, resume after SIGKILL, 2-process DDP (torchrun,
Gloo), non-finite losses and checkpoint averaging. No mocks: every run trains for real.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from asr.data import DynamicBatchSampler, SpeechDataset
from asr.train import NonFiniteLossError, average_experiment, load_checkpoint, select_checkpoints
from asr.train.metrics_log import read_metrics
from tests.train_helper import build_trainer, digit_utterances

HELPER = Path(__file__).with_name("train_helper.py")
REPO = HELPER.parents[1]
PNG = b"\x89PNG\r\n\x1a\n"

# Learning: 60 updates at lr 4e-3 (noam, 10 warm-up updates), validating every 10.
# Measured with seeds 0-3: the first update's training loss is 10-14; after 60 updates valid_loss
# is 3.45-3.73, valid token accuracy 0.65-0.71 and the last 10 training losses average 3.8-4.0.
# The thresholds below leave a wide margin.
LEARN_STEPS = 60
VALID_LOSS_BELOW = 4.3
VALID_ACC_ABOVE = 0.45


@contextmanager
def one_thread():
    """Train tiny models on one thread: a second one costs far more in synchronisation than it gains
    (measured: 10x the CPU time on a busy 2-core machine), and it matches the subprocess runs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG and path.stat().st_size > 2000


def _steps(records: list[dict], event: str) -> list[int]:
    return [r["step"] for r in records if r["event"] == event]


@pytest.fixture(scope="module")
def trained(shared_dir, tmp_path_factory):
    """A 60-update run validated every 10 updates, keeping the best 2 checkpoints."""
    exp = tmp_path_factory.mktemp("learn") / "exp"
    trainer = build_trainer(
        exp, shared_dir,
        {"max_epochs": 100, "max_steps": LEARN_STEPS, "valid_every_steps": 10, "keep_best": 2},
        {"lr": 4e-3, "warmup_steps": 10},
    )
    with one_thread():
        return exp, trainer, trainer.fit()


def test_loss_falls_and_logs_plots_and_best_k_are_written(trained):
    exp, _, result = trained
    assert (result.step, result.stop_reason, result.resumed_from_step) == (LEARN_STEPS, "max_steps", None)
    records = read_metrics(exp / "metrics.jsonl")
    train = [r for r in records if r["event"] == "train"]
    valid = [r for r in records if r["event"] == "valid"]
    assert _steps(records, "train") == list(range(1, LEARN_STEPS + 1))
    assert _steps(records, "valid") == list(range(10, LEARN_STEPS + 1, 10))
    # It learns: the loss falls below the stated threshold within LEARN_STEPS updates.
    assert valid[-1]["valid_loss"] < VALID_LOSS_BELOW, [r["valid_loss"] for r in valid]
    assert valid[-1]["valid_acc"] > VALID_ACC_ABOVE, [r["valid_acc"] for r in valid]
    assert sum(r["loss"] for r in train[-10:]) / 10 < 0.5 * train[0]["loss"]
    assert all(r["nonfinite_skipped"] == 0 and r["lr"] > 0 and r["audio_per_sec"] > 0 for r in train)
    # Greedy-decoded with the decoder and with the CTC head.
    assert all("valid_wer" in r and "valid_ctc_wer" in r and r["valid_decoded_utts"] == 8 for r in valid)

    csv_lines = (exp / "metrics.csv").read_text().splitlines()
    assert csv_lines[0].startswith("event,step,epoch,loss") and len(csv_lines) == 1 + len(records)
    assert _is_png(exp / "train_curves.png")
    attention = sorted((exp / "attention").iterdir())
    assert {p.name for p in attention} == {f"step{r['step']}.png" for r in valid}
    assert all(_is_png(p) for p in attention)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(exp / "tensorboard"))
    events.Reload()
    assert {"train/loss", "train/lr", "valid/loss", "valid/acc", "valid/wer"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, LEARN_STEPS + 1))
    assert [e.value for e in events.Scalars("valid/loss")] == pytest.approx([r["valid_loss"] for r in valid])

    # Only the best 2 validated checkpoints (by valid_loss) are kept, beside last.pt.
    best_two = sorted(valid, key=lambda r: r["valid_loss"])[:2]
    checkpoints = exp / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("*.pt")) == sorted(
        ["last.pt"] + [f"step{r['step']}.pt" for r in best_two])
    index = json.loads((checkpoints / "index.json").read_text())
    assert [e["name"] for e in index["best"]] == [f"step{r['step']}.pt" for r in best_two]
    assert result.best_checkpoint == checkpoints / f"step{best_two[0]['step']}.pt"
    assert result.best_metric == pytest.approx(best_two[0]["valid_loss"])
    last = torch.load(checkpoints / "last.pt", weights_only=True)
    assert last["step"] == LEARN_STEPS and len(last["history"]) == len(records)
    assert not list(checkpoints.glob(".*.tmp"))


def test_checkpoint_average_is_the_mean_of_the_selected_checkpoints(trained):
    exp, trainer, _ = trained
    selected = select_checkpoints(exp, 2, by="best")
    output = average_experiment(exp, num=2, by="best")
    assert output == exp / "model.avg.pt"
    averaged = torch.load(output, weights_only=True)
    assert averaged["averaged_from"] == [p.name for p in selected]
    weights = [torch.load(p, weights_only=True)["model"] for p in selected]
    assert set(averaged["model"]) == set(weights[0])
    for name, value in averaged["model"].items():
        if value.is_floating_point():
            torch.testing.assert_close(value, (weights[0][name] + weights[1][name]) / 2)
        else:
            assert torch.equal(value, weights[-1][name])
    assert not torch.equal(weights[0]["ctc.proj.weight"], weights[1]["ctc.proj.weight"])
    trainer.model.load_state_dict(averaged["model"])  # strict: the average is a complete model


# --- separate processes ---------------------------------------------------------------------------


def _helper_args(exp: Path, shared: Path, trainer: dict, optim: dict | None = None,
                 sampler: dict | None = None) -> list[str]:
    return [str(HELPER), str(exp), "--shared", str(shared), "--trainer", json.dumps(trainer),
            "--optim", json.dumps(optim or {}), "--sampler", json.dumps(sampler or {})]


def _run(command: list[str], timeout: float = 120) -> list[dict]:
    """Run to completion; -> the TrainResult JSON line(s) it printed (one per process)."""
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{command} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{"step"')]


def _wait_for_train_step(proc: subprocess.Popen, metrics: Path, step: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"training ended (exit code {proc.returncode}) before reaching step {step}")
        text = metrics.read_text() if metrics.is_file() else ""
        if any(int(s) >= step for s in re.findall(r'"event": "train", "step": (\d+)', text)):
            return
        time.sleep(0.01)
    proc.kill()
    pytest.fail(f"training did not reach step {step} within {timeout} s")


def test_resume_after_sigkill_matches_uninterrupted_run(shared_dir, tmp_path):
    # 2 epochs of 10 updates; checkpoints every 3 updates, so also in the middle of epochs.
    config = {"max_epochs": 2, "save_every_steps": 3}
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    command = [sys.executable, *_helper_args(killed, shared_dir, config)]
    with open(tmp_path / "reference.log", "w") as ref_log, open(tmp_path / "killed.log", "w") as log:
        # The uninterrupted reference runs alongside (one thread each, two cores).
        ref_proc = subprocess.Popen([sys.executable, *_helper_args(reference, shared_dir, config)], cwd=REPO,
                                    stdout=ref_log, stderr=subprocess.STDOUT)
        try:
            proc = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
            _wait_for_train_step(proc, killed / "metrics.jsonl", 14)  # epoch 1, after the step-12 checkpoint
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(timeout=30) == -signal.SIGKILL
        finally:
            ref_code = ref_proc.wait(timeout=120)
    assert ref_code == 0, (tmp_path / "reference.log").read_text()[-4000:]
    expected = json.loads((tmp_path / "reference.log").read_text().splitlines()[-1])

    state = load_checkpoint(killed / "checkpoints" / "last.pt")
    killed_at = state["step"]
    assert killed_at in (12, 15, 18) and state["epoch"] == 1, killed_at
    assert state["sampler"] == {"epoch": 1, "batches_done": killed_at - 10}  # a mid-epoch checkpoint
    # What a kill in the middle of a checkpoint write leaves behind; the resumed run removes it.
    (killed / "checkpoints" / ".last.pt.partial.tmp").write_bytes(b"half a checkpoint")

    (result,) = _run(command)  # the same command: resumes from killed/checkpoints/last.pt
    assert result["resumed_from_step"] == killed_at > 0
    assert (result["step"], result["epoch"]) == (expected["step"], expected["epoch"]) == (20, 2)
    final = torch.load(killed / "final_rank0.pt", weights_only=True)
    expected_final = torch.load(reference / "final_rank0.pt", weights_only=True)
    assert final.keys() == expected_final.keys()
    for name in final:
        torch.testing.assert_close(final[name], expected_final[name], msg=name)
    assert not list((killed / "checkpoints").glob(".*.tmp"))
    # The log holds every step once (the killed run's records after its checkpoint are dropped),
    # and the resumed run's losses are the uninterrupted run's.
    records, expected_records = read_metrics(killed / "metrics.jsonl"), read_metrics(reference / "metrics.jsonl")
    assert _steps(records, "train") == list(range(1, 21)) and _steps(records, "valid") == [10, 20]
    for key in ("loss", "valid_loss"):
        got = [r[key] for r in records if key in r]
        assert got == pytest.approx([r[key] for r in expected_records if key in r], rel=1e-5), key


def test_ddp_two_processes_stay_in_sync_and_only_rank0_writes(shared_dir, tmp_path):
    # 80 utterances in one bucket of at most 9 -> 9 batches an epoch: the odd one out is padded so
    # that both ranks get 5 batches (a rank with fewer would leave the other waiting forever).
    durations = [u.duration for u in digit_utterances(shared_dir, ("george", "jackson"), range(5, 9))]
    sampler_options = {"max_batch_size": 9, "num_buckets": 1}
    for epoch in range(3):
        shards = [DynamicBatchSampler(durations, seed=0, rank=r, world_size=2, **sampler_options) for r in (0, 1)]
        for shard in shards:
            shard.set_epoch(epoch)
        batches = [list(shard) for shard in shards]
        assert len(batches[0]) == len(batches[1]) == len(shards[0]) == 5
        assert {i for rank in batches for b in rank for i in b} == set(range(len(durations)))

    exp = tmp_path / "ddp"
    # 7 updates: through the end of epoch 0 (5 updates a rank) into epoch 1; validation at update 4.
    config = {"max_epochs": 10, "max_steps": 7, "valid_every_steps": 4}
    results = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                    *_helper_args(exp, shared_dir, config, sampler=sampler_options)], timeout=180)
    assert len(results) == 2 and results[0] == results[1]
    assert (results[0]["step"], results[0]["epoch"], results[0]["stop_reason"]) == (7, 1, "max_steps")

    weights = [torch.load(exp / f"final_rank{r}.pt", weights_only=True) for r in (0, 1)]
    for name in weights[0]:
        torch.testing.assert_close(weights[0][name], weights[1][name], rtol=0, atol=0, msg=name)
    at_step4 = load_checkpoint(exp / "checkpoints" / "step4.pt")["model"]
    assert not torch.equal(at_step4["ctc.proj.weight"], weights[0]["ctc.proj.weight"])  # it kept training

    # Only rank 0 wrote anything in the experiment folder (seen through audit hooks).
    assert json.loads((exp / "writes_rank1.json").read_text()) == []
    rank0 = json.loads((exp / "writes_rank0.json").read_text())
    for name in ("checkpoints/last.pt", "checkpoints/step4.pt", "checkpoints/step7.pt", "checkpoints/index.json",
                 "metrics.jsonl", "metrics.csv", "train_curves.png", "attention/step4.png"):
        assert name in rank0, name
    assert any(name.startswith("tensorboard/events.out.tfevents") for name in rank0)
    assert len(list((exp / "tensorboard").iterdir())) == 1
    records = read_metrics(exp / "metrics.jsonl")
    assert _steps(records, "train") == list(range(1, 8)) and _steps(records, "valid") == [4, 7]
    last = load_checkpoint(exp / "checkpoints" / "last.pt")
    assert last["step"] == 7 and len(last["rng"]) == 2  # both ranks' RNG streams
    assert last["sampler"] == {"epoch": 1, "batches_done": 2}


# --- non-finite losses ----------------------------------------------------------------------------


class InfFeatures(Dataset):
    """A real SpeechDataset whose chosen utterances get all-inf features (as broken audio would give)."""

    def __init__(self, dataset: SpeechDataset, broken):
        self.dataset, self.broken, self.epoch = dataset, broken, 0
        self.features = dataset.features

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        example = self.dataset[index]
        if self.broken(index, self.epoch):
            example = {**example, "feats": torch.full_like(example["feats"], float("inf"))}
        return example


def test_nonfinite_loss_is_skipped_then_stops_without_overwriting(shared_dir, tmp_path):
    exp = tmp_path / "exp"
    trainer_options = {"max_epochs": 1, "max_consecutive_nonfinite": 3, "valid_decode_utts": 0}
    # Epoch 0: utterance 0 is broken, so one batch has an inf loss: that update is skipped.
    trainer = build_trainer(exp, shared_dir, trainer_options,
                            wrap_train=lambda d: InfFeatures(d, lambda i, epoch: i == 0 or epoch >= 1))
    with one_thread(), pytest.warns(RuntimeWarning, match=r"non-finite loss .*\(loss=(nan|inf)\).*update skipped"):
        result = trainer.fit()
    batches = len(trainer.train_sampler)
    assert (result.nonfinite_skipped, result.step, result.epoch) == (1, batches - 1, 1)
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    train_records = [r for r in read_metrics(exp / "metrics.jsonl") if r["event"] == "train"]
    assert train_records[-1]["nonfinite_skipped"] == 1
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in train_records)

    # Epoch 1 (resumed): every utterance is broken -> 3 skipped updates in a row stop training,
    # and the last good checkpoint is left exactly as it was.
    checkpoints = exp / "checkpoints"
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in checkpoints.iterdir()}
    trainer = build_trainer(exp, shared_dir, {**trainer_options, "max_epochs": 2},
                            wrap_train=lambda d: InfFeatures(d, lambda i, epoch: i == 0 or epoch >= 1))
    with one_thread(), warnings.catch_warnings(record=True) as caught, pytest.raises(NonFiniteLossError) as error:
        warnings.simplefilter("always")
        trainer.fit()
    message = str(error.value)
    assert "3 consecutive updates had a non-finite loss or gradient" in message
    assert f"step {batches - 1}, epoch 1" in message and str(checkpoints / "last.pt") in message
    assert sum("update skipped" in str(w.message) for w in caught) == 3
    assert trainer.nonfinite_total == 4
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in checkpoints.iterdir()}
    assert after.keys() == before.keys() and after["index.json"][0] == before["index.json"][0]
    assert all(after[name] == before[name] for name in before if name.endswith(".pt"))
    last = load_checkpoint(checkpoints / "last.pt")
    assert last["step"] == batches - 1 and last["trainer"]["nonfinite_total"] == 1


def test_validation_decodes_with_each_head_the_model_has(shared_dir, tmp_path):
    from asr.data import collate
    from asr.decode.ctc_decode import ctc_greedy
    from asr.features import FeatureExtractor
    from asr.metrics import error_rate
    from asr.model import DecoderConfig, EncoderConfig, ModelConfig, build_model
    from asr.text import train_tokenizer
    from asr.train import OptimConfig, Trainer, TrainerConfig
    from asr.train.validation import validate
    from tests.train_helper import FEATURES

    utts = digit_utterances(shared_dir, ("george",), range(0, 3))
    tokenizer = train_tokenizer([u.text for u in utts], kind="char")
    dataset = SpeechDataset(utts, FeatureExtractor(FEATURES), tokenizer)
    small = {"d_model": 32, "n_heads": 2, "n_layers": 1, "ffn_dim": 64}
    models = {}
    for ctc_weight, present, absent in ((1.0, {"valid_ctc_wer"}, {"valid_wer", "valid_acc"}),
                                        (0.0, {"valid_wer", "valid_cer"}, {"valid_ctc_wer"}),
                                        (0.3, {"valid_wer", "valid_ctc_wer"}, set())):
        torch.manual_seed(0)
        model = models[ctc_weight] = build_model(ModelConfig(
            vocab_size=tokenizer.vocab_size, input_dim=FEATURES.n_mels, ctc_weight=ctc_weight,
            encoder=EncoderConfig(**small, subsampling_channels=8), decoder=DecoderConfig(**small)))
        metrics, _ = validate(model, dataset, None, tokenizer, device=torch.device("cpu"), decode_utts=2)
        assert present <= metrics.keys() and not absent & metrics.keys() and metrics["valid_decoded_utts"] == 2
    # valid_ctc_wer is the CTC head's greedy output against the first utterances' transcripts.
    batch = collate([dataset[0], dataset[1]])
    with torch.no_grad():
        enc, enc_lengths = models[1.0].encode(batch.feats, batch.feat_lengths)
        greedy = ctc_greedy(models[1.0].ctc.log_probs(enc), enc_lengths)
    hyps = [tokenizer.decode(row[:n]) for row, n in zip(greedy.tokens.tolist(), greedy.lengths.tolist())]
    expected = error_rate([u.text for u in utts[:2]], hyps).wer
    metrics, _ = validate(models[1.0], dataset, None, tokenizer, device=torch.device("cpu"), decode_utts=2)
    assert metrics["valid_ctc_wer"] == pytest.approx(expected)
    # Ranking checkpoints by a WER needs the head that decodes it.
    sampler = DynamicBatchSampler([u.duration for u in utts], max_batch_size=2)
    for metric, ctc_weight in (("valid_ctc_wer", 0.0), ("valid_wer", 1.0)):
        with pytest.raises(ValueError, match=f"best_metric='{metric}': this model has no"):
            Trainer(models[ctc_weight], dataset, sampler, dataset, TrainerConfig(best_metric=metric), OptimConfig(),
                    tmp_path, tokenizer=tokenizer)


def test_spawned_processes_log_where_and_how_the_parent_does(tmp_path):
    import logging

    from asr.train.distributed import spawn_local

    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    handler = logging.FileHandler(tmp_path / "run.log")
    handler.setFormatter(logging.Formatter("%(levelname)s|%(message)s"))
    root.handlers, root.level = [handler], logging.INFO
    try:
        spawn_local(logging.warning, ("hello from %s", "a child"), 1)
    finally:
        handler.close()
        root.handlers, root.level = saved_handlers, saved_level
    assert (tmp_path / "run.log").read_text().splitlines() == ["WARNING|hello from a child"]
