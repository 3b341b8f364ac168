"""The non-autoregressive decoder (DecoderConfig.kind = "nat"): every output token in one parallel pass.

    length predictor   masked mean of the encoder output, the number of encoder frames and the
                       forced prefix's embeddings -> MLP -> logits over the lengths 0 .. max_len
    decoder            [prefix token embeddings, L query positions] + sinusoidal positions ->
                       bidirectional layers (no causal mask) with cross-attention to the encoder ->
                       logits (B, L, V) for all L positions at once

A query position is a learned vector plus the sinusoidal encoding of its position ("position
queries", as in LASO, Bai et al. 2020): the decoder learns which stretch of audio each position
reads through cross-attention. The forced prefix (task / language tokens) is ordinary context.

NATConfig.length_mode picks one of two length strategies at training time:
    predict  trained on L = n query positions (the reference length) with targets y1..yn, and the
             length predictor on n. Decoding tries the k most likely lengths (asr/decode/nat.py).
    eos      trained on max_len query positions with targets y1..yn, <eos>, <eos>, ...; decoding
             runs max_len positions and cuts at the first <eos>. No length predictor.
References longer than max_len are cut to max_len tokens (the decoder cannot emit more).

NATModel's loss: ctc_weight * CTC + (1 - ctc_weight) * (token loss + length_weight * length loss).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asr.model.bidirectional import BidirectionalStack
from asr.model.config import EOS_ID, IGNORE_ID, DecoderConfig, ModelConfig, NATConfig
from asr.model.ctc import CTC
from asr.model.layers import padding_mask
from asr.model.linear import Linear
from asr.model.loss import label_smoothed_nll, token_accuracy
from asr.model.model import ASRModel
from asr.model.positional import SinusoidalPositionalEncoding

FRAMES_SCALE = 100.0  # the length predictor reads the encoder frame count in units of 100 frames


@dataclass(frozen=True)
class NATTargets:
    """What the NAT decoder is trained on (see nat_targets).

    query_lengths (B,): query positions of each utterance; outputs (B, W): the token each position
    must predict (IGNORE_ID where none); length_targets (B,): the length class, n clamped to max_len.
    """

    query_lengths: Tensor
    outputs: Tensor
    length_targets: Tensor


def nat_targets(targets: Tensor, target_lengths: Tensor, max_len: int, length_mode: str) -> NATTargets:
    """Training targets from targets (B, N) padded with IGNORE_ID and target_lengths (B,).

    predict: W = min(N, max_len) (at least 1) positions, utterance b has min(n_b, max_len) queries
        predicting its tokens; eos: W = max_len queries for every utterance predicting y1..yn and
        then <eos> at every later position. No host synchronisation (W comes from shapes).
    """
    if length_mode not in ("predict", "eos"):
        raise ValueError(f"nat_targets: length_mode must be 'predict' or 'eos', got {length_mode!r}")
    length = targets.size(1)
    width = max(1, min(length, max_len)) if length_mode == "predict" else max_len
    body = F.pad(targets[:, :width], (0, width - min(length, width)), value=IGNORE_ID)
    lengths = target_lengths.clamp(max=max_len)
    inside = torch.arange(width, device=targets.device) < lengths[:, None]
    if length_mode == "predict":
        return NATTargets(lengths, body.masked_fill(~inside, IGNORE_ID), lengths)
    outputs = torch.where(inside, body, torch.full_like(body, EOS_ID))
    return NATTargets(torch.full_like(lengths, max_len), outputs, lengths)


class LengthPredictor(nn.Module):
    """(masked mean of enc (B, T, enc_dim), frames / 100, prefix embedding (B, D)) -> logits (B, max_len + 1)."""

    def __init__(self, enc_dim: int, d_model: int, max_len: int, dropout: float):
        super().__init__()
        self.hidden = Linear(enc_dim + 1, d_model)
        self.dropout = nn.Dropout(dropout)
        self.out = Linear(d_model, max_len + 1)

    def forward(self, enc: Tensor, enc_lengths: Tensor, prefix_embedding: Tensor) -> Tensor:
        valid = padding_mask(enc_lengths, enc.size(1)).unsqueeze(2).to(enc.dtype)  # (B, T, 1)
        pooled = (enc * valid).sum(dim=1) / valid.sum(dim=1)
        frames = (enc_lengths.to(enc.dtype) / FRAMES_SCALE).unsqueeze(1)
        hidden = self.hidden(torch.cat([pooled, frames], dim=1)) + prefix_embedding
        return self.out(self.dropout(torch.relu(hidden)))


class NATDecoder(nn.Module):
    """Position queries + bidirectional layers -> all output logits at once; a length predictor in predict mode."""

    def __init__(self, vocab_size: int, enc_dim: int, config: DecoderConfig):
        super().__init__()
        self.config = config
        self.nat: NATConfig = config.nat or NATConfig()
        self.vocab_size = vocab_size
        d_model = config.d_model
        self.embed = nn.Embedding(vocab_size, d_model)  # prefix tokens (and the tied output layer)
        nn.init.normal_(self.embed.weight, std=d_model**-0.5)
        self.query = nn.Parameter(torch.randn(d_model) * d_model**-0.5)
        self.pos_enc = SinusoidalPositionalEncoding(d_model, config.dropout)
        self.stack = BidirectionalStack(enc_dim, config)
        self.output = Linear(d_model, vocab_size)
        if config.tie_embeddings:
            self.output.weight = self.embed.weight
        self.length_predictor = (LengthPredictor(enc_dim, d_model, self.nat.max_len, config.dropout)
                                 if self.nat.length_mode == "predict" else None)

    @property
    def max_len(self) -> int:
        return self.nat.max_len

    @property
    def length_mode(self) -> str:
        return self.nat.length_mode

    def _input(self, prefix: Tensor, width: int) -> Tensor:
        """[prefix embeddings, `width` queries] with positions: (B, P + width, D)."""
        queries = self.query.expand(prefix.size(0), width, -1)
        return self.pos_enc(torch.cat([self.embed(prefix).to(queries.dtype), queries], dim=1))

    def forward(self, prefix: Tensor, query_lengths: Tensor, width: int, enc: Tensor, enc_lengths: Tensor) -> Tensor:
        """prefix (B, P) forced tokens; query_lengths (B,) <= width query positions per utterance;
        enc (B, T, enc_dim), enc_lengths (B,) -> logits (B, width, V), one row per query position."""
        prefix_len = prefix.size(1)
        hidden = self.stack(self._input(prefix, width), prefix_len + query_lengths, enc, enc_lengths)
        return self.output(hidden[:, prefix_len:])

    def length_logits(self, enc: Tensor, enc_lengths: Tensor, prefix: Tensor) -> Tensor:
        """enc (B, T, enc_dim), enc_lengths (B,), prefix (B, P) -> logits (B, max_len + 1) over output lengths."""
        if self.length_predictor is None:
            raise ValueError("this NAT decoder has no length predictor (length_mode='eos': its output ends at the "
                             "first <eos>)")
        return self.length_predictor(enc, enc_lengths, self.embed(prefix).sum(dim=1))

    @torch.no_grad()
    def cross_attention_weights(self, tokens: Tensor, enc: Tensor, enc_lengths: Tensor, layer: int = -1) -> Tensor:
        """Cross-attention probabilities (B, H, U - 1, T) of one layer, for training plots.

        tokens (B, U): the autoregressive decoders' teacher-forcing input [<sos>, prefix, y]. The NAT
        decoder reads no tokens, so this shows U - 1 query positions (no prefix) attending to the audio.
        """
        width = max(tokens.size(1) - 1, 1)
        lengths = torch.full_like(enc_lengths, width)
        x = self._input(tokens[:, :0], width)
        return self.stack.cross_attention_weights(x, lengths, enc, enc_lengths, layer)


class NonAutoregressiveModel(ASRModel, ABC):
    """An ASRModel whose decoder is trained by its own `decoder_loss` (not teacher forcing):
    loss = ctc_weight * CTC + (1 - ctc_weight) * decoder_loss["att_loss"]. No scheduled sampling."""

    def __init__(self, config: ModelConfig, encoder: nn.Module, decoder: nn.Module | None, ctc: CTC | None):
        if not config.has_decoder:
            raise ValueError(f"decoder kind {config.decoder.kind!r} needs ctc_weight < 1, got {config.ctc_weight} "
                             "(with ctc_weight=1 there is no decoder to train)")
        if config.sampling_prob > 0:
            raise ValueError(f"ModelConfig.sampling_prob={config.sampling_prob}: scheduled sampling needs an "
                             f"autoregressive decoder, not {config.decoder.kind!r}")
        super().__init__(config, encoder, decoder, ctc)

    def set_sampling_prob(self, prob: float) -> None:
        if prob > 0:
            raise ValueError(f"scheduled sampling (probability {prob}) needs an autoregressive decoder, not "
                             f"{self.config.decoder.kind!r}")

    def forward(self, batch: object) -> dict[str, Tensor]:
        """batch: an asr.data.Batch. Returns "loss", "ctc_loss" (with a CTC head), "att_loss" (the
        decoder's loss), "acc" (its token accuracy) and the decoder's other terms."""
        enc, enc_lengths = self.encode(batch.feats, batch.feat_lengths)
        weight = self.config.ctc_weight
        out: dict[str, Tensor] = {}
        loss = enc.new_zeros((), dtype=torch.float32)
        if self.ctc is not None:
            out["ctc_loss"] = self.ctc.loss(enc, enc_lengths, batch.ctc_targets, batch.ctc_target_lengths)
            loss = loss + weight * out["ctc_loss"]
        terms = self.decoder_loss(enc, enc_lengths, batch.targets, batch.target_lengths, batch.prefix)
        loss = loss + (1.0 - weight) * terms["att_loss"]
        return {"loss": loss, **out, **terms}

    @abstractmethod
    def decoder_loss(self, enc: Tensor, enc_lengths: Tensor, targets: Tensor, target_lengths: Tensor,
                     prefix: Tensor) -> dict[str, Tensor]:
        """enc (B, T, D), enc_lengths (B,), targets (B, N) padded with IGNORE_ID, target_lengths (B,),
        prefix (B, P) -> scalars, at least "att_loss" (what is trained) and "acc"."""


class NATModel(NonAutoregressiveModel):
    """ASRModel with a NATDecoder (built by build_model for DecoderConfig.kind = "nat")."""

    def decoder_loss(self, enc: Tensor, enc_lengths: Tensor, targets: Tensor, target_lengths: Tensor,
                     prefix: Tensor) -> dict[str, Tensor]:
        """-> {"att_loss": token loss + length_weight * length loss, "acc", "token_loss", and in
        predict mode "length_loss", "length_acc"}. Token loss: label-smoothed, per target position."""
        decoder: NATDecoder = self.decoder
        nat = decoder.nat
        goal = nat_targets(targets, target_lengths, nat.max_len, nat.length_mode)
        logits = decoder(prefix, goal.query_lengths, goal.outputs.size(1), enc, enc_lengths)
        token_loss = label_smoothed_nll(logits, goal.outputs, self.config.lsm_weight)
        out = {"token_loss": token_loss}
        with torch.no_grad():
            out["acc"] = token_accuracy(logits, goal.outputs)
        total = token_loss
        if decoder.length_predictor is not None:
            length_logits = decoder.length_logits(enc, enc_lengths, prefix)
            out["length_loss"] = F.cross_entropy(length_logits.float(), goal.length_targets)
            with torch.no_grad():
                out["length_acc"] = (length_logits.argmax(dim=1) == goal.length_targets).float().mean()
            total = total + nat.length_weight * out["length_loss"]
        out["att_loss"] = total
        return out
