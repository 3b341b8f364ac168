"""Multi-head attention on top of F.scaled_dot_product_attention (fused kernels where available).

Masks are boolean with True = may attend, broadcastable to (B, H, U, T). Keys/values are kept in
head layout (B, H, T, Dh) so that a decoder can compute cross-attention K/V once per utterance and
grow a self-attention cache one step at a time without re-projecting the past.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asr.model.linear import Linear, fused_linear


class MultiHeadAttention(nn.Module):
    """Queries from x (B, U, d_model); keys/values from x (self) or a memory (B, T, kv_dim) (cross).

    key_bias=False drops the key projection's bias (as Whisper): it adds the same q.b to every
    score of a query, which the softmax cancels, so it is dead weight.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, kv_dim: int | None = None,
                 key_bias: bool = True):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not a multiple of n_heads={n_heads}")
        kv_dim = kv_dim or d_model
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.dropout = dropout
        self.query = Linear(d_model, d_model)
        self.key = Linear(kv_dim, d_model, bias=key_bias)
        self.value = Linear(kv_dim, d_model)
        self.out = Linear(d_model, d_model)

    def forward(self, x: Tensor, memory: Tensor | None = None, mask: Tensor | None = None,
                is_causal: bool = False) -> Tensor:
        """x (B, U, D); memory (B, T, kv_dim) or None for self-attention; mask (B|1, 1, U|1, T) -> (B, U, D)."""
        key, value = self.project_kv(x if memory is None else memory)
        return self.attend(x, key, value, mask, is_causal)

    def project_kv(self, source: Tensor) -> tuple[Tensor, Tensor]:
        """source (B, T, kv_dim) -> keys, values, each (B, H, T, Dh)."""
        return self._split_heads(self.key(source)), self._split_heads(self.value(source))

    def attend(self, x: Tensor, key: Tensor, value: Tensor, mask: Tensor | None = None,
               is_causal: bool = False) -> Tensor:
        """Attend from queries x (B, U, D) to precomputed key/value (B, H, T, Dh) -> (B, U, D)."""
        return self._attend_heads(self._split_heads(self.query(x)), key, value, mask, is_causal)

    def _attend_heads(self, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None = None,
                      is_causal: bool = False) -> Tensor:
        """query (B, H, U, Dh), key/value (B, H, T, Dh) -> (B, U, D)."""
        dropout = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=dropout,
                                             is_causal=is_causal)
        return self.out(self._merge_heads(out))

    def step(self, x: Tensor, key_cache: Tensor, value_cache: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Incremental causal self-attention for one new position.

        x (N, 1, D): the new position; key_cache/value_cache (N, H, t, Dh): the t earlier positions.
        Returns (out (N, 1, D), keys (N, H, t+1, Dh), values (N, H, t+1, Dh)). No mask is needed:
        the cache holds only the past, which is exactly what a causal mask would allow.
        """
        # One GEMM for the three projections in inference (a step's GEMMs are mostly fixed overhead).
        query, new_key, new_value = map(self._split_heads, fused_linear(x, (self.query, self.key, self.value)))
        key = torch.cat([key_cache, new_key], dim=2)
        value = torch.cat([value_cache, new_value], dim=2)
        return self._attend_heads(query, key, value), key, value

    def weights(self, x: Tensor, key: Tensor, mask: Tensor | None = None) -> Tensor:
        """Attention probabilities (B, H, U, T) computed explicitly, for plots (the fused kernel hides them)."""
        query = self._split_heads(self.query(x))
        scores = query @ key.transpose(-2, -1) / math.sqrt(self.head_dim)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return scores.softmax(dim=-1)

    def _split_heads(self, x: Tensor) -> Tensor:
        """(B, T, H * Dh) -> (B, H, T, Dh)."""
        batch, length, _ = x.shape
        return x.view(batch, length, self.n_heads, self.head_dim).transpose(1, 2)

    def _merge_heads(self, x: Tensor) -> Tensor:
        """(B, H, T, Dh) -> (B, T, H * Dh)."""
        batch, _, length, _ = x.shape
        return x.transpose(1, 2).reshape(batch, length, self.n_heads * self.head_dim)
