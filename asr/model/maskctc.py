"""Mask-CTC (Higuchi et al., 2020; ESPnet's maskctc): a conditional masked LM that refines CTC output
(DecoderConfig.kind = "maskctc").

The decoder is a Transformer decoder without the causal mask: it reads [prefix, y with some tokens
replaced by <mask>] and predicts the masked tokens from the audio (cross-attention) and from the
tokens left unmasked. Decoding (asr/decode/maskctc.py) masks the low-confidence tokens of the greedy
CTC output and fills them in over a few iterations, most confident first.

The <mask> token's id is vocab_size, one past the tokenizer's vocabulary. It exists only inside this
decoder, as one extra embedding vector: tokenizers are unchanged (ids 0..4 stay <blank>, <unk>,
<sos>, <eos>, <pad>), the output layer still has vocab_size classes (so <mask> is never predicted),
and the tied embedding/output matrix keeps its shape.

Training (ESPnet's mask_uniform): for an utterance of n >= 1 tokens, the number of masked tokens is
drawn uniformly from 1..n, then which ones, uniformly; the loss is label-smoothed cross-entropy on the
masked positions. Model loss: ctc_weight * CTC + (1 - ctc_weight) * masked-token loss, 0 < ctc_weight < 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from asr.model.bidirectional import BidirectionalStack
from asr.model.config import IGNORE_ID, PAD_ID, DecoderConfig, ModelConfig
from asr.model.ctc import CTC
from asr.model.linear import Linear
from asr.model.loss import label_smoothed_nll, token_accuracy
from asr.model.nat import NonAutoregressiveModel
from asr.model.positional import SinusoidalPositionalEncoding


@dataclass(frozen=True)
class MaskedTargets:
    """A masked-LM training example per utterance (see mask_uniform).

    inputs (B, P + N): [prefix, y with the chosen tokens replaced by mask_id], PAD_ID past the end;
    outputs (B, P + N): the original token at masked positions, IGNORE_ID elsewhere;
    lengths (B,): P + n valid positions; num_masked (B,): masked tokens per utterance.
    """

    inputs: Tensor
    outputs: Tensor
    lengths: Tensor
    num_masked: Tensor


def mask_uniform(targets: Tensor, target_lengths: Tensor, prefix: Tensor, mask_id: int,
                 generator: torch.Generator | None = None) -> MaskedTargets:
    """Mask a uniform number (1..n) of uniformly chosen tokens of each target (none when n = 0).

    targets (B, N) padded with IGNORE_ID, target_lengths (B,), prefix (B, P) forced tokens (never
    masked). generator: for reproducible masks (on the targets' device). No host synchronisation.
    """
    batch, length = targets.shape
    device = targets.device
    valid = torch.arange(length, device=device) < target_lengths[:, None]
    draw = torch.rand(batch, generator=generator, device=device)
    num_masked = torch.minimum((draw * target_lengths).floor().long() + 1, target_lengths)
    # A random order of the valid positions (padding sorts last); the first num_masked are masked.
    keys = torch.rand(batch, length, generator=generator, device=device).masked_fill(~valid, 2.0)
    rank = keys.argsort(dim=1).argsort(dim=1)
    masked = valid & (rank < num_masked[:, None])
    body = targets.masked_fill(~valid, PAD_ID)
    inputs = torch.cat([prefix.to(targets), body.masked_fill(masked, mask_id)], dim=1)
    ignore = torch.full_like(prefix, IGNORE_ID, dtype=targets.dtype)
    outputs = torch.cat([ignore, targets.masked_fill(~masked, IGNORE_ID)], dim=1)
    return MaskedTargets(inputs, outputs, prefix.size(1) + target_lengths, num_masked)


class MaskCTCDecoder(nn.Module):
    """Token embeddings (+ the <mask> vector) and positions -> bidirectional layers -> logits over the vocabulary."""

    def __init__(self, vocab_size: int, enc_dim: int, config: DecoderConfig):
        super().__init__()
        self.config = config
        self.vocab_size = vocab_size
        d_model = config.d_model
        self.embed = nn.Embedding(vocab_size, d_model)
        nn.init.normal_(self.embed.weight, std=d_model**-0.5)
        self.mask_embedding = nn.Parameter(torch.randn(d_model) * d_model**-0.5)
        self.pos_enc = SinusoidalPositionalEncoding(d_model, config.dropout)
        self.stack = BidirectionalStack(enc_dim, config)
        self.output = Linear(d_model, vocab_size)
        if config.tie_embeddings:
            self.output.weight = self.embed.weight

    @property
    def mask_id(self) -> int:
        """The <mask> token: one past the vocabulary."""
        return self.vocab_size

    def _input(self, tokens: Tensor) -> Tensor:
        is_mask = (tokens == self.mask_id).unsqueeze(2)
        x = self.embed(tokens.masked_fill(is_mask.squeeze(2), PAD_ID))
        return self.pos_enc(torch.where(is_mask, self.mask_embedding.to(x.dtype), x))

    def forward(self, tokens: Tensor, lengths: Tensor, enc: Tensor, enc_lengths: Tensor) -> Tensor:
        """tokens (B, U) ids or mask_id, the first lengths (B,) valid; enc (B, T, enc_dim), enc_lengths (B,)
        -> logits (B, U, V) at every position."""
        return self.output(self.stack(self._input(tokens), lengths, enc, enc_lengths))

    @torch.no_grad()
    def cross_attention_weights(self, tokens: Tensor, enc: Tensor, enc_lengths: Tensor, layer: int = -1) -> Tensor:
        """Cross-attention probabilities (B, H, U - 1, T) of one layer, for training plots.

        tokens (B, U): the autoregressive decoders' teacher-forcing input [<sos>, prefix, y]; this
        decoder reads [prefix, y] (nothing masked), one row per token.
        """
        given = tokens[:, 1:]
        lengths = torch.full_like(enc_lengths, given.size(1))
        return self.stack.cross_attention_weights(self._input(given), lengths, enc, enc_lengths, layer)


class MaskCTCModel(NonAutoregressiveModel):
    """ASRModel with a MaskCTCDecoder (built by build_model for DecoderConfig.kind = "maskctc")."""

    def __init__(self, config: ModelConfig, encoder: nn.Module, decoder: nn.Module | None, ctc: CTC | None):
        if not config.has_ctc:
            raise ValueError(f"decoder kind 'maskctc' needs 0 < ctc_weight < 1, got {config.ctc_weight} (decoding "
                             "starts from the CTC output)")
        super().__init__(config, encoder, decoder, ctc)

    def decoder_loss(self, enc: Tensor, enc_lengths: Tensor, targets: Tensor, target_lengths: Tensor,
                     prefix: Tensor) -> dict[str, Tensor]:
        """-> {"att_loss": label-smoothed loss on the masked tokens, "acc": their accuracy}."""
        decoder: MaskCTCDecoder = self.decoder
        masked = mask_uniform(targets, target_lengths, prefix, decoder.mask_id)
        logits = decoder(masked.inputs, masked.lengths, enc, enc_lengths)
        loss = label_smoothed_nll(logits, masked.outputs, self.config.lsm_weight)
        with torch.no_grad():
            acc = token_accuracy(logits, masked.outputs)
        return {"att_loss": loss, "acc": acc}
