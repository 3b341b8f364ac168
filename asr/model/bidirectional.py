"""Bidirectional decoder layers: the Transformer decoder's layers without the causal mask.

The non-autoregressive decoders (asr/model/nat.py, asr/model/maskctc.py) predict every output
position at once, so each position may attend to all others; only padding is masked. The layers
reuse asr.model.decoder.DecoderLayer's sub-layers (self-attention, cross-attention, feed-forward),
so both kinds of decoder share one implementation of the arithmetic.
"""

from __future__ import annotations

from torch import Tensor, nn

from asr.model.config import DecoderConfig
from asr.model.decoder import DecoderLayer
from asr.model.layers import key_padding_mask


class BidirectionalDecoderLayer(DecoderLayer):
    """Self-attention over all valid positions (self_mask), cross-attention, feed-forward."""

    def forward(self, x: Tensor, cross_key: Tensor, cross_value: Tensor, enc_mask: Tensor,
                self_mask: Tensor | None = None) -> Tensor:
        """x (B, U, D); cross_key/value (B, H, T, Dh); enc_mask (B, 1, 1, T); self_mask (B, 1, 1, U) -> (B, U, D)."""
        x = self._sublayer(x, self.self_norm, lambda h: self.self_attn(h, mask=self_mask))
        return self._cross_and_ffn(x, cross_key, cross_value, enc_mask)

    def cross_weights(self, x: Tensor, cross_key: Tensor, enc_mask: Tensor, self_mask: Tensor | None = None) -> Tensor:
        """Cross-attention probabilities (B, H, U, T) of this layer for input x (B, U, D)."""
        x = self._sublayer(x, self.self_norm, lambda h: self.self_attn(h, mask=self_mask))
        query = self.cross_norm(x) if self.normalize_before else x
        return self.cross_attn.weights(query, cross_key, enc_mask)


class BidirectionalStack(nn.Module):
    """config.n_layers bidirectional layers and the final LayerNorm (pre-LN): embedded input -> hidden states."""

    def __init__(self, enc_dim: int, config: DecoderConfig):
        super().__init__()
        self.layers = nn.ModuleList(
            BidirectionalDecoderLayer(config.d_model, config.n_heads, config.ffn_dim, enc_dim, config.dropout,
                                      config.attn_dropout, config.normalize_before)
            for _ in range(config.n_layers)
        )
        self.final_norm = nn.LayerNorm(config.d_model) if config.normalize_before else nn.Identity()

    def forward(self, x: Tensor, lengths: Tensor, enc: Tensor, enc_lengths: Tensor) -> Tensor:
        """x (B, U, D) embedded input whose first lengths (B,) positions are valid; enc (B, T, enc_dim),
        enc_lengths (B,) -> hidden states (B, U, D). Padding positions get values that nothing reads."""
        self_mask = key_padding_mask(lengths, x.size(1))
        enc_mask = key_padding_mask(enc_lengths, enc.size(1))
        for layer in self.layers:
            x = layer(x, *layer.cross_attn.project_kv(enc), enc_mask, self_mask)
        return self.final_norm(x)

    def cross_attention_weights(self, x: Tensor, lengths: Tensor, enc: Tensor, enc_lengths: Tensor,
                                layer: int = -1) -> Tensor:
        """Cross-attention probabilities (B, H, U, T) of one layer for the embedded input x (B, U, D)."""
        target = range(len(self.layers))[layer]
        self_mask = key_padding_mask(lengths, x.size(1))
        enc_mask = key_padding_mask(enc_lengths, enc.size(1))
        for block in self.layers[:target]:
            x = block(x, *block.cross_attn.project_kv(enc), enc_mask, self_mask)
        block = self.layers[target]
        return block.cross_weights(x, block.cross_attn.project_kv(enc)[0], enc_mask, self_mask)
