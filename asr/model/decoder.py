"""Transformer decoder with teacher forcing (`forward`) and KV-cached incremental decoding (`step`).

Incremental API (used by asr/decode):
    state = decoder.init_state(enc, enc_lengths)     # cross-attention K/V, computed once per utterance
    logits, state = decoder.step(tokens, state)      # one new token per hypothesis; caches grow by one
    state = decoder.reorder_state(state, index)      # keep/duplicate hypotheses (beam pruning, expansion)
Running `step` over a token sequence gives the same logits as `forward` on the whole sequence.

Beam search shares cross-attention K/V between the hypotheses of one utterance instead of copying
them per hypothesis: `reorder_state(state, index, cross=False)` reorders only the self-attention
caches, and `step` then lets hypotheses g*G .. g*G + G-1 attend to row g of the cross K/V (G = the
number of hypotheses per cross-attention row, read from the shapes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from asr.model.attention import MultiHeadAttention
from asr.model.config import DecoderConfig
from asr.model.layers import FeedForward, key_padding_mask, residual
from asr.model.linear import Linear
from asr.model.positional import build_positional


@dataclass(frozen=True)
class DecoderState:
    """Everything `step` needs, as tensors whose dim 0 is the hypothesis (N); tuples hold one entry per layer.

    self_keys/self_values: (N, H, t, Dh) per layer, the t tokens fed so far.
    cross_keys/cross_values: (N / G, H, T, Dh) per layer, projections of the encoder output, shared by
        groups of G consecutive hypotheses (G = 1 unless reordered with cross=False).
    enc_mask: (N / G, 1, 1, T) bool, True at valid encoder frames; None when all are valid.
    """

    self_keys: tuple[Tensor, ...]
    self_values: tuple[Tensor, ...]
    cross_keys: tuple[Tensor, ...]
    cross_values: tuple[Tensor, ...]
    enc_mask: Tensor | None

    @property
    def offset(self) -> int:
        """Tokens fed so far = position of the next token (read from a shape: no device sync)."""
        return self.self_keys[0].size(2)


class DecoderLayer(nn.Module):
    """Causal self-attention, cross-attention to the encoder, feed-forward; each a residual sub-layer."""

    def __init__(self, d_model: int, n_heads: int, ffn_dim: int, enc_dim: int, dropout: float = 0.1,
                 attn_dropout: float = 0.0, normalize_before: bool = True, activation: str = "relu",
                 key_bias: bool = True):
        super().__init__()
        self.normalize_before = normalize_before
        self.self_attn = MultiHeadAttention(d_model, n_heads, attn_dropout, key_bias=key_bias)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, attn_dropout, kv_dim=enc_dim, key_bias=key_bias)
        self.ffn = FeedForward(d_model, ffn_dim, dropout, activation)
        self.self_norm = nn.LayerNorm(d_model)
        self.cross_norm = nn.LayerNorm(d_model)
        self.ffn_norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, cross_key: Tensor, cross_value: Tensor, enc_mask: Tensor) -> Tensor:
        """Teacher forcing. x (B, U, D); cross_key/value (B, H, T, Dh); enc_mask (B, 1, 1, T) -> (B, U, D)."""
        x = self._sublayer(x, self.self_norm, lambda h: self.self_attn(h, is_causal=True))
        return self._cross_and_ffn(x, cross_key, cross_value, enc_mask)

    def step(self, x: Tensor, self_key: Tensor, self_value: Tensor, cross_key: Tensor, cross_value: Tensor,
             enc_mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """One position. x (N, 1, D); self_key/value (N, H, t, Dh) -> (x (N, 1, D), keys, values (N, H, t+1, Dh))."""
        # The cache holds projections of the self-attention input, i.e. after the LayerNorm in pre-LN.
        h = self.self_norm(x) if self.normalize_before else x
        out, key, value = self.self_attn.step(h, self_key, self_value)
        x = x + self.dropout(out)
        if not self.normalize_before:
            x = self.self_norm(x)
        return self._cross_and_ffn(x, cross_key, cross_value, enc_mask), key, value

    def cross_weights(self, x: Tensor, cross_key: Tensor, enc_mask: Tensor) -> Tensor:
        """Cross-attention probabilities (B, H, U, T) of this layer for input x (B, U, D)."""
        x = self._sublayer(x, self.self_norm, lambda h: self.self_attn(h, is_causal=True))
        query = self.cross_norm(x) if self.normalize_before else x
        return self.cross_attn.weights(query, cross_key, enc_mask)

    def _cross_and_ffn(self, x: Tensor, cross_key: Tensor, cross_value: Tensor, enc_mask: Tensor | None) -> Tensor:
        x = self._sublayer(x, self.cross_norm, lambda h: self._cross_attend(h, cross_key, cross_value, enc_mask))
        return self._sublayer(x, self.ffn_norm, self.ffn)

    def _cross_attend(self, h: Tensor, cross_key: Tensor, cross_value: Tensor, enc_mask: Tensor | None) -> Tensor:
        """h (N, U, D) with cross K/V of N / G rows: each group of G hypotheses attends to its shared row."""
        rows, hyps = cross_key.size(0), h.size(0)
        if rows == hyps:
            return self.cross_attn.attend(h, cross_key, cross_value, enc_mask)
        if rows == 0 or hyps % rows:
            raise ValueError(f"decoder: {hyps} hypotheses cannot share {rows} rows of cross-attention K/V")
        # Cross-attention has no causal mask, so the G hypotheses of a group are just G more query
        # positions of one row: one attention call over the shared K/V, with nothing copied.
        out = self.cross_attn.attend(h.reshape(rows, -1, h.size(2)), cross_key, cross_value, enc_mask)
        return out.reshape(h.shape)

    def _sublayer(self, x: Tensor, norm: nn.LayerNorm, fn: Callable[[Tensor], Tensor]) -> Tensor:
        return residual(x, norm, fn, self.dropout, self.normalize_before)


class TransformerDecoder(nn.Module):
    """Token embedding + positions (config.pos_enc), N decoder layers, projection to the vocabulary."""

    def __init__(self, vocab_size: int, enc_dim: int, config: DecoderConfig):
        super().__init__()
        self.config = config
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size, config.d_model)
        # std d_model**-0.5: after the sqrt(d_model) input scale embeddings have unit variance, and
        # tied output logits start at a sensible scale.
        nn.init.normal_(self.embed.weight, std=config.d_model**-0.5)
        self.pos_enc = build_positional(config.pos_enc, config.d_model, config.dropout, config.max_positions,
                                        config.scale_embedding)
        self.layers = nn.ModuleList(
            DecoderLayer(config.d_model, config.n_heads, config.ffn_dim, enc_dim, config.dropout,
                         config.attn_dropout, config.normalize_before, config.activation, config.key_bias)
            for _ in range(config.n_layers)
        )
        self.final_norm = nn.LayerNorm(config.d_model) if config.normalize_before else nn.Identity()
        self.output = Linear(config.d_model, vocab_size, bias=config.output_bias)
        if config.tie_embeddings:
            self.output.weight = self.embed.weight

    @property
    def max_positions(self) -> int | None:
        """The most tokens (<sos> and forced prefix included) it can read; None: no limit (formula positions)."""
        return self.pos_enc.max_positions

    def forward(self, tokens: Tensor, enc: Tensor, enc_lengths: Tensor) -> Tensor:
        """Teacher forcing: tokens (B, U), enc (B, T, enc_dim), enc_lengths (B,) -> logits (B, U, V).

        Position u sees tokens[:, :u + 1] only, so padding after a sequence's end needs no mask.
        """
        x = self.pos_enc(self.embed(tokens))
        enc_mask = key_padding_mask(enc_lengths, enc.size(1))
        for layer in self.layers:
            x = layer(x, *layer.cross_attn.project_kv(enc), enc_mask)
        return self.output(self.final_norm(x))

    def init_state(self, enc: Tensor, enc_lengths: Tensor) -> DecoderState:
        """enc (N, T, enc_dim), enc_lengths (N,) -> state with empty self-attention caches."""
        cross = [layer.cross_attn.project_kv(enc) for layer in self.layers]
        key = cross[0][0]
        # Built from the projected keys so dtype (autocast) and device match what step will concatenate.
        empty = key.new_zeros(key.size(0), key.size(1), 0, key.size(3))
        enc_mask = key_padding_mask(enc_lengths, enc.size(1))
        return DecoderState(
            self_keys=(empty,) * len(self.layers),
            self_values=(empty,) * len(self.layers),
            cross_keys=tuple(k for k, _ in cross),
            cross_values=tuple(v for _, v in cross),
            # No mask when every frame is valid (one utterance, or equal lengths): attention skips
            # applying it at every step (one host sync here instead).
            enc_mask=None if bool(enc_mask.all()) else enc_mask,
        )

    def step(self, tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """tokens (N,): the last token of each hypothesis -> (logits (N, V) for the next token, new state)."""
        x = self.pos_enc(self.embed(tokens.unsqueeze(1)), offset=state.offset)
        keys, values = [], []
        for i, layer in enumerate(self.layers):
            x, key, value = layer.step(x, state.self_keys[i], state.self_values[i], state.cross_keys[i],
                                       state.cross_values[i], state.enc_mask)
            keys.append(key)
            values.append(value)
        logits = self.output(self.final_norm(x)).squeeze(1)
        return logits, DecoderState(tuple(keys), tuple(values), state.cross_keys, state.cross_values, state.enc_mask)

    @staticmethod
    def reorder_state(state: DecoderState, index: Tensor, cross: bool = True) -> DecoderState:
        """Hypothesis i of the result is hypothesis index[i] of `state`; index (N',) long, on the state's device.

        Expanding B utterances to B x beam: index = torch.arange(B).repeat_interleave(beam).
        cross=False reorders the self-attention caches only and keeps the cross-attention K/V as they
        are, shared by groups of N' / rows consecutive hypotheses (no copy of the encoder projections,
        which never change during a search). Then index must keep every hypothesis in its group:
        index[i] // G_old == i // G_new, with G the hypotheses per cross-attention row before and after.
        """

        def pick(tensors: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
            return tuple(t.index_select(0, index) for t in tensors)

        if not cross:
            return DecoderState(pick(state.self_keys), pick(state.self_values), state.cross_keys,
                                state.cross_values, state.enc_mask)
        enc_mask = None if state.enc_mask is None else state.enc_mask.index_select(0, index)
        return DecoderState(pick(state.self_keys), pick(state.self_values), pick(state.cross_keys),
                            pick(state.cross_values), enc_mask)

    @torch.no_grad()
    def cross_attention_weights(self, tokens: Tensor, enc: Tensor, enc_lengths: Tensor, layer: int = -1) -> Tensor:
        """Cross-attention probabilities (B, H, U, T) of one layer under teacher forcing (for alignment plots)."""
        target = range(len(self.layers))[layer]
        x = self.pos_enc(self.embed(tokens))
        enc_mask = key_padding_mask(enc_lengths, enc.size(1))
        for block in self.layers[:target]:
            x = block(x, *block.cross_attn.project_kv(enc), enc_mask)
        block = self.layers[target]
        return block.cross_weights(x, block.cross_attn.project_kv(enc)[0], enc_mask)
