"""The attention encoder-decoder model with a joint CTC head (Watanabe et al., 2017; Kim et al., 2017)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from asr.features import GlobalCMVN, SpecAugment
from asr.model.config import EOS_ID, IGNORE_ID, PAD_ID, SOS_ID, ModelConfig
from asr.model.ctc import CTC
from asr.model.loss import label_smoothed_nll, token_accuracy


def decoder_io(targets: Tensor, target_lengths: Tensor, prefix: Tensor) -> tuple[Tensor, Tensor]:
    """Teacher-forcing input and output for the decoder.

    targets (B, N) padded with -1, target_lengths (B,), prefix (B, P) forced tokens (task, language).
    Returns ys_in = [sos, p1..pP, y1..yn, pad...] and ys_out = [-1 (x P), y1..yn, eos, -1...], both
    (B, 1 + P + N). The positions that would predict the forced prefix are ignored in the loss: the
    prefix is given at decoding time, never predicted.
    """
    batch, length = targets.shape
    valid = torch.arange(length, device=targets.device) < target_lengths.unsqueeze(1)  # (B, N)
    sos = targets.new_full((batch, 1), SOS_ID)
    ys_in = torch.cat([sos, prefix.to(targets), targets.masked_fill(~valid, PAD_ID)], dim=1)
    body = torch.cat([targets.masked_fill(~valid, IGNORE_ID), targets.new_full((batch, 1), IGNORE_ID)], dim=1)
    body = body.scatter(1, target_lengths.unsqueeze(1).to(targets), EOS_ID)
    ys_out = torch.cat([targets.new_full((batch, prefix.size(1)), IGNORE_ID), body], dim=1)
    return ys_in, ys_out


class ASRModel(nn.Module):
    """CMVN -> SpecAugment (training only) -> encoder -> CTC head and/or attention decoder.

    Built by asr.model.build_model(config). decoder is None when config.ctc_weight == 1 and ctc is
    None when config.ctc_weight == 0 (an unused module would be dead weight and upsets DDP).
    """

    def __init__(self, config: ModelConfig, encoder: nn.Module, decoder: nn.Module | None, ctc: CTC | None):
        super().__init__()
        if (decoder is not None) != config.has_decoder or (ctc is not None) != config.has_ctc:
            raise ValueError(f"ASRModel with ctc_weight={config.ctc_weight} needs "
                             f"{'a' if config.has_decoder else 'no'} decoder and {'a' if config.has_ctc else 'no'} "
                             "CTC head (use asr.model.build_model)")
        self.config = config
        self.cmvn = GlobalCMVN(config.input_dim)  # identity until the trainer sets statistics
        self.specaug = SpecAugment(config.specaug) if config.specaug is not None else None
        self.encoder = encoder
        self.decoder = decoder
        self.ctc = ctc
        self.sampling_prob = config.sampling_prob

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the weights, which the encoder's input is cast to."""
        return next(self.encoder.parameters()).dtype

    def set_sampling_prob(self, prob: float) -> None:
        """Scheduled-sampling probability for the next training steps (the trainer ramps it up)."""
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"sampling probability must be in [0, 1], got {prob}")
        self.sampling_prob = float(prob)

    def encode(self, feats: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """feats (B, T, F) raw features, lengths (B,) -> (enc (B, T', D), enc_lengths (B,)).

        The features are normalised in float32 and then cast to the encoder's dtype (float32, or
        bfloat16/float16 for a model cast for inference: asr.SpeechModel.to).
        """
        x = self.cmvn(feats).to(self.dtype)
        if self.specaug is not None:
            x = self.specaug(x, lengths)  # a no-op in eval mode
        return self.encoder(x, lengths)

    def forward(self, batch: Any) -> dict[str, Tensor]:
        """batch: an asr.data.Batch (feats, feat_lengths, targets, target_lengths, ctc_targets,
        ctc_target_lengths, prefix). Returns scalars: "loss" always; "ctc_loss" when the model has a
        CTC head; "att_loss" and "acc" (decoder token accuracy) when it has a decoder.
        """
        enc, enc_lengths = self.encode(batch.feats, batch.feat_lengths)
        weight = self.config.ctc_weight
        out: dict[str, Tensor] = {}
        loss = enc.new_zeros((), dtype=torch.float32)
        if self.ctc is not None:
            out["ctc_loss"] = self.ctc.loss(enc, enc_lengths, batch.ctc_targets, batch.ctc_target_lengths)
            loss = loss + weight * out["ctc_loss"]
        if self.decoder is not None:
            out["att_loss"], out["acc"] = self.attention_loss(enc, enc_lengths, batch.targets,
                                                              batch.target_lengths, batch.prefix)
            loss = loss + (1.0 - weight) * out["att_loss"]
        return {"loss": loss, **out}

    def attention_loss(self, enc: Tensor, enc_lengths: Tensor, targets: Tensor, target_lengths: Tensor,
                       prefix: Tensor) -> tuple[Tensor, Tensor]:
        """Label-smoothed decoder loss per target token and token accuracy (with scheduled sampling in training)."""
        if self.decoder is None:
            raise RuntimeError("this model has no decoder (ctc_weight=1.0)")
        ys_in, ys_out = decoder_io(targets, target_lengths, prefix)
        if self.training and self.sampling_prob > 0:
            ys_in = self.scheduled_sampling(ys_in, enc, enc_lengths, prefix.size(1), target_lengths)
        logits = self.decoder(ys_in, enc, enc_lengths)
        loss = label_smoothed_nll(logits, ys_out, self.config.lsm_weight)
        if not self.config.length_normalized_loss:  # per utterance, like the CTC loss
            loss = loss * (ys_out != IGNORE_ID).sum() / ys_out.size(0)
        with torch.no_grad():
            acc = token_accuracy(logits, ys_out)
        return loss, acc

    @torch.no_grad()
    def scheduled_sampling(self, ys_in: Tensor, enc: Tensor, enc_lengths: Tensor, prefix_len: int,
                           target_lengths: Tensor) -> Tensor:
        """Two-pass scheduled sampling: replace target tokens of ys_in (B, U) by the decoder's own greedy
        predictions from a teacher-forced pass, each with probability self.sampling_prob.

        Only the positions holding y1..yn are eligible; <sos>, the forced prefix and padding stay.
        """
        logits = self.decoder(ys_in, enc, enc_lengths)
        # logits[:, j] predicts ys_in[:, j + 1]; shift right so predictions line up with the inputs.
        predicted = torch.cat([ys_in[:, :1], logits[:, :-1].argmax(dim=-1)], dim=1)
        position = torch.arange(ys_in.size(1), device=ys_in.device) - (1 + prefix_len)  # index into y
        eligible = (position >= 0) & (position < target_lengths.unsqueeze(1))
        replace = eligible & (torch.rand(ys_in.shape, device=ys_in.device) < self.sampling_prob)
        return torch.where(replace, predicted, ys_in)
