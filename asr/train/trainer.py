"""The training loop: accumulation, clipping, bf16 autocast, validation, best-k checkpoints, exact resume.

    trainer = Trainer(model, train_set, train_sampler, valid_set, TrainerConfig(max_epochs=50),
                      OptimConfig(lr=1e-3, warmup_steps=5000), exp_dir="exp/run1", tokenizer=tokenizer)
    result = trainer.fit()      # continues from exp/run1/checkpoints/last.pt when it exists

Exact resume: a checkpoint records the weights, optimiser, schedule, every RNG and the position in
the epoch (epoch, batches consumed) at an update boundary. Everything else that draws randomness
is a function of (seed, epoch, index): sampler shuffling, speed perturbation, and the DataLoader's
worker seeds (the loader gets its own generator per epoch instead of drawing from the global RNG,
which would shift the dropout/SpecAugment stream of a resumed run). A run killed at any moment and
resumed therefore ends with the same weights as one that never stopped.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import random
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler
from tqdm import tqdm

from asr.data import Batch, collate
from asr.train.checkpoint import CheckpointManager, capture_rng_state, load_checkpoint, restore_rng_state
from asr.train.config import OptimConfig, TrainerConfig
from asr.train.distributed import DistInfo, all_true, init_distributed, resolve_device
from asr.train.metrics_log import MetricsLogger
from asr.train.optim import build_optimizer, build_scheduler
from asr.train.plots import plot_attention, plot_training_curves
from asr.train.validation import validate

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Too many consecutive updates had a non-finite loss or gradient; training stopped."""


@dataclass(frozen=True)
class TrainResult:
    step: int  # optimiser updates done
    epoch: int  # epochs completed
    stop_reason: str  # "max_steps" | "max_epochs" | "early_stop"
    last_checkpoint: Path
    best_checkpoint: Path | None
    best_metric: float | None
    nonfinite_skipped: int
    resumed_from_step: int | None


