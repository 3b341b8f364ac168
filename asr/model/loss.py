"""Attention-decoder losses and metrics over padded targets (IGNORE_ID = -1 marks positions to skip)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from asr.model.config import IGNORE_ID


def label_smoothed_nll(logits: Tensor, targets: Tensor, smoothing: float = 0.0,
                       ignore_index: int = IGNORE_ID) -> Tensor:
    """Label-smoothed cross-entropy averaged over the non-ignored target tokens.

    logits (B, U, V), targets (B, U). Per token: (1 - smoothing) * -log p(y) + smoothing * mean_v(-log p(v)),
    i.e. the target distribution puts smoothing / V on every class (F.cross_entropy's convention).
    Returns a scalar (0 when no token counts).
    """
    total = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=ignore_index,
                            label_smoothing=smoothing, reduction="sum")
    return total / (targets != ignore_index).sum().clamp(min=1)


def token_accuracy(logits: Tensor, targets: Tensor, ignore_index: int = IGNORE_ID) -> Tensor:
    """Fraction of non-ignored positions where argmax(logits) == target. logits (B, U, V), targets (B, U) -> scalar."""
    valid = targets != ignore_index
    correct = (logits.argmax(dim=-1) == targets) & valid
    return correct.sum().float() / valid.sum().clamp(min=1)
