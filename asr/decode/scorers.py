"""Scorers: the weighted terms of a hypothesis' score in beam search (ESPnet's design, batched).

    score(y) = sum over scorers of weight * score(y), with the weights taken from DecodeOptions:
        decoder       1 - ctc_weight   attention decoder, log p(y_t | y_<t, x)
        ctc           ctc_weight       CTC prefix score, log psi(y_<=t) - log psi(y_<t) (Watanabe et al., 2017)
        lm            lm_weight        language model, log p(y_t | y_<t) (shallow fusion)
        length_bonus  length_bonus     1 per token (not for <eos>)
A scorer whose weight is 0 is not built, so adding one to a search is a config change
(`decode.ctc_weight=0.3 decode.lm_weight=0.2`), and a new kind of scorer is a class in SCORERS plus
its weight in `scorer_weights`.

Every scorer works on all N = B x beam hypotheses at once (row b * beam + k is hypothesis k of
utterance b) and keeps its own state, tensors whose dim 0 is the hypothesis:

    state = scorer.init_state()
    scores, state = scorer.score(state, candidates, blocked)  # (N, V) or (1, V): every next token
    state = scorer.select(state, index, tokens)      # hypothesis i := hypothesis index[i] + tokens[i]

`index` never moves a hypothesis to another utterance. A partial scorer (CTC) scores only
`candidates` (N, C), the pre-beam that the search takes from the other scorers, and gives every
other token -inf; the others ignore `candidates`.

`blocked` (1, V) is -inf at the tokens the search may not emit at this step whatever the hypothesis
(the tokenizer's suppressed ids; at the first step also its initial ones), else 0. The decoder
normalises over the other tokens, as openai-whisper applies its token suppression to the logits:
a blocked token's probability does not lower a hypothesis' score. The search masks the combined
score with them and with its other rules (no <eos> before min_len, ...), as ESPnet.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asr.decode.options import DecodeOptions
from asr.model.config import BLANK_ID, EOS_ID, SOS_ID

NEG_INF = float("-inf")


@dataclass(frozen=True)
class SearchContext:
    """What scorers are built from. enc (B, T, D), enc_lengths (B,): the encoder output;
    prefix (B, P): tokens forced after <sos> (task, language); lm: the fusion LM or None;
    sos_id/eos_id: the tokenizer's (imported models have their own)."""

    model: nn.Module
    enc: Tensor
    enc_lengths: Tensor
    beam: int
    prefix: Tensor
    lm: nn.Module | None = None
    sos_id: int = SOS_ID
    eos_id: int = EOS_ID


class Scorer(ABC):
    """One term of the score; see the module docstring for the protocol."""

    partial = False  # True: scores only the pre-beam candidates
    masks_blocked = False  # True: `score` returns a new tensor each call, -inf at the blocked ids

    @classmethod
    @abstractmethod
    def build(cls, context: SearchContext) -> Scorer:
        """The scorer for one batch of utterances."""

    @abstractmethod
    def init_state(self) -> Any:
        """The state of N = B x beam empty hypotheses (nothing emitted after the forced prefix)."""

    @abstractmethod
    def score(self, state: Any, candidates: Tensor | None, blocked: Tensor) -> tuple[Tensor, Any]:
        """-> (scores (N, V) or (1, V) of every next token, state to pass to `select`)."""

    @abstractmethod
    def select(self, state: Any, index: Tensor, tokens: Tensor) -> Any:
        """index (N,), tokens (N,) -> the state of hypotheses index[i] extended by tokens[i]."""


@dataclass(frozen=True)
class Pending:
    """The state of an autoregressive network: its own state, and the tokens not fed to it yet (N,)."""

    state: Any
    tokens: Tensor