class Trainer:
    """Trains an ASRModel (anything whose forward(Batch) returns a dict with a scalar "loss").

    train_sampler yields lists of indices (a DynamicBatchSampler, built with this process's rank and
    world_size under torchrun). A streaming train_dataset (an IterableDataset of Batches, such as
    asr.data.stream.ShardDataset, built with this process's rank, world_size and config.num_workers)
    batches itself: pass train_sampler=None. A train_dataset with `waveforms` true yields batches of
    waveforms; their features are computed here, on the training device, by a copy of its `features`.
    config.reference_world_size keeps the effective batch when the number of processes changes
    (see TrainerConfig.accum_grad_for). valid_sampler is optional: by default validation takes the
    validation set in order, `valid_batch_size` utterances a batch, sharded across processes.
    tokenizer turns token ids into text for the validation WER (without one, WER is over token ids).
    """

    def __init__(
        self,
        model: nn.Module,
        train_dataset: Dataset,
        train_sampler: Sampler[list[int]] | None,
        valid_dataset: Dataset | None,
        config: TrainerConfig,
        optim: OptimConfig,
        exp_dir: str | os.PathLike,
        tokenizer: Any = None,
        valid_sampler: Sampler[list[int]] | None = None,
    ):
        self.config, self.optim_config = config, optim
        self.exp_dir = Path(exp_dir)
        self.dist: DistInfo = init_distributed(config.device)
        self.device = resolve_device(config.device, self.dist)
        self.streaming = isinstance(train_dataset, IterableDataset)
        if self.streaming != (train_sampler is None):
            raise ValueError("Trainer: a streaming train_dataset (IterableDataset) batches itself and takes "
                             "train_sampler=None; a map-style one needs a train_sampler")
        source, source_name = (train_dataset, "train_dataset") if self.streaming else (train_sampler, "train_sampler")
        for name, value in (("rank", self.dist.rank), ("world_size", self.dist.world_size),
                            ("num_workers", config.num_workers if self.streaming else None)):
            if value is not None and getattr(source, name, value) != value:
                raise ValueError(f"Trainer: {source_name}.{name}={getattr(source, name)} but this process has "
                                 f"{name}={value}; build it with rank=, world_size= (and num_workers= for streaming)")
        self.accum_grad = config.accum_grad_for(self.dist.world_size)
        if config.sampling_prob > 0 and not hasattr(model, "set_sampling_prob"):
            raise ValueError(f"TrainerConfig.sampling_prob={config.sampling_prob} but {type(model).__name__} "
                             "has no set_sampling_prob()")
        self.model = model.to(self.device)
        self.ddp_model: nn.Module = self.model
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp_model = DistributedDataParallel(self.model, device_ids=ids)
        self.train_dataset, self.train_sampler = train_dataset, train_sampler
        self.valid_dataset, self.valid_sampler, self.tokenizer = valid_dataset, valid_sampler, tokenizer
        self.updates_per_epoch = math.ceil(self._batches_per_epoch() / self.accum_grad)
        total = config.max_steps or config.max_epochs * self.updates_per_epoch
        self.optimizer = build_optimizer(self.model, optim)
        self.scheduler = build_scheduler(self.optimizer, optim, max(total, optim.warmup_steps + 1))
        self.checkpoints = CheckpointManager(self.exp_dir / "checkpoints", config.keep_best, config.higher_is_better,
                                             write=self.dist.is_main)
        features = getattr(train_dataset, "features", None)
        self.frame_shift = features.config.hop_ms / 1000 if features is not None else 0.01
        # Features on the training device: the data workers only decode (and speed-perturb) audio.
        self.device_features = (copy.deepcopy(features).to(self.device)
                                if getattr(train_dataset, "waveforms", False) else None)
        self.autocast_dtype = torch.bfloat16 if config.precision == "bf16" else None
        # Training state (all of it goes into checkpoints).
        self.step = self.epoch = self.batches_done = 0
        self.history: list[dict[str, Any]] = []
        self.nonfinite_total = self.nonfinite_run = self.bad_validations = 0
        self.best_value: float | None = None
        self.last_valid_step = -1
        self._dirty = False  # trained since the last save
        self._window: dict[str, Any] = {"start": time.perf_counter(), "audio": 0.0, "sums": {}, "count": 0}
        decodes_with = {"valid_wer": "decoder", "valid_ctc_wer": "ctc"}.get(config.best_metric)
        if decodes_with and config.valid_decode_utts == 0:
            raise ValueError(f"TrainerConfig.best_metric={config.best_metric!r} needs valid_decode_utts > 0")
        if decodes_with and getattr(model, decodes_with, None) is None:
            raise ValueError(f"TrainerConfig.best_metric={config.best_metric!r}: this model has no {decodes_with} "
                             "to decode with; use valid_loss or the other WER")

    # --- state ------------------------------------------------------------------------------------

    def _rng_snapshot(self) -> list[dict[str, Any]]:
        """Every process's RNG states, indexed by rank (each process has its own dropout stream)."""
        local = capture_rng_state()
        if not self.dist.enabled:
            return [local]
        states: list[Any] = [None] * self.dist.world_size
        torch.distributed.all_gather_object(states, local)
        return states

    def state_dict(self, rng: list[dict[str, Any]]) -> dict[str, Any]:
        model_config = getattr(self.model, "config", None)
        return {
            "version": 1,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng,
            "sampler": {"epoch": self.epoch, "batches_done": self.batches_done},
            "step": self.step,
            "epoch": self.epoch,
            "history": list(self.history),
            "trainer": {"nonfinite_total": self.nonfinite_total, "bad_validations": self.bad_validations,
                        "best_value": self.best_value, "last_valid_step": self.last_valid_step},
            "trainer_config": self.config.to_dict(),
            "optim_config": self.optim_config.to_dict(),
            "model_config": model_config.to_dict() if hasattr(model_config, "to_dict") else None,
        }

    def _resume(self) -> dict[str, Any] | None:
        path = self.checkpoints.last_path
        if not (self.config.resume and path.is_file()):
            return None
        state = load_checkpoint(path, map_location=self.device)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.batches_done = int(state["sampler"]["batches_done"])
        saved_workers = state.get("trainer_config", {}).get("num_workers")
        if self.streaming and self.batches_done and saved_workers != self.config.num_workers:
            raise ValueError(f"{path} stopped inside epoch {self.epoch} of a streaming dataset read by "
                             f"{saved_workers} DataLoader worker(s) per process; resume it with "
                             f"trainer.num_workers={saved_workers} (the shards are dealt out per worker)")
        self.history = list(state["history"])
        t = state["trainer"]
        self.nonfinite_total, self.bad_validations = t["nonfinite_total"], t["bad_validations"]
        self.best_value, self.last_valid_step = t["best_value"], t["last_valid_step"]
        self.checkpoints.load_state_dict(state["checkpoints"])
        return state

    def _save(self, rng: list[dict[str, Any]], validated: float | None = None) -> None:
        self._dirty = False
        # Every rank keeps the ranking; only rank 0 builds the state and writes (manager.write).
        state = self.state_dict(rng) if self.dist.is_main else {}
        if validated is None:
            self.checkpoints.save_last(state)
        else:
            self.checkpoints.save_validated(state, self.step, self.epoch, validated)

    # --- loop -------------------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        """Train until max_steps / max_epochs / early stopping; returns where it ended."""
        seed = self.config.seed + self.dist.rank
        random.seed(seed), np.random.seed(seed), torch.manual_seed(seed)
        resumed = self._resume()
        if resumed is not None and len(resumed["rng"]) != self.dist.world_size:
            raise ValueError(f"{self.checkpoints.last_path} was written by {len(resumed['rng'])} process(es); "
                             f"resume it with the same number (this run has {self.dist.world_size})")
        self.logger = None
        if self.dist.is_main:
            self.exp_dir.mkdir(parents=True, exist_ok=True)
            self.checkpoints.remove_partial_writes()  # left by a run killed while saving
            if resumed is not None:
                self.checkpoints.remove_strays()
            self.logger = MetricsLogger(self.exp_dir, self.history, purge_step=self.step + 1)
        if resumed is not None:
            restore_rng_state(resumed["rng"][self.dist.rank])  # last: nothing may draw randomness after this
        stop_reason = "max_epochs"
        try:
            while self.epoch < self.config.max_epochs:
                if self._reached_max_steps():
                    stop_reason = "max_steps"
                    break
                stop_reason = self._train_epoch() or stop_reason
                if stop_reason != "max_epochs":
                    break
            if self.last_valid_step != self.step and self.valid_dataset is not None:
                self._validate_and_save(self._rng_snapshot())  # the final weights get ranked too
            elif self._dirty:
                self._save(self._rng_snapshot())
            if self.dist.is_main:
                plot_training_curves(self.history, self.exp_dir / "train_curves.png")
        finally:
            if self.logger is not None:
                self.logger.close()
        best = self.checkpoints.best()
        return TrainResult(
            step=self.step, epoch=self.epoch, stop_reason=stop_reason, last_checkpoint=self.checkpoints.last_path,
            best_checkpoint=self.checkpoints.directory / best["name"] if best else None,
            best_metric=best["metric"] if best else None, nonfinite_skipped=self.nonfinite_total,
            resumed_from_step=int(resumed["step"]) if resumed is not None else None,
        )

    def _reached_max_steps(self) -> bool:
        return self.config.max_steps > 0 and self.step >= self.config.max_steps

    def _batches_per_epoch(self) -> int:
        """This process's batches in the current epoch (a streaming dataset plans them per epoch)."""
        return len(self.train_dataset) if self.streaming else len(self.train_sampler)

    def _loader(self) -> DataLoader:
        # The streaming dataset resumes itself: each of its workers skips its share of the consumed batches.
        position = self.train_dataset if self.streaming else self.train_sampler
        position.set_epoch(self.epoch)
        if self.batches_done:
            position.load_state_dict({"epoch": self.epoch, "batches_done": self.batches_done})
        if not self.streaming and hasattr(self.train_dataset, "set_epoch"):
            self.train_dataset.set_epoch(self.epoch)
        # Own generator per epoch: worker seeds depend on (seed, epoch) only, and creating the
        # iterator draws nothing from the global RNG (which dropout and SpecAugment use).
        generator = torch.Generator().manual_seed(self.config.seed * 100_003 + self.epoch)
        pin = self.device.type == "cuda"
        if self.streaming:
            return DataLoader(self.train_dataset, batch_size=None, num_workers=self.config.num_workers,
                              generator=generator, pin_memory=pin)
        return DataLoader(self.train_dataset, batch_sampler=self.train_sampler, collate_fn=collate,
                          num_workers=self.config.num_workers, generator=generator, pin_memory=pin)

    def _train_epoch(self) -> str | None:
        """One epoch (or its rest, when resuming); returns a stop reason or None."""
        c = self.config
        self.ddp_model.train()
        loader = self._loader()
        bar = tqdm(total=self._batches_per_epoch(), initial=self.batches_done, desc=f"epoch {self.epoch}",
                   disable=not (c.progress_bar and self.dist.is_main), dynamic_ncols=True, leave=False)
        group: list[Batch] = []
        self._window = {"start": time.perf_counter(), "audio": 0.0, "sums": {}, "count": 0}
        for batch in loader:
            group.append(batch)
            self.batches_done += 1
            bar.update(1)
            if len(group) < self.accum_grad:
                continue
            reason = self._update(group, bar)
            group = []
            if reason:
                bar.close()
                return reason
        bar.close()
        if group:  # the epoch's last, incomplete accumulation group
            reason = self._update(group, bar)
            if reason and reason != "max_steps":
                return reason
        self.epoch, self.batches_done = self.epoch + 1, 0
        rng = self._rng_snapshot()
        if c.valid_every_steps == 0 and self.valid_dataset is not None:
            reason = self._validate_and_save(rng)
        else:
            self._save(rng)
            reason = None
        return reason or ("max_steps" if self._reached_max_steps() else None)

    def _forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        context = (torch.autocast(self.device.type, dtype=self.autocast_dtype) if self.autocast_dtype
                   else nullcontext())
        with context:
            return self.ddp_model(batch)

    def _update(self, group: list[Batch], bar: tqdm) -> str | None:
        """Forward/backward over an accumulation group, then one optimiser update (or a skip)."""
        c = self.config
        if c.sampling_prob > 0:
            self.model.set_sampling_prob(c.sampling_prob_at(self.step))
        sums: dict[str, torch.Tensor] = {}
        for i, batch in enumerate(group):
            self._window["audio"] += self._audio_seconds(batch)
            if self.device_features is not None:
                batch = batch.with_features(self.device_features, self.device)
            batch = batch.to(self.device)
            # Gradients are all-reduced once per update, on the group's last backward.
            sync = i == len(group) - 1 or not self.dist.enabled
            with nullcontext() if sync else self.ddp_model.no_sync():
                out = self._forward(batch)
                (out["loss"] / self.accum_grad).backward()
            for key, value in out.items():
                if isinstance(value, torch.Tensor) and value.dim() == 0:
                    sums[key] = sums.get(key, 0.0) + value.detach().float()
        max_norm = c.grad_clip if c.grad_clip > 0 else math.inf
        grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        # One host sync per update: is both the loss and the gradient finite (on every process)?
        finite = all_true(bool(torch.isfinite(torch.stack([sums["loss"], grad_norm.float()])).all()),
                          self.device, self.dist)
        if not finite:
            return self._skip_update(group, sums["loss"])
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.nonfinite_run, self._dirty = 0, True
        window = self._window
        window["count"] += len(group)
        for key, value in sums.items():
            window["sums"][key] = window["sums"].get(key, 0.0) + value
        if self.step % c.log_every_steps == 0:
            self._log_train(grad_norm, bar)
        if c.valid_every_steps and self.step % c.valid_every_steps == 0 and self.valid_dataset is not None:
            reason = self._validate_and_save(self._rng_snapshot())
            if reason:
                return reason
        elif c.save_every_steps and self.step % c.save_every_steps == 0:
            self._save(self._rng_snapshot())
        # At max_steps, fit() validates and saves the final state.
        return "max_steps" if self._reached_max_steps() else None

    def _audio_seconds(self, batch: Batch) -> float:
        """Seconds of audio in a batch (from the host-side lengths: no device sync)."""
        if batch.waves is not None:
            return float(batch.wave_lengths.sum()) / self.device_features.config.sample_rate
        return float(batch.feat_lengths.sum()) * self.frame_shift

    def _skip_update(self, group: list[Batch], loss: torch.Tensor) -> str | None:
        self.optimizer.zero_grad(set_to_none=True)
        self.nonfinite_total += 1
        self.nonfinite_run += 1
        ids = [i for b in group for i in b.ids][:8]
        warnings.warn(f"non-finite loss or gradient (loss={float(loss):.4g}) at step {self.step}, epoch "
                      f"{self.epoch}: update skipped ({self.nonfinite_run} in a row); utterances {ids}",
                      RuntimeWarning, stacklevel=2)
        if self.nonfinite_run >= self.config.max_consecutive_nonfinite:
            raise NonFiniteLossError(
                f"{self.nonfinite_run} consecutive updates had a non-finite loss or gradient (step {self.step}, "
                f"epoch {self.epoch}, last utterances {ids}); stopped without saving, so "
                f"{self.checkpoints.last_path} still holds the last good state. Lower the learning rate, "
                "check grad_clip, or look for broken audio/transcripts in those utterances."
            )
        return None

    def _log_train(self, grad_norm: torch.Tensor, bar: tqdm) -> None:
        window = self._window
        elapsed = time.perf_counter() - window["start"]
        record: dict[str, Any] = {"event": "train", "step": self.step, "epoch": self.epoch}
        record.update({k: float(v) / max(window["count"], 1) for k, v in window["sums"].items()})
        record.update(lr=self.scheduler.get_last_lr()[0], grad_norm=float(grad_norm),
                      audio_per_sec=window["audio"] / max(elapsed, 1e-9), nonfinite_skipped=self.nonfinite_total)
        if self.config.sampling_prob > 0:
            record["sampling_prob"] = self.config.sampling_prob_at(self.step)
        self._record(record)
        bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.2e}",
                        audio_s_per_s=f"{record['audio_per_sec']:.0f}")
        self._window = {"start": time.perf_counter(), "audio": 0.0, "sums": {}, "count": 0}

    def _record(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        if self.logger is not None:
            self.logger.log(record)
        # Validations always reach the console; training lines only when no progress bar shows them.
        if self.dist.is_main and (record["event"] != "train" or not self.config.progress_bar):
            log.info(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))

    def _validate_and_save(self, rng: list[dict[str, Any]]) -> str | None:
        """Validate, log, rank and save; the training RNG stream is left exactly as it was."""
        c = self.config
        metrics, attention = validate(
            self.model, self.valid_dataset, self.valid_sampler, self.tokenizer, device=self.device,
            batch_size=c.valid_batch_size, decode_utts=c.valid_decode_utts, autocast_dtype=self.autocast_dtype,
            dist=self.dist, want_attention=c.plot_attention and self.dist.is_main,
        )
        restore_rng_state(rng[self.dist.rank])
        self.model.train()
        self._window["start"] = time.perf_counter()  # throughput excludes validation
        self.last_valid_step = self.step
        self._record({"event": "valid", "step": self.step, "epoch": self.epoch, **metrics})
        if attention is not None:
            plot_attention(attention.weights, self.exp_dir / "attention" / f"step{self.step}.png",
                           title=f"step {self.step}: {attention.utt_id}", tokens=attention.tokens)
        value = metrics[c.best_metric]
        improved = self.best_value is None or (
            value > self.best_value if c.higher_is_better else value < self.best_value)
        if improved and math.isfinite(value):
            self.best_value, self.bad_validations = value, 0
        else:
            self.bad_validations += 1
        self._save(rng, validated=value)
        if c.early_stop_patience and self.bad_validations >= c.early_stop_patience:
            return "early_stop"
        return None
