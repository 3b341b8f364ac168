"""CTC head: a linear projection of the encoder output to the vocabulary (blank = id 0)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from asr.model.config import BLANK_ID
from asr.model.linear import Linear


class CTC(nn.Module):
    """log_probs(enc) for decoding and prefix scoring; loss(...) for training."""

    def __init__(self, d_model: int, vocab_size: int):
        super().__init__()
        self.proj = Linear(d_model, vocab_size)

    def log_probs(self, enc: Tensor) -> Tensor:
        """enc (B, T, D) -> log-probabilities (B, T, V), in float32 (log-softmax is precision-sensitive)."""
        return F.log_softmax(self.proj(enc).float(), dim=-1)

    def loss(self, enc: Tensor, enc_lengths: Tensor, targets: Tensor, target_lengths: Tensor) -> Tensor:
        """Summed CTC loss divided by the batch size.

        enc (B, T, D), enc_lengths (B,); targets (B, M) padded with -1, target_lengths (B,).
        Utterances whose targets cannot fit in their frames (infinite loss) contribute 0 (zero_infinity).
        """
        log_probs = self.log_probs(enc).transpose(0, 1)  # (T, B, V), as F.ctc_loss wants
        # Padding values are never read past target_lengths, but must be valid ids for some backends.
        targets = targets.clamp(min=0)
        loss = F.ctc_loss(log_probs, targets, enc_lengths, target_lengths, blank=BLANK_ID, reduction="sum",
                          zero_infinity=True)
        return loss / enc.size(0)