class DecoderScorer(Scorer):
    """The attention decoder: log-softmax of `decoder.step`. Cross-attention K/V are computed once and
    shared by the hypotheses of an utterance (decoder.reorder_state(..., cross=False))."""

    masks_blocked = True

    def __init__(self, decoder: nn.Module, enc: Tensor, enc_lengths: Tensor, prefix: Tensor, beam: int,
                 sos_id: int = SOS_ID):
        self.decoder, self.enc, self.enc_lengths, self.beam = decoder, enc, enc_lengths, beam
        sos = prefix.new_full((prefix.size(0), 1), sos_id)
        self.forced = torch.cat([sos, prefix], dim=1)  # (B, 1 + P)

    @classmethod
    def build(cls, context: SearchContext) -> DecoderScorer:
        return cls(context.model.decoder, context.enc, context.enc_lengths, context.prefix, context.beam,
                   context.sos_id)

    def init_state(self) -> Pending:
        # <sos> and the prefix are fed once per utterance, before the beam exists.
        state = self.decoder.init_state(self.enc, self.enc_lengths)
        for t in range(self.forced.size(1) - 1):
            _, state = self.decoder.step(self.forced[:, t], state)
        expand = torch.arange(self.forced.size(0), device=self.forced.device).repeat_interleave(self.beam)
        return Pending(self.decoder.reorder_state(state, expand, cross=False), self.forced[expand, -1])

    def score(self, state: Pending, candidates: Tensor | None, blocked: Tensor) -> tuple[Tensor, Pending]:
        logits, inner = self.decoder.step(state.tokens, state.state)
        # In float32 whatever the network's dtype. The logits are a new tensor each step, so they are
        # masked in place (after the cast, which is faster than a mixed-dtype add: bfloat16 0.1 of a
        # ~7 ms step; float32 then needs no second (N, V) tensor).
        return F.log_softmax(logits.float().add_(blocked), dim=-1), replace(state, state=inner)

    def select(self, state: Pending, index: Tensor, tokens: Tensor) -> Pending:
        return Pending(self.decoder.reorder_state(state.state, index, cross=False), tokens)


class LMScorer(Scorer):
    """A language model with the decoder's incremental API (asr.model.lm.TransformerLM). It reads
    <sos> and the hypothesis, not the forced task/language prefix."""

    def __init__(self, lm: nn.Module, num_hyps: int, device: torch.device):
        self.lm, self.num_hyps, self.device = lm, num_hyps, device

    @classmethod
    def build(cls, context: SearchContext) -> LMScorer:
        if context.lm is None:
            raise ValueError("DecodeOptions.lm_weight > 0 needs a language model (lm=...)")
        return cls(context.lm, context.enc.size(0) * context.beam, context.enc.device)

    def init_state(self) -> Pending:
        sos = torch.full((self.num_hyps,), SOS_ID, dtype=torch.long, device=self.device)
        return Pending(self.lm.init_state(self.num_hyps, self.device), sos)

    def score(self, state: Pending, candidates: Tensor | None, blocked: Tensor) -> tuple[Tensor, Pending]:
        # The LM's full distribution, as its sequence_logprob scores a text (shallow fusion as ESPnet).
        logits, inner = self.lm.step(state.tokens, state.state)
        return F.log_softmax(logits.float(), dim=-1), replace(state, state=inner)

    def select(self, state: Pending, index: Tensor, tokens: Tensor) -> Pending:
        return Pending(self.lm.reorder_state(state.state, index), tokens)


class LengthBonus(Scorer):
    """1 for every token but <eos>: with weight w, a hypothesis of n tokens gains w * n."""

    def __init__(self, vocab_size: int, device: torch.device, eos_id: int = EOS_ID):
        self.row = torch.ones(1, vocab_size, device=device)
        self.row[0, eos_id] = 0.0

    @classmethod
    def build(cls, context: SearchContext) -> LengthBonus:
        return cls(context.model.config.vocab_size, context.enc.device, context.eos_id)

    def init_state(self) -> None:
        return None

    def score(self, state: None, candidates: Tensor | None, blocked: Tensor) -> tuple[Tensor, None]:
        return self.row, None

    def select(self, state: None, index: Tensor, tokens: Tensor) -> None:
        return None


