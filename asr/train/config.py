"""Typed training configuration: the optimiser/schedule (`OptimConfig`) and the loop (`TrainerConfig`).

Plain frozen dataclasses: recipes and CLIs turn their Hydra/YAML config into these with
`from_dict` (asr.typed_config), which rejects unknown keys so that a typo in a config file fails loudly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from asr.typed_config import from_dict

SCHEDULERS = ("noam", "cosine", "constant")
OPTIMIZERS = ("adamw", "adam")
PRECISIONS = ("fp32", "bf16")
# Metric name -> True when larger is better.
BEST_METRICS = {"valid_loss": False, "valid_acc": True, "valid_wer": False, "valid_ctc_wer": False}


def _check(cls_name: str, condition: bool, field: str, message: str, value: Any) -> None:
    if not condition:
        raise ValueError(f"{cls_name}.{field}: {message}, got {value!r}")


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and learning-rate schedule.

    lr is the peak learning rate, reached after `warmup_steps` optimiser updates.
      noam:     linear warmup, then lr * sqrt(warmup_steps / step)
      cosine:   linear warmup, then half a cosine from lr down to min_lr at the last step
      constant: linear warmup (if any), then lr
    Weight decay applies to matrices only (not to biases, norms or other 1-D parameters).
    """

    name: str = "adamw"
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-9
    weight_decay: float = 0.01
    scheduler: str = "noam"
    warmup_steps: int = 25000
    min_lr: float = 0.0

    def __post_init__(self) -> None:
        n = "OptimConfig"
        _check(n, self.name in OPTIMIZERS, "name", f"expected one of {OPTIMIZERS}", self.name)
        _check(n, self.scheduler in SCHEDULERS, "scheduler", f"expected one of {SCHEDULERS}", self.scheduler)
        _check(n, math.isfinite(self.lr) and self.lr > 0, "lr", "expected a positive number", self.lr)
        _check(n, len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "betas",
               "expected two numbers in [0, 1)", self.betas)
        _check(n, self.eps > 0, "eps", "expected a positive number", self.eps)
        _check(n, self.weight_decay >= 0, "weight_decay", "expected >= 0", self.weight_decay)
        _check(n, self.warmup_steps >= 0, "warmup_steps", "expected >= 0", self.warmup_steps)
        _check(n, 0 <= self.min_lr <= self.lr, "min_lr", f"expected a number in [0, lr={self.lr}]", self.min_lr)
        if self.scheduler == "noam":
            _check(n, self.warmup_steps > 0, "warmup_steps", "the noam schedule needs warmup_steps > 0",
                   self.warmup_steps)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> OptimConfig:
        return from_dict(cls, values)


@dataclass(frozen=True)
class TrainerConfig:
    """The training loop.

    Steps count optimiser updates (one update = `accum_grad` batches per process). Zero means "off" for
    max_steps, valid_every_steps (then: validate once per epoch), save_every_steps (then: save at
    epoch ends and validations), early_stop_patience and sampling_ramp_steps (then: the full
    sampling_prob from the start).

    num_procs: train with this many processes (DDP) that asr-run starts on this machine, each with an
    equal share of the CPU threads (on GPUs: one per GPU). Under torchrun it is ignored: torchrun
    decides. Each process takes its own batches, so an update sees num_procs batches.

    reference_world_size: the number of processes (GPUs) that `accum_grad` is meant for; 0 = use
    accum_grad as it is whatever the number. With N > 0 the batches per update and process become
    accum_grad x N / world_size (see accum_grad_for), so the effective batch, the number of updates
    per epoch and with them the learning-rate schedule stay the same on any number of GPUs.
    """

    max_epochs: int = 100
    max_steps: int = 0
    grad_clip: float = 5.0
    accum_grad: int = 1
    precision: str = "fp32"
    valid_every_steps: int = 0
    valid_decode_utts: int = 20
    valid_batch_size: int = 16
    keep_best: int = 5
    best_metric: str = "valid_loss"
    early_stop_patience: int = 0
    log_every_steps: int = 50
    save_every_steps: int = 0
    max_consecutive_nonfinite: int = 10
    seed: int = 0
    num_workers: int = 0
    sampling_prob: float = 0.0
    sampling_ramp_steps: int = 0
    device: str = "cpu"
    resume: bool = True
    progress_bar: bool = True
    plot_attention: bool = True
    reference_world_size: int = 0
    num_procs: int = 1

    def __post_init__(self) -> None:
        n = "TrainerConfig"
        for name in ("max_epochs", "accum_grad", "keep_best", "log_every_steps", "max_consecutive_nonfinite",
                     "valid_batch_size", "num_procs"):
            _check(n, getattr(self, name) >= 1, name, "expected an integer >= 1", getattr(self, name))
        for name in ("max_steps", "valid_every_steps", "valid_decode_utts", "early_stop_patience",
                     "save_every_steps", "num_workers", "sampling_ramp_steps", "seed", "reference_world_size"):
            _check(n, getattr(self, name) >= 0, name, "expected an integer >= 0", getattr(self, name))
        _check(n, self.grad_clip >= 0, "grad_clip", "expected >= 0 (0 = no clipping)", self.grad_clip)
        _check(n, self.precision in PRECISIONS, "precision", f"expected one of {PRECISIONS}", self.precision)
        _check(n, self.best_metric in BEST_METRICS, "best_metric", f"expected one of {sorted(BEST_METRICS)}",
               self.best_metric)
        _check(n, 0.0 <= self.sampling_prob <= 1.0, "sampling_prob", "expected a probability", self.sampling_prob)

    @property
    def higher_is_better(self) -> bool:
        return BEST_METRICS[self.best_metric]

    def accum_grad_for(self, world_size: int) -> int:
        """Batches each of `world_size` processes accumulates per update.

        accum_grad when reference_world_size is 0; else accum_grad x reference_world_size / world_size,
        which keeps accum_grad x world_size (the batches in one update) what it is on reference_world_size
        processes. Raises ValueError when that does not divide evenly.
        """
        if world_size < 1:
            raise ValueError(f"TrainerConfig.accum_grad_for: world_size must be >= 1, got {world_size}")
        if self.reference_world_size == 0:
            return self.accum_grad
        total = self.accum_grad * self.reference_world_size
        if total % world_size:
            divisors = [n for n in range(1, total + 1) if total % n == 0]
            raise ValueError(
                f"TrainerConfig: accum_grad={self.accum_grad} x reference_world_size={self.reference_world_size} = "
                f"{total} batches per update cannot be split evenly over {world_size} processes; run on one of "
                f"{divisors} processes, or set reference_world_size=0 to accumulate accum_grad={self.accum_grad} "
                "batches per process (a different effective batch)")
        return total // world_size

    def sampling_prob_at(self, step: int) -> float:
        """Scheduled-sampling probability for optimiser step `step` (linear ramp from 0)."""
        if self.sampling_ramp_steps == 0:
            return self.sampling_prob
        return self.sampling_prob * min(1.0, step / self.sampling_ramp_steps)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainerConfig:
        return from_dict(cls, values)
