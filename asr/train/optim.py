"""Optimiser and learning-rate schedules.

The schedules are `torch.optim.lr_scheduler.LRScheduler` subclasses with a closed form in the
update count, so their `state_dict()` (plain numbers) restores them exactly on resume.

Convention: the k-th optimiser update (k = 1, 2, ...) runs with lr = peak * factor(k); with
warmup_steps = W the peak learning rate is used exactly by update W.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from asr.train.config import OptimConfig


def build_optimizer(model: nn.Module, config: OptimConfig) -> torch.optim.Optimizer:
    """AdamW (or Adam) over the model's trainable parameters.

    Weight decay pulls weights towards zero, which suits matrices but not biases, norm gains or
    other 1-D parameters (decaying a LayerNorm gain towards 0 only hurts), so those get none.
    """
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.dim() >= 2 else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError("build_optimizer: the model has no trainable parameters")
    if config.name == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, eps=config.eps)
    # Plain Adam folds weight decay into the gradient (L2); kept for recipes that ask for it.
    return torch.optim.Adam(groups, lr=config.lr, betas=config.betas, eps=config.eps)


class _ClosedFormScheduler(LRScheduler):
    """lr = base_lr * factor(update number); subclasses define `factor`."""

    def factor(self, step: int) -> float:
        raise NotImplementedError

    def get_lr(self) -> list[float]:
        # last_epoch counts finished updates; the lr set now serves update last_epoch + 1.
        f = self.factor(self.last_epoch + 1)
        return [base * f for base in self.base_lrs]


class NoamScheduler(_ClosedFormScheduler):
    """Linear warmup to the peak at `warmup_steps`, then inverse square-root decay (floored at min_lr)."""

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int, min_lr: float = 0.0):
        if warmup_steps < 1:
            raise ValueError(f"NoamScheduler: warmup_steps must be >= 1, got {warmup_steps}")
        self.warmup_steps = int(warmup_steps)
        self.min_lr = float(min_lr)
        super().__init__(optimizer)

    def factor(self, step: int) -> float:
        step = max(step, 1)
        if step <= self.warmup_steps:
            return step / self.warmup_steps
        decayed = math.sqrt(self.warmup_steps / step)
        peak = float(self.base_lrs[0]) or 1.0
        return max(decayed, self.min_lr / peak)


class WarmupCosineScheduler(_ClosedFormScheduler):
    """Linear warmup to the peak, then half a cosine down to min_lr at `total_steps` (min_lr after)."""

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, min_lr: float = 0.0):
        if total_steps <= warmup_steps:
            raise ValueError(
                f"WarmupCosineScheduler: total_steps ({total_steps}) must exceed warmup_steps ({warmup_steps})"
            )
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.min_lr = float(min_lr)
        super().__init__(optimizer)

    def factor(self, step: int) -> float:
        step = max(step, 1)
        if step <= self.warmup_steps:
            return step / self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / (self.total_steps - self.warmup_steps))
        floor = self.min_lr / (float(self.base_lrs[0]) or 1.0)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class ConstantScheduler(_ClosedFormScheduler):
    """Linear warmup (when warmup_steps > 0), then the peak learning rate."""

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int = 0):
        self.warmup_steps = int(warmup_steps)
        super().__init__(optimizer)

    def factor(self, step: int) -> float:
        if self.warmup_steps > 0 and step < self.warmup_steps:
            return max(step, 1) / self.warmup_steps
        return 1.0


def build_scheduler(optimizer: torch.optim.Optimizer, config: OptimConfig, total_steps: int) -> _ClosedFormScheduler:
    """The schedule named by `config.scheduler`; `total_steps` (number of updates) is needed by cosine."""
    if config.scheduler == "noam":
        return NoamScheduler(optimizer, config.warmup_steps, config.min_lr)
    if config.scheduler == "cosine":
        return WarmupCosineScheduler(optimizer, config.warmup_steps, total_steps, config.min_lr)
    return ConstantScheduler(optimizer, config.warmup_steps)