@dataclass(frozen=True)
class CTCState:
    """Forward variables of each hypothesis' prefix g, in log space, float64, on T + 1 columns:
    column 0 is a virtual frame before the first, where the empty prefix has probability 1.

    r_nonblank/r_blank (N, T + 1): log P(frames 0..t emit g, frame t is g's last token / a blank).
    psi (N,): log prefix probability of g (all label sequences starting with g). last (N,): g's
    last token (-1 when empty). After `score`: the candidates (N, C) and their r_nonblank (N, T, C)
    and psi (N, C), from which `select` takes the chosen ones.
    """

    r_nonblank: Tensor
    r_blank: Tensor
    psi: Tensor
    last: Tensor
    candidates: Tensor | None = None
    cand_r_nonblank: Tensor | None = None
    cand_psi: Tensor | None = None


class CTCPrefixScorer(Scorer):
    """The CTC prefix score, vectorised over hypotheses, candidate tokens and frames.

    log_probs (B, T, V): CTC log-posteriors; lengths (B,): valid frames. For a hypothesis g and
    candidate c, the score is log psi(g + c) - log psi(g), and for <eos> log P(g) - log psi(g).
    The forward recursion over frames for h = g + c,
        r_n[t](h) = logaddexp(r_n[t-1](h), phi[t-1]) + x[t](c),  phi = r_b(g) (+ r_n(g) if c != last(g)),
    is a linear recurrence in probability space, so it is solved for all frames at once with a
    cumulative sum of x(c) and a cumulative log-sum-exp, instead of a Python loop over frames (and
    r_b(h) likewise, with the blank posteriors). The cumulative sums run in float64: they reach
    thousands in magnitude, where float32 would lose the differences.
    Frames past an utterance's length are computed but never read: the recursion only looks back.
    """

    partial = True

    def __init__(self, log_probs: Tensor, lengths: Tensor, beam: int):
        batch, frames, _ = log_probs.shape
        self.log_probs, self.beam, self.frames = log_probs, beam, frames
        self.lengths = lengths.long().clamp(0, frames).repeat_interleave(beam)  # (N,)
        blank = log_probs[:, :, BLANK_ID].double().cumsum(dim=1).repeat_interleave(beam, dim=0)
        self.blank_cum = blank  # (N, T): log P(frames 0..t all blank)
        self.blank_before = F.pad(blank[:, :-1], (1, 0))  # (N, T): the same up to frame t - 1
        positions = torch.arange(frames, device=log_probs.device)
        self.valid = positions < self.lengths[:, None]  # (N, T)

    @classmethod
    def build(cls, context: SearchContext) -> CTCPrefixScorer:
        return cls(context.model.ctc.log_probs(context.enc), context.enc_lengths, context.beam)

    def init_state(self) -> CTCState:
        hyps, device = self.blank_cum.size(0), self.blank_cum.device
        r_nonblank = torch.full((hyps, self.frames + 1), NEG_INF, dtype=torch.float64, device=device)
        r_blank = F.pad(self.blank_cum, (1, 0))  # column 0: log 1
        psi = torch.zeros(hyps, dtype=torch.float64, device=device)
        return CTCState(r_nonblank, r_blank, psi, torch.full((hyps,), -1, dtype=torch.long, device=device))

    def _candidate_log_probs(self, candidates: Tensor) -> Tensor:
        """candidates (N, C) -> x[t](c) (N, T, C), gathered per utterance (no (N, T, V) copy)."""
        hyps, width = candidates.shape
        batch = hyps // self.beam
        index = candidates.reshape(batch, 1, self.beam * width).expand(batch, self.frames, -1)
        picked = self.log_probs.gather(2, index).view(batch, self.frames, self.beam, width)
        return picked.transpose(1, 2).reshape(hyps, self.frames, width).double()

    def score(self, state: CTCState, candidates: Tensor | None, blocked: Tensor) -> tuple[Tensor, CTCState]:
        # Prefix scores are no next-token distribution: blocked tokens are masked by the search.
        hyps, vocab = state.psi.size(0), self.log_probs.size(2)
        if candidates is None:  # no pre-beam: every token is a candidate
            candidates = torch.arange(vocab, device=state.psi.device).expand(hyps, vocab)
        x = self._candidate_log_probs(candidates)  # (N, T, C)
        # phi[t]: paths through frame t - 1 that can be followed by c at frame t.
        before_r_n, before_r_b = state.r_nonblank[:, :-1], state.r_blank[:, :-1]  # (N, T): frames -1..T-2
        phi = torch.where((candidates == state.last[:, None])[:, None, :], before_r_b[:, :, None],
                          torch.logaddexp(before_r_n, before_r_b)[:, :, None])  # (N, T, C)
        x_cum = x.cumsum(dim=1)
        x_before = x_cum - x
        r_nonblank = x_cum + torch.logcumsumexp(phi - x_before, dim=1)  # (N, T, C)
        starts = (phi + x).masked_fill(~self.valid[:, :, None], NEG_INF)
        psi = torch.logsumexp(starts, dim=1)  # (N, C)
        # <eos> is always scored, pre-beam or not (as ESPnet): g is the whole label sequence, read at
        # the utterance's last frame (column = length).
        complete = torch.logaddexp(state.r_nonblank, state.r_blank).gather(1, self.lengths[:, None])  # (N, 1)
        psi = torch.where(candidates == EOS_ID, complete, psi)
        # Differences of prefix scores; an impossible prefix stays impossible (-inf - -inf would be NaN).
        impossible = state.psi[:, None] == NEG_INF
        delta = torch.where(impossible, NEG_INF, torch.cat([psi, complete], dim=1) - state.psi[:, None]).float()
        scores = torch.full((hyps, vocab), NEG_INF, device=delta.device).scatter_(1, candidates, delta[:, :-1])
        scores[:, EOS_ID] = delta[:, -1]
        return scores, replace(state, candidates=candidates, cand_r_nonblank=r_nonblank, cand_psi=psi)

    def select(self, state: CTCState, index: Tensor, tokens: Tensor) -> CTCState:
        candidates = state.candidates.index_select(0, index)
        # Position of each chosen token among its hypothesis' candidates (any, for a dead hypothesis
        # whose token was not a candidate: its score is -inf already).
        column = (candidates == tokens[:, None]).int().argmax(dim=1)
        r_nonblank = F.pad(state.cand_r_nonblank[index, :, column], (1, 0), value=NEG_INF)  # (N, T + 1)
        # r_b[t](h) = logaddexp(r_b[t-1](h), r_n[t-1](h)) + x[t](blank), solved like r_n.
        r_blank = self.blank_cum + torch.logcumsumexp(r_nonblank[:, :-1] - self.blank_before, dim=1)
        r_blank = F.pad(r_blank, (1, 0), value=NEG_INF)
        return CTCState(r_nonblank, r_blank, state.cand_psi[index, column], tokens)


