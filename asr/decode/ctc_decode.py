"""Decoding with the CTC head: greedy (best path) and frame-synchronous prefix beam search, batched;
and attention rescoring of the prefix-beam n-best with the attention decoder (WeNet's attention_rescoring).

CTC greedy takes the most probable label at every frame, merges repeats and drops blanks. Each output
token also gets a confidence: the highest probability among the frames it was read from (what Mask-CTC
thresholds, as in ESPnet).

The prefix beam search (Hannun et al., 2014) keeps the `beam` most probable label prefixes, each with
the log-probabilities of the paths that produce it and end in a blank (pb) or in its last label (pnb):

    blank            prefix g stays:       pb(g)  += (pb(g) + pnb(g)) x(blank)
    repeat last c    prefix g stays:       pnb(g) += pnb(g) x(c)
    new label c      prefix g + c:         pnb(g + c) += (pb(g) if c == last(g) else pb(g) + pnb(g)) x(c)

(sums in probability space, logaddexp in log space). All utterances and prefixes advance together,
one frame per step; a frame considers the `beam` most probable labels as new labels. A prefix g + c
that is already in the beam receives the new-label paths instead of being added twice: prefixes are
identified by two 31-bit polynomial hashes, compared with the hashes of every prefix's parent (the
prefix minus its last label), so finding them costs (B, beam, beam) comparisons, not token-by-token ones.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from asr.model.config import BLANK_ID, IGNORE_ID
from asr.model.model import decoder_io

NEG_INF = float("-inf")
DEAD = -2  # the hash of a slot without probability (real hashes are >= 0)
# (modulus, base) of the two prefix hashes; h(g + c) = (h(g) * base + c + 1) mod modulus stays < 2**62.
HASHES = ((2_147_483_647, 1_000_003), (1_000_000_007, 131))


class Hypothesis(NamedTuple):
    """One decoded hypothesis: token ids, its ranking score, and per-token log-probabilities (may be empty)."""

    tokens: tuple[int, ...]
    score: float
    token_logprobs: tuple[float, ...] = ()


@dataclass(frozen=True)
class GreedyCTC:
    """Best-path output of a batch. tokens (B, L) padded with BLANK_ID past lengths (B,);
    token_logprobs (B, L): each token's highest frame log-probability (0 past the end);
    path_logprob (B,): log-probability of the best path (sum over frames of the best label)."""

    tokens: Tensor
    lengths: Tensor
    token_logprobs: Tensor
    path_logprob: Tensor


def blocked_mask(vocab_size: int, blocked: Sequence[int], device: torch.device) -> Tensor:
    """(V,) bool: True at the ids never emitted."""
    mask = torch.zeros(vocab_size, dtype=torch.bool, device=device)
    mask[list(blocked)] = True
    return mask


def ctc_greedy(log_probs: Tensor, lengths: Tensor, blocked: Sequence[int] = ()) -> GreedyCTC:
    """log_probs (B, T, V) CTC log-posteriors, lengths (B,) valid frames; blocked: ids never emitted
    (the blank cannot be blocked). One host synchronisation (the longest output's length)."""
    if BLANK_ID in blocked:
        raise ValueError("ctc_greedy: the blank cannot be blocked")
    batch, frames, vocab = log_probs.shape
    device = log_probs.device
    x = log_probs.masked_fill(blocked_mask(vocab, blocked, device), NEG_INF) if blocked else log_probs
    best, ids = x.max(dim=2)  # (B, T)
    valid = torch.arange(frames, device=device) < lengths[:, None]
    ids = ids.masked_fill(~valid, BLANK_ID)
    best = best.masked_fill(~valid, 0.0)
    starts = torch.ones_like(ids, dtype=torch.bool)
    starts[:, 1:] = ids[:, 1:] != ids[:, :-1]
    segment = starts.long().cumsum(dim=1) - 1  # (B, T): index of each frame's run of equal labels
    run_label = torch.full_like(ids, BLANK_ID).scatter(1, segment, ids)
    run_best = torch.full_like(best, NEG_INF).scatter_reduce(1, segment, best.masked_fill(~valid, NEG_INF), "amax")
    runs = segment[:, -1:] + 1 if frames else torch.zeros(batch, 1, dtype=torch.long, device=device)
    keep = (run_label != BLANK_ID) & (torch.arange(frames, device=device) < runs)
    token_lengths = keep.sum(dim=1)
    width = int(token_lengths.max()) if batch and frames else 0
    position = torch.where(keep, keep.long().cumsum(dim=1) - 1, width)  # kept runs -> 0, 1, ...; others -> spare
    tokens = torch.full((batch, width + 1), BLANK_ID, dtype=torch.long, device=device)
    tokens = tokens.scatter(1, position, run_label)[:, :width]
    token_logprobs = torch.zeros(batch, width + 1, dtype=best.dtype, device=device)
    token_logprobs = token_logprobs.scatter(1, position, run_best)[:, :width]
    return GreedyCTC(tokens, token_lengths, token_logprobs, best.sum(dim=1))


@dataclass(frozen=True)
class PrefixBeam:
    """The prefixes of all B utterances, `beam` each (dim 1); see the module docstring.

    tokens (B, K, T) (a prefix has at most one label per frame); length, last (-1: empty) (B, K);
    hash, parent (B, K, 2): hashes of the prefix and of the prefix minus its last label;
    pb, pnb (B, K): log-probabilities of the paths ending in a blank / in the last label (float64).
    A slot of probability 0 has hash DEAD and parent -1, so that it is nobody's parent or child.
    """

    tokens: Tensor
    length: Tensor
    last: Tensor
    hash: Tensor
    parent: Tensor
    pb: Tensor
    pnb: Tensor

    @classmethod
    def start(cls, batch: int, beam: int, frames: int, device: torch.device) -> PrefixBeam:
        """Slot 0 holds the empty prefix (probability 1); the other slots are empty (probability 0)."""
        pb = torch.full((batch, beam), NEG_INF, dtype=torch.float64, device=device)
        pb[:, 0] = 0.0
        zeros = torch.zeros(batch, beam, dtype=torch.long, device=device)
        hash_ = torch.full((batch, beam, 2), DEAD, dtype=torch.long, device=device)
        hash_[:, 0] = 0
        return cls(torch.zeros(batch, beam, max(frames, 1), dtype=torch.long, device=device), zeros, zeros - 1,
                   hash_, torch.full((batch, beam, 2), -1, dtype=torch.long, device=device), pb,
                   torch.full_like(pb, NEG_INF))

    def fields(self) -> tuple[Tensor, ...]:
        return tuple(getattr(self, f.name) for f in dataclasses.fields(self))

    def total(self) -> Tensor:
        return torch.logaddexp(self.pb, self.pnb)


def _extend_hash(hash_: Tensor, token: Tensor) -> Tensor:
    """hash_ (..., 2), token (...) -> the hashes of the prefixes extended by token."""
    parts = [(hash_[..., i] * base + token + 1) % modulus for i, (modulus, base) in enumerate(HASHES)]
    return torch.stack(parts, dim=-1)


def prefix_beam_step(state: PrefixBeam, x: Tensor, active: Tensor, width: int) -> PrefixBeam:
    """Advance every utterance by one frame. x (B, V) the frame's log-probabilities (float64, blocked
    ids at -inf); active (B,): utterances that have this frame; width: new labels tried per frame."""
    batch, beam = state.pb.shape
    total = state.total()
    x_blank = x[:, BLANK_ID : BLANK_ID + 1]
    x_last = x.gather(1, state.last.clamp(min=0))  # (B, K)
    stay_b = total + x_blank
    stay_nb = torch.where(state.last >= 0, state.pnb + x_last, NEG_INF)
    # parent[b, i, j]: prefix j is prefix i plus one label; j then gets i's new-label paths.
    is_parent = ((state.hash[:, :, None, :] == state.parent[:, None, :, :]).all(dim=3)
                 & (state.length[:, :, None] + 1 == state.length[:, None, :]))  # (B, K_i, K_j)
    same_as_last = state.last[:, None, :] == state.last[:, :, None]  # label of j == last label of i
    phi = torch.where(same_as_last, state.pb[:, :, None], total[:, :, None]) + x_last[:, None, :]
    stay_nb = torch.logaddexp(stay_nb, phi.masked_fill(~is_parent, NEG_INF).logsumexp(dim=1))
    # New labels: the `width` most probable non-blank labels of this frame.
    cand_x, cand = x.index_fill(1, torch.tensor([BLANK_ID], device=x.device), NEG_INF).topk(width, dim=1)  # (B, C)
    is_repeat = cand[:, None, :] == state.last[:, :, None]  # (B, K, C)
    ext = torch.where(is_repeat, state.pb[:, :, None], total[:, :, None]) + cand_x[:, None, :]
    exists = (is_parent[:, :, :, None] & (state.last[:, None, :, None] == cand[:, None, None, :])).any(dim=2)
    ext = ext.masked_fill(exists, NEG_INF)  # already counted in the existing prefix (stay_nb)
    scores = torch.cat([torch.logaddexp(stay_b, stay_nb), ext.view(batch, -1)], dim=1)
    top = scores.topk(beam, dim=1).indices  # (B, K)
    is_new = top >= beam
    source = torch.where(is_new, (top - beam) // width, top)
    label = cand.gather(1, ((top - beam) % width).clamp(min=0)).masked_fill(~is_new, 0)

    def pick(t: Tensor) -> Tensor:
        index = source.view(batch, beam, *([1] * (t.dim() - 2))).expand(-1, -1, *t.shape[2:])
        return t.gather(1, index)

    length, old_hash = pick(state.length), pick(state.hash)
    # The new label goes right after the prefix (length <= frames so far < T); for the others that
    # position is past their end, where nothing is read.
    tokens = pick(state.tokens).scatter(2, length[:, :, None], label[:, :, None])
    dead = (scores.gather(1, top) == NEG_INF)[:, :, None]
    new = PrefixBeam(
        tokens=tokens,
        length=length + is_new.long(),
        last=torch.where(is_new, label, pick(state.last)),
        hash=torch.where(is_new[:, :, None], _extend_hash(old_hash, label), old_hash).masked_fill(dead, DEAD),
        parent=torch.where(is_new[:, :, None], old_hash, pick(state.parent)).masked_fill(dead, -1),
        pb=torch.where(is_new, NEG_INF, pick(stay_b)),
        pnb=torch.where(is_new, scores.gather(1, top), pick(stay_nb)),
    )
    keep = ~active
    return PrefixBeam(*(torch.where(keep.view(batch, *([1] * (n.dim() - 1))), o, n)
                        for o, n in zip(state.fields(), new.fields())))


def ctc_prefix_beam_search(log_probs: Tensor, lengths: Tensor, beam: int,
                           blocked: Sequence[int] = ()) -> list[list[Hypothesis]]:
    """log_probs (B, T, V) CTC log-posteriors, lengths (B,) valid frames, beam: prefixes kept (and new
    labels tried) per frame; blocked: ids never emitted. -> per utterance, up to `beam` hypotheses
    scored log P_ctc(tokens | x), most probable first (prefixes of probability 0 are left out). One
    transfer at the end."""
    if beam < 1:
        raise ValueError(f"ctc_prefix_beam_search: beam must be >= 1, got {beam}")
    if BLANK_ID in blocked:
        raise ValueError("ctc_prefix_beam_search: the blank cannot be blocked")
    batch, frames, vocab = log_probs.shape
    device = log_probs.device
    x_all = log_probs.double()
    if blocked:
        x_all = x_all.masked_fill(blocked_mask(vocab, blocked, device), NEG_INF)
    state = PrefixBeam.start(batch, beam, frames, device)
    width = min(beam, vocab - 1)
    for t in range(frames):
        state = prefix_beam_step(state, x_all[:, t], t < lengths, width)
    scores = state.total()
    order = scores.argsort(dim=1, descending=True)
    tokens = state.tokens.gather(1, order[:, :, None].expand_as(state.tokens)).cpu().tolist()
    length, scores = state.length.gather(1, order).cpu().tolist(), scores.gather(1, order).cpu().tolist()
    return [[Hypothesis(tuple(tokens[b][k][: length[b][k]]), scores[b][k]) for k in range(beam)
             if scores[b][k] > NEG_INF] for b in range(batch)]


@torch.no_grad()
def sequence_logprobs(decoder: torch.nn.Module, enc: Tensor, enc_lengths: Tensor, prefix: Tensor,
                      hyps: Sequence[Sequence[int]], source: Tensor, blocked: Sequence[int] = ()
                      ) -> tuple[Tensor, list[list[float]]]:
    """Teacher-forced log p_att(y, <eos> | x) of N hypotheses with an autoregressive decoder.

    enc (B, T, D), enc_lengths (B,), prefix (B, P); hyps: N token lists; source (N,): the utterance of
    each; blocked: ids never emitted, left out of the normalisation (as the beam search does).
    -> (scores (N,), per hypothesis the log-probabilities of its tokens and of <eos>).
    """
    count = len(hyps)
    longest = max((len(h) for h in hyps), default=0)
    targets = torch.full((count, longest), IGNORE_ID, dtype=torch.long)
    for n, hyp in enumerate(hyps):
        targets[n, : len(hyp)] = torch.tensor(hyp, dtype=torch.long)
    targets = targets.to(enc.device)
    lengths = torch.tensor([len(h) for h in hyps], dtype=torch.long, device=enc.device)
    ys_in, ys_out = decoder_io(targets, lengths, prefix.index_select(0, source))
    logits = decoder(ys_in, enc.index_select(0, source), enc_lengths.index_select(0, source)).float()
    if blocked:
        logits = logits.index_fill(2, torch.tensor(list(blocked), device=logits.device), float("-inf"))
    logp = F.log_softmax(logits, dim=-1).gather(2, ys_out.clamp(min=0)[:, :, None])[:, :, 0]
    valid = ys_out != IGNORE_ID
    scores = torch.where(valid, logp, 0.0).sum(dim=1)  # padding gathers id 0, which may be blocked (-inf)
    rows = logp.cpu().tolist()
    skip = prefix.size(1)
    return scores, [row[skip : skip + len(h) + 1] for row, h in zip(rows, hyps)]


@torch.no_grad()
def attention_rescoring(decoder: torch.nn.Module, enc: Tensor, enc_lengths: Tensor, prefix: Tensor,
                        nbest: Sequence[Sequence[Hypothesis]], ctc_weight: float, length_bonus: float = 0.0,
                        lm: torch.nn.Module | None = None, lm_weight: float = 0.0, blocked: Sequence[int] = ()
                        ) -> list[list[Hypothesis]]:
    """Rescore CTC n-best lists (their score: log P_ctc) with an autoregressive decoder, all at once.

    New score: (1 - ctc_weight) log p_att(y, <eos>) + ctc_weight log P_ctc(y) + lm_weight log p_lm(y, <eos>)
    + length_bonus |y|; token_logprobs: the decoder's, of each token and of <eos>. -> per utterance,
    its hypotheses best first. enc (B, T, D), enc_lengths (B,), prefix (B, P); blocked: ids the
    decoder's distribution leaves out (the tokens never emitted, as in the beam search).
    """
    flat = [hyp for hyps in nbest for hyp in hyps]
    if not flat:
        return [[] for _ in nbest]
    source = torch.tensor([b for b, hyps in enumerate(nbest) for _ in hyps], dtype=torch.long, device=enc.device)
    tokens = [list(hyp.tokens) for hyp in flat]
    att, token_logprobs = sequence_logprobs(decoder, enc, enc_lengths, prefix, tokens, source, blocked)
    ctc = torch.tensor([hyp.score for hyp in flat], dtype=torch.float64)
    lengths = torch.tensor([len(t) for t in tokens], dtype=torch.float64)
    total = (1.0 - ctc_weight) * att.double().cpu() + ctc_weight * ctc + length_bonus * lengths
    if lm is not None and lm_weight > 0:
        targets = torch.full((len(tokens), int(lengths.max())), IGNORE_ID, dtype=torch.long)
        for n, hyp in enumerate(tokens):
            targets[n, : len(hyp)] = torch.tensor(hyp, dtype=torch.long)
        device = next(lm.parameters()).device
        total += lm_weight * lm.sequence_logprob(targets.to(device), lengths.long().to(device)).double().cpu()
    rescored = [Hypothesis(hyp.tokens, score, tuple(logps))
                for hyp, score, logps in zip(flat, total.tolist(), token_logprobs)]
    out: list[list[Hypothesis]] = []
    start = 0
    for hyps in nbest:
        out.append(sorted(rescored[start : start + len(hyps)], key=lambda h: -h.score))
        start += len(hyps)
    return out
