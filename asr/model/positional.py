"""Positional encodings. Registry POSITIONAL maps EncoderConfig.pos_enc names to classes, so relative
encodings (which change the attention, not the input) can be added under a new name later."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class SinusoidalPositionalEncoding(nn.Module):
    """Absolute sinusoidal positions (Vaswani et al.): x * sqrt(d_model) + PE[offset : offset + T], then dropout.

    The sqrt(d_model) scale puts embeddings (initialised with std d_model**-0.5) and projected
    features on the same footing as the unit-amplitude sinusoids.
    """

    def __init__(self, d_model: int, dropout: float = 0.0, max_len: int = 5000):
        super().__init__()
        self.d_model = d_model
        self.scale = math.sqrt(d_model)
        self.dropout = nn.Dropout(dropout)
        # Not persistent: a function of d_model only, and it may grow for long inputs.
        self.register_buffer("table", self._make_table(max_len), persistent=False)

    def _make_table(self, length: int) -> Tensor:
        position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
        freq = torch.exp(torch.arange(0, self.d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / self.d_model))
        table = torch.zeros(length, self.d_model)
        table[:, 0::2] = torch.sin(position * freq)
        table[:, 1::2] = torch.cos(position * freq[: self.d_model // 2])
        return table

    def encoding(self, offset: int, length: int) -> Tensor:
        """PE rows for positions offset .. offset + length - 1: (length, d_model)."""
        if offset + length > self.table.size(0):
            self.table = self._make_table(max(offset + length, 2 * self.table.size(0))).to(self.table.device)
        return self.table[offset : offset + length]

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        """x (B, T, D) -> (B, T, D); offset: position of x[:, 0] (incremental decoding)."""
        pe = self.encoding(offset, x.size(1)).to(x.dtype)
        return self.dropout(x * self.scale + pe)


POSITIONAL: dict[str, type[SinusoidalPositionalEncoding]] = {"sinusoidal": SinusoidalPositionalEncoding}