SCORERS: dict[str, type[Scorer]] = {
    "decoder": DecoderScorer,
    "ctc": CTCPrefixScorer,
    "lm": LMScorer,
    "length_bonus": LengthBonus,
}

# The weight of each scorer, from the options (a scorer of weight 0 is left out).
WEIGHTS: dict[str, Callable[[DecodeOptions], float]] = {
    "decoder": lambda o: 1.0 - o.ctc_weight,
    "ctc": lambda o: o.ctc_weight,
    "lm": lambda o: o.lm_weight,
    "length_bonus": lambda o: o.length_bonus,
}


def scorer_weights(options: DecodeOptions) -> dict[str, float]:
    """{scorer name: weight} for the scorers that `options` switch on."""
    weights = {name: float(weight(options)) for name, weight in WEIGHTS.items()}
    return {name: weight for name, weight in weights.items() if weight != 0.0}


@dataclass(frozen=True)
class WeightedScorer:
    name: str
    scorer: Scorer
    weight: float


def build_scorers(context: SearchContext, options: DecodeOptions) -> list[WeightedScorer]:
    """The weighted scorers of one search, full scorers first."""
    built = [WeightedScorer(name, SCORERS[name].build(context), weight)
             for name, weight in scorer_weights(options).items()]
    return sorted(built, key=lambda s: s.scorer.partial)


def pre_beam_size(options: DecodeOptions, vocab_size: int) -> int | None:
    """Candidates per hypothesis that partial scorers score: ceil(ctc_pre_beam * beam_size), or None
    (all tokens) when no full scorer ranks them (ctc_weight = 1, as ESPnet)."""
    if options.ctc_weight >= 1.0:
        return None
    return min(vocab_size, math.ceil(options.ctc_pre_beam * options.beam_size))
