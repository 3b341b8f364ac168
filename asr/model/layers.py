"""Small building blocks shared by the encoder and the decoder."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

import torch
from torch import Tensor, nn

from asr.model.linear import Linear

T = TypeVar("T")

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "swish": nn.SiLU}


def lookup(registry: Mapping[str, T], name: str, what: str) -> T:
    """registry[name], or a ValueError naming `what` and the valid names (config typos fail loudly)."""
    if name not in registry:
        raise ValueError(f"unknown {what} {name!r}; valid names are {', '.join(sorted(registry))}")
    return registry[name]


def padding_mask(lengths: Tensor, max_len: int) -> Tensor:
    """lengths (B,) -> (B, max_len) bool, True at valid positions.

    Lengths are clamped to at least 1: a row with no valid key would make attention softmax over
    nothing (NaN) and poison the whole batch; an utterance too short for the subsampling instead
    attends to its first (padding-derived) frame, and its CTC loss is zeroed by zero_infinity.
    """
    positions = torch.arange(max_len, device=lengths.device)
    return positions.unsqueeze(0) < lengths.clamp(min=1).unsqueeze(1)


def key_padding_mask(lengths: Tensor, max_len: int) -> Tensor:
    """lengths (B,) -> (B, 1, 1, max_len) bool: the keys each query may attend to, for attention's mask
    (broadcast over heads and queries)."""
    return padding_mask(lengths, max_len)[:, None, None, :]


class FeedForward(nn.Module):
    """Position-wise feed-forward block: Linear -> activation -> dropout -> Linear. (B, T, D) -> (B, T, D)."""

    def __init__(self, d_model: int, ffn_dim: int, dropout: float = 0.0, activation: str = "relu"):
        super().__init__()
        self.net = nn.Sequential(
            Linear(d_model, ffn_dim),
            lookup(ACTIVATIONS, activation, "activation")(),
            nn.Dropout(dropout),
            Linear(ffn_dim, d_model),
        )

    def forward(self, x: Tensor) -> Tensor:
        first, activation, dropout, second = self.net
        return second(dropout(first.activated(x, activation)))


def residual(x: Tensor, norm: nn.LayerNorm, fn: Callable[[Tensor], Tensor], dropout: nn.Dropout,
             normalize_before: bool) -> Tensor:
    """One residual sub-layer: pre-LN `x + fn(norm(x))` or post-LN `norm(x + fn(x))` (with dropout on fn)."""
    if normalize_before:
        return x + dropout(fn(norm(x)))
    return norm(x + dropout(fn(x)))
