"""Transformer encoder: convolutional subsampling, positions, then N self-attention blocks."""

from __future__ import annotations

from torch import Tensor, nn

from asr.model.attention import MultiHeadAttention
from asr.model.config import EncoderConfig
from asr.model.layers import FeedForward, key_padding_mask, lookup, residual
from asr.model.positional import build_positional
from asr.model.subsampling import SUBSAMPLING


class EncoderLayer(nn.Module):
    """Self-attention then feed-forward, each a residual sub-layer (pre-LN or post-LN)."""

    def __init__(self, d_model: int, n_heads: int, ffn_dim: int, dropout: float = 0.1, attn_dropout: float = 0.0,
                 normalize_before: bool = True, activation: str = "relu", key_bias: bool = True):
        super().__init__()
        self.normalize_before = normalize_before
        self.self_attn = MultiHeadAttention(d_model, n_heads, attn_dropout, key_bias=key_bias)
        self.ffn = FeedForward(d_model, ffn_dim, dropout, activation)
        self.attn_norm = nn.LayerNorm(d_model)
        self.ffn_norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x (B, T, D), mask (B, 1, 1, T) True at valid frames -> (B, T, D)."""
        x = residual(x, self.attn_norm, lambda h: self.self_attn(h, mask=mask), self.dropout, self.normalize_before)
        return residual(x, self.ffn_norm, self.ffn, self.dropout, self.normalize_before)


class TransformerEncoder(nn.Module):
    """feats (B, T, input_dim), lengths (B,) -> (enc (B, T', d_model), enc_lengths (B,)).

    Outputs at padded frames (t >= enc_lengths) are finite but meaningless.
    """

    def __init__(self, input_dim: int, config: EncoderConfig):
        super().__init__()
        self.config = config
        subsampling = lookup(SUBSAMPLING, config.subsampling, "subsampling")
        self.subsampling = subsampling(input_dim, config.d_model, config.subsampling_channels)
        self.pos_enc = build_positional(config.pos_enc, config.d_model, config.dropout, config.max_positions,
                                        config.scale_embedding)
        self.layers = nn.ModuleList(
            EncoderLayer(config.d_model, config.n_heads, config.ffn_dim, config.dropout, config.attn_dropout,
                         config.normalize_before, config.activation, config.key_bias)
            for _ in range(config.n_layers)
        )
        # Pre-LN leaves the residual stream unnormalised; post-LN already ends with a LayerNorm.
        self.final_norm = nn.LayerNorm(config.d_model) if config.normalize_before else nn.Identity()

    @property
    def output_dim(self) -> int:
        return self.config.d_model

    @property
    def min_input_length(self) -> int:
        """The fewest feature frames that give one encoder frame (shorter utterances should be filtered)."""
        return self.subsampling.min_input_length

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """Encoder frames for `lengths` feature frames, (B,) -> (B,)."""
        return self.subsampling.output_lengths(lengths)

    def forward(self, feats: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        x, enc_lengths = self.subsampling(feats, lengths)
        x = self.pos_enc(x)
        mask = key_padding_mask(enc_lengths, x.size(1))
        for layer in self.layers:
            x = layer(x, mask)
        return self.final_norm(x), enc_lengths
