"""Mask-CTC decoding (Higuchi et al., 2020), batched: the greedy CTC output, with its low-confidence
tokens masked and filled in by the conditional masked-LM decoder (decoder kind "maskctc").

    1. CTC greedy: tokens y and each token's confidence, the highest probability among its frames;
    2. tokens with confidence < DecodeOptions.maskctc_threshold become <mask>;
    3. easy-first filling (ESPnet's schedule): with m masks and K = min(maskctc_iterations, m)
       iterations, each of the first K - 1 decoder passes fills the m // K masks the decoder is most
       sure of, and the last pass fills all that remain.
The output has as many tokens as the CTC greedy output. token_logprobs: the CTC confidence (log) of
a kept token, the decoder's log-probability of a filled one; score: their sum. All utterances advance
together; the number of passes is the largest K of the batch (one host synchronisation).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from asr.decode.ctc_decode import Hypothesis, blocked_mask, ctc_greedy
from asr.model.config import BLANK_ID
from asr.model.maskctc import MaskCTCModel

NEG_INF = float("-inf")


def fill_schedule(num_masked: Tensor, iterations: int) -> tuple[Tensor, Tensor]:
    """num_masked (B,) -> (passes (B,) = min(iterations, m), fills per pass (B,) = m // passes); the last
    pass of each utterance fills whatever is left."""
    passes = num_masked.clamp(max=iterations)
    return passes, num_masked // passes.clamp(min=1)


def pass_quota(t: int, passes: Tensor, per_pass: Tensor, width: int) -> Tensor:
    """How many masks each utterance fills in pass t (0-based): per_pass before its last pass, all
    (width) in it, none after."""
    last = torch.full_like(per_pass, width)
    return torch.where(t < passes - 1, per_pass, torch.where(t == passes - 1, last, torch.zeros_like(per_pass)))


@torch.no_grad()
def maskctc_search(model: MaskCTCModel, enc: Tensor, enc_lengths: Tensor, prefix: Tensor, threshold: float,
                   iterations: int, blocked: Sequence[int]) -> list[Hypothesis]:
    """enc (B, T, D), enc_lengths (B,), prefix (B, P) forced tokens; blocked: ids never emitted. -> one
    hypothesis per utterance."""
    decoder = model.decoder
    greedy = ctc_greedy(model.ctc.log_probs(enc), enc_lengths, [i for i in blocked if i != BLANK_ID])
    tokens, lengths, confidence = greedy.tokens, greedy.lengths, greedy.token_logprobs.float()
    width = tokens.size(1)
    valid = torch.arange(width, device=enc.device) < lengths[:, None]
    masked = valid & (confidence.exp() < threshold)
    tokens = tokens.masked_fill(masked, decoder.mask_id)
    token_logp = confidence.masked_fill(~valid, 0.0)
    passes, per_pass = fill_schedule(masked.sum(dim=1), iterations)
    rounds = int(passes.max()) if passes.numel() else 0
    no_tokens = blocked_mask(decoder.vocab_size, blocked, enc.device)
    skip = prefix.size(1)
    for t in range(rounds):
        logits = decoder(torch.cat([prefix, tokens], dim=1), skip + lengths, enc, enc_lengths)[:, skip:]
        best, predicted = F.log_softmax(logits.float(), dim=-1).masked_fill(no_tokens, NEG_INF).max(dim=-1)
        still = tokens == decoder.mask_id
        rank = best.masked_fill(~still, NEG_INF).argsort(dim=1, descending=True).argsort(dim=1)
        fill = still & (rank < pass_quota(t, passes, per_pass, width)[:, None])
        tokens = torch.where(fill, predicted, tokens)
        token_logp = torch.where(fill, best, token_logp)
    score = token_logp.sum(dim=1)
    tokens, token_logp, lengths, score = (x.cpu().tolist() for x in (tokens, token_logp, lengths, score))
    return [Hypothesis(tuple(tokens[b][: lengths[b]]), score[b], tuple(token_logp[b][: lengths[b]]))
            for b in range(len(tokens))]
