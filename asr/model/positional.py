"""Absolute positional encodings. Registry POSITIONAL maps EncoderConfig/DecoderConfig.pos_enc names to
classes, so relative encodings (which change the attention, not the input) can be added under a new name later.

Every class is built as cls(d_model, dropout, max_len=..., scale=...) and computes
dropout(x * sqrt(d_model) + P[offset : offset + T]) (or x + P when scale=False) for a table P:

    sinusoidal  Vaswani et al.: sin/cos interleaved; this toolkit's own models
    whisper     openai-whisper's encoder: sin block then cos block, timescales 10000^(i / (D/2 - 1))
    fairseq     fairseq/tensor2tensor (Speech2Text): the same formula as whisper, read from row 2 on
                (fairseq numbers positions from padding_idx + 1 = 2)
    learned     a trained table of max_len rows (Whisper's decoder)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from asr.model.layers import lookup


class SinusoidalPositionalEncoding(nn.Module):
    """Absolute sinusoidal positions (Vaswani et al.): x * sqrt(d_model) + PE[offset : offset + T], then dropout.

    The sqrt(d_model) scale puts embeddings (initialised with std d_model**-0.5) and projected
    features on the same footing as the unit-amplitude sinusoids. max_len: rows computed up front
    (the table grows on demand). scale=False adds the positions to x unscaled.
    """

    max_positions: int | None = None  # the longest input it can encode (None: any length)

    def __init__(self, d_model: int, dropout: float = 0.0, max_len: int = 5000, scale: bool = True):
        super().__init__()
        self.d_model = d_model
        self.scale = math.sqrt(d_model) if scale else 1.0
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
        return self.dropout((x * self.scale if self.scale != 1.0 else x) + pe)


def sin_cos_table(length: int, d_model: int, first: int = 0) -> Tensor:
    """Rows first .. first + length - 1 of the tensor2tensor table: [sin(p * w_i), cos(p * w_i)] with
    w_i = 10000^(-i / (D/2 - 1)), i < D/2 (computed as openai-whisper and fairseq do, in float32)."""
    if d_model % 2 or d_model < 4:
        raise ValueError(f"sin/cos positions need an even d_model >= 4, got {d_model}")
    half = d_model // 2
    inv_timescales = torch.exp(-(math.log(10000.0) / (half - 1)) * torch.arange(half, dtype=torch.float32))
    scaled = torch.arange(first, first + length, dtype=torch.float32)[:, None] * inv_timescales[None, :]
    return torch.cat([torch.sin(scaled), torch.cos(scaled)], dim=1)


class WhisperPositionalEncoding(SinusoidalPositionalEncoding):
    """openai-whisper's encoder positions (its `sinusoids(length, channels)`), added unscaled by default."""

    def _make_table(self, length: int) -> Tensor:
        return sin_cos_table(length, self.d_model)


class FairseqPositionalEncoding(SinusoidalPositionalEncoding):
    """fairseq's sinusoidal positions (Speech2Text encoder and decoder): position t is row t + 2 of the table."""

    first_row = 2  # fairseq's padding_idx (1) + 1

    def _make_table(self, length: int) -> Tensor:
        return sin_cos_table(length, self.d_model, first=self.first_row)


class LearnedPositionalEncoding(nn.Module):
    """A trained table of max_len positions: x (* sqrt(d_model) when scale) + table[offset : offset + T]."""

    def __init__(self, d_model: int, dropout: float = 0.0, max_len: int = 448, scale: bool = True):
        super().__init__()
        if max_len < 1:
            raise ValueError(f"learned positions need max_len >= 1, got {max_len}")
        self.scale = math.sqrt(d_model) if scale else 1.0
        self.dropout = nn.Dropout(dropout)
        self.table = nn.Parameter(torch.empty(max_len, d_model))
        nn.init.normal_(self.table, std=0.02)

    @property
    def max_positions(self) -> int:
        return self.table.size(0)

    def encoding(self, offset: int, length: int) -> Tensor:
        if offset + length > self.max_positions:
            raise ValueError(f"learned positions: positions up to {offset + length} requested, the model has "
                             f"{self.max_positions}")
        return self.table[offset : offset + length]

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        pe = self.encoding(offset, x.size(1)).to(x.dtype)
        return self.dropout((x * self.scale if self.scale != 1.0 else x) + pe)


POSITIONAL: dict[str, type[nn.Module]] = {
    "sinusoidal": SinusoidalPositionalEncoding,
    "whisper": WhisperPositionalEncoding,
    "fairseq": FairseqPositionalEncoding,
    "learned": LearnedPositionalEncoding,
}


def build_positional(name: str, d_model: int, dropout: float, max_positions: int, scale: bool) -> nn.Module:
    """The positional encoding `name` (a POSITIONAL key); max_positions: the learned table's size, or
    the rows computed up front for the formulas (0: 5000)."""
    return lookup(POSITIONAL, name, "positional encoding")(d_model, dropout, max_len=max_positions or 5000,
                                                           scale=scale)
