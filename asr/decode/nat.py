"""Decoding with the non-autoregressive decoder (decoder kind "nat", asr/model/nat.py): one parallel pass.

length_mode "predict" (length-candidate search):
    1. candidate lengths, k = DecodeOptions.nat_length_candidates of them: the k most probable classes
       of the length predictor ("predictor"), or the k lengths nearest to the length of the CTC greedy
       output ("ctc"); never more than the length limit (max_len, max_len_ratio x encoder frames);
    2. one decoder pass over B x k rows: candidate L gets L query positions and each position its most
       probable token. NAT score = log p_len(L) + sum of the tokens' log-probabilities;
    3. with k > 1 and a CTC head, the candidates are rescored:
       (1 - ctc_weight) * NAT score + ctc_weight * log P_ctc(y | x).
       A model has one decoder: a NAT model has no autoregressive decoder, so CTC is the rescorer
       (with ctc_weight = 0, or no CTC head, the NAT score alone ranks them).
length_mode "eos": one pass over the decoder's max_len positions, cut at the first <eos> (or at the
    length limit); score = the tokens' and the <eos>'s log-probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from asr.decode.ctc_decode import Hypothesis, blocked_mask, ctc_greedy
from asr.decode.options import DecodeOptions
from asr.model.config import BLANK_ID, EOS_ID
from asr.model.nat import NATModel

NEG_INF = float("-inf")


def candidate_lengths(length_logp: Tensor, limits: Tensor, count: int,
                      ctc_lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """length_logp (B, M + 1) log-probabilities of the lengths 0..M; limits (B,): the longest allowed.

    -> (lengths (B, k), their log-probabilities (B, k)) with k = min(count, M + 1): the most probable
    lengths, or, given ctc_lengths (B,), the lengths nearest to them (ties: the shorter first).
    Lengths over the limit get log-probability -inf (a dead candidate).
    """
    classes = torch.arange(length_logp.size(1), device=length_logp.device)
    allowed = classes[None, :] <= limits[:, None]
    logp = length_logp.masked_fill(~allowed, NEG_INF)
    k = min(count, length_logp.size(1))
    if ctc_lengths is None:
        values, lengths = logp.topk(k, dim=1)
        return lengths, values
    distance = (classes[None, :] - ctc_lengths[:, None]).abs().double() + classes[None, :] * 1e-6
    lengths = distance.masked_fill(~allowed, float("inf")).topk(k, dim=1, largest=False).indices
    return lengths, logp.gather(1, lengths)


@torch.no_grad()
def nat_search(model: NATModel, enc: Tensor, enc_lengths: Tensor, prefix: Tensor, limits: Tensor,
               options: DecodeOptions, blocked: Sequence[int]) -> list[list[Hypothesis]]:
    """enc (B, T, D), enc_lengths (B,), prefix (B, P) forced tokens, limits (B,) the most tokens per
    utterance; blocked: ids never emitted (<eos> is handled here). -> per utterance, its hypotheses best
    first (up to options.nbest)."""
    if model.decoder.length_mode == "eos":
        return [[hyp] for hyp in _cut_at_eos(model, enc, enc_lengths, prefix, limits, blocked)]
    return _length_candidates(model, enc, enc_lengths, prefix, limits, options, blocked)


def _token_log_probs(logits: Tensor, blocked: Sequence[int]) -> Tensor:
    logp = F.log_softmax(logits.float(), dim=-1)
    return logp.masked_fill(blocked_mask(logp.size(-1), blocked, logp.device), NEG_INF) if blocked else logp


def _length_candidates(model: NATModel, enc: Tensor, enc_lengths: Tensor, prefix: Tensor, limits: Tensor,
                       options: DecodeOptions, blocked: Sequence[int]) -> list[list[Hypothesis]]:
    decoder = model.decoder
    batch = enc.size(0)
    blocked = sorted({*blocked, EOS_ID})
    length_logp = F.log_softmax(decoder.length_logits(enc, enc_lengths, prefix).float(), dim=-1)
    ctc_log_probs = model.ctc.log_probs(enc) if model.ctc is not None else None
    ctc_lengths = None
    if options.nat_length_source == "ctc":
        ctc_lengths = ctc_greedy(ctc_log_probs, enc_lengths, [i for i in blocked if i != BLANK_ID]).lengths
    lengths, lengths_logp = candidate_lengths(length_logp, limits.clamp(max=decoder.max_len),
                                              options.nat_length_candidates, ctc_lengths)
    count = lengths.size(1)
    source = torch.arange(batch, device=enc.device).repeat_interleave(count)
    query_lengths = lengths.reshape(-1)
    width = max(1, int(query_lengths.max()))  # the one synchronisation before the pass
    logits = decoder(prefix.index_select(0, source), query_lengths, width, enc.index_select(0, source),
                     enc_lengths.index_select(0, source))
    token_logp, tokens = _token_log_probs(logits, blocked).max(dim=-1)  # (N, W)
    valid = torch.arange(width, device=enc.device) < query_lengths[:, None]
    nat_score = token_logp.masked_fill(~valid, 0.0).sum(dim=1) + lengths_logp.reshape(-1)
    score = nat_score
    if count > 1 and ctc_log_probs is not None and options.ctc_weight > 0:
        ctc_score = -F.ctc_loss(ctc_log_probs.index_select(0, source).transpose(0, 1), tokens,
                                enc_lengths.index_select(0, source), query_lengths, blank=BLANK_ID,
                                reduction="none", zero_infinity=False)
        score = (1.0 - options.ctc_weight) * nat_score + options.ctc_weight * ctc_score
    score = score.masked_fill(lengths_logp.reshape(-1) == NEG_INF, NEG_INF)
    # Rank by score; candidates that CTC finds impossible (-inf) come last, in NAT-score order.
    key = torch.where(torch.isfinite(score), score.double(), nat_score.double() - 1e12).view(batch, count)
    order = key.argsort(dim=1, descending=True)[:, : options.nbest]
    rows = (order + torch.arange(batch, device=enc.device)[:, None] * count).cpu().tolist()
    tokens, token_logp, query_lengths, score = (x.cpu().tolist() for x in (tokens, token_logp, query_lengths, score))
    results = []
    for picked in rows:
        hyps = [Hypothesis(tuple(tokens[r][: query_lengths[r]]), score[r], tuple(token_logp[r][: query_lengths[r]]))
                for r in picked]
        results.append([h for h in hyps if h.score > NEG_INF] or hyps[:1])
    return results


def first_eos_cut(tokens: Tensor, limits: Tensor) -> tuple[Tensor, Tensor]:
    """tokens (B, W), limits (B,) -> (output lengths (B,): up to the first <eos>, at most the limit;
    ended (B,): True where an <eos> ends the output within its limit)."""
    width = tokens.size(1)
    is_eos = tokens == EOS_ID
    first = torch.where(is_eos.any(dim=1), is_eos.int().argmax(dim=1), width)
    length = torch.minimum(first, limits)
    return length, (first == length) & (first < width)


def _cut_at_eos(model: NATModel, enc: Tensor, enc_lengths: Tensor, prefix: Tensor, limits: Tensor,
                blocked: Sequence[int]) -> list[Hypothesis]:
    decoder = model.decoder
    width = decoder.max_len
    query_lengths = torch.full_like(enc_lengths, width)
    logits = decoder(prefix, query_lengths, width, enc, enc_lengths)
    token_logp, tokens = _token_log_probs(logits, [i for i in blocked if i != EOS_ID]).max(dim=-1)  # (B, W)
    length, ended = first_eos_cut(tokens, limits)
    positions = torch.arange(width, device=enc.device)
    counted = (positions < length[:, None]) | ((positions == length[:, None]) & ended[:, None])
    score = token_logp.masked_fill(~counted, 0.0).sum(dim=1)
    tokens, token_logp, length, ended, score = (x.cpu().tolist() for x in (tokens, token_logp, length, ended, score))
    return [Hypothesis(tuple(tokens[b][: length[b]]), score[b], tuple(token_logp[b][: length[b] + ended[b]]))
            for b in range(len(tokens))]
