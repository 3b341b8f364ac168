"""The search entry point: batched beam search over B utterances x beam hypotheses.

    results = decode(model, feats, feat_lengths, DecodeOptions(beam_size=5, ctc_weight=0.3), tokenizer=tok)

Each step scores the next token of all N = B x beam live hypotheses at once with the weighted scorers
of asr.decode.scorers (the CTC prefix scorer only on a pre-beam of the best candidates), then ranks
the 2 x beam best extensions of each utterance. As in whisper, the <eos> extensions ranked before the
beam-th live one finish their hypothesis, and the best `beam` others stay live; scorer states follow
by index. Finished hypotheses are kept in tensors (the best `nbest` of each utterance). An utterance
is done when no live hypothesis can beat its nbest-th finished one any more (an exact test: every
score term is a log-probability <= 0 except the length bonus, which the bound includes), so the
results equal those of a search run to the length limit. The host checks for that every few steps
(on a CPU also whether any hypothesis ends, as that costs nothing there); everything else stays on
the device until one transfer at the end.

Beam 1 without CTC and LM is greedy search (the same tokens as asr.decode.greedy_search).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from asr.decode.language import resolve_prefix
from asr.decode.options import DecodeOptions, DecodeResult
from asr.decode.scorers import NEG_INF, SearchContext, WeightedScorer, build_scorers, pre_beam_size
from asr.model.config import EOS_ID
from asr.text import Tokenizer

CHECK_EVERY = 4  # steps between the host's "is every utterance done?" checks (the loop's only syncs)


@torch.no_grad()
def decode(model: nn.Module, feats: Tensor, feat_lengths: Tensor, options: DecodeOptions, *,
           tokenizer: Tokenizer, lm: nn.Module | None = None) -> list[DecodeResult]:
    """Decode a batch: feats (B, T, F) raw features (the model applies CMVN), feat_lengths (B,).

    model: an ASRModel; lm: a language model for DecodeOptions.lm_weight > 0 (asr.model.lm).
    Returns one DecodeResult per utterance, in order, with its n-best list.
    options.method picks the search: "attention" is the beam search below; the others (CTC greedy /
    prefix beam, attention rescoring, NAT, Mask-CTC) are in asr/decode/methods.py.
    """
    from asr.decode.methods import check_method, decode_method  # they import this module

    if options.method != "attention":
        return decode_method(model, feats, feat_lengths, options, tokenizer=tokenizer, lm=lm)
    check_method(model, options, lm)
    _check_inputs(model, feats, feat_lengths, options, tokenizer, lm)
    prefix = forced_prefix(tokenizer, options)
    if feats.size(0) == 0:
        return []
    modules = [m for m in (model, lm) if m is not None]
    modes = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        enc, enc_lengths = model.encode(feats, feat_lengths)
        prefix_ids = resolve_prefix(model, enc, enc_lengths, prefix, tokenizer)  # detects languages if asked
        context = SearchContext(model, enc, enc_lengths, options.beam_size, prefix_ids,
                                lm if options.lm_weight > 0 else None, tokenizer.sos_id, tokenizer.eos_id)
        max_len = min(options.max_len, _decoder_room(model, len(prefix)))
        limits = torch.clamp((enc_lengths.float() * options.max_len_ratio).long(), min=1, max=max_len)
        finished = beam_search(build_scorers(context, options), limits, options, tokenizer.vocab_size,
                               sorted(tokenizer.suppressed_ids), eos_id=tokenizer.eos_id,
                               initial_blocked=sorted(tokenizer.initial_suppressed_ids))
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)
    return finished.results(tokenizer)


def beam_search(scorers: Sequence[WeightedScorer], limits: Tensor, options: DecodeOptions, vocab_size: int,
                blocked: Sequence[int] = (), check_every: int = CHECK_EVERY, *, eos_id: int = EOS_ID,
                initial_blocked: Sequence[int] = ()) -> Finished:
    """The search proper. limits (B,): the most tokens each utterance may emit before <eos>;
    blocked: ids never emitted; initial_blocked: ids not emitted first. Returns the finished hypotheses."""
    batch, beam, device = limits.size(0), options.beam_size, limits.device
    steps = int(limits.max()) + 1  # the last step only ends hypotheses (one sync, before the loop)
    rules = TokenRules(vocab_size, blocked, options, limits.repeat_interleave(beam), int(limits.min()), eos_id,
                       initial_blocked)
    pre_beam = pre_beam_size(options, vocab_size)
    primary = next(s.name for s in scorers if s.name in ("decoder", "ctc"))  # gives token_logprobs
    states = [s.scorer.init_state() for s in scorers]
    # The beam copies of an utterance start as the same empty hypothesis: only the first is alive.
    scores = torch.full((batch, beam), NEG_INF, device=device)
    scores[:, 0] = 0.0
    scores = scores.view(-1)
    history = torch.full((batch * beam, steps), EOS_ID, dtype=torch.long, device=device)
    history_logp = torch.zeros(batch * beam, steps, device=device)
    finished = Finished.empty(batch, options.nbest, steps, device)
    first_row = torch.arange(batch, device=device)[:, None] * beam
    for t in range(steps):
        step_scores, logp, states = _score(scorers, states, rules, history[:, :t], t, pre_beam, primary)
        top, flat = best_extensions(step_scores.view(batch, beam, -1), scores.view(batch, beam), 2 * beam)
        source, token = first_row + flat // vocab_size, flat % vocab_size
        token_logp = logp.view(batch, -1).gather(1, flat)
        is_eos = token == eos_id
        live_before = (~is_eos).long().cumsum(dim=1) - (~is_eos).long()
        ending = is_eos & (live_before < beam)
        # On a CPU the check costs nothing (no device to wait for) and most steps end no hypothesis.
        if not ending.is_cpu or bool(ending.any()):
            finished = finished.add(torch.where(ending, top, NEG_INF), history, history_logp, source, token_logp, t,
                                    options.length_penalty)
        keep = torch.sort(is_eos.long(), dim=1, stable=True).indices[:, :beam]  # the best `beam` non-<eos>
        source, token, scores, token_logp = (x.gather(1, keep).view(-1) for x in (source, token, top, token_logp))
        states = [s.scorer.select(state, source, token) for s, state in zip(scorers, states)]
        history, history_logp = history[source], history_logp[source]
        history[:, t], history_logp[:, t] = token, token_logp
        if (t + 1) % check_every == 0 and bool(finished.done(scores.view(batch, beam), t + 1, limits, options).all()):
            break
    return finished


def best_extensions(step_scores: Tensor, scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """step_scores (B, beam, V) of every next token, scores (B, beam) of the hypotheses -> the k best
    extensions of each utterance: (scores (B, k), indices (B, k) into beam x V), best first.

    The same k as one topk over the beam x V row of sums, found in two stages: each hypothesis' k
    best tokens (its own score adds the same to all, so it is added after), then the best of those
    beam x k.
    """
    batch, beam, vocab = step_scores.shape
    row_top, row_token = row_topk(step_scores.reshape(batch * beam, vocab), min(k, vocab))  # (N, k')
    row_top = (row_top + scores.reshape(-1, 1)).view(batch, -1)
    top, pick = row_top.topk(k, dim=1)
    return top, pick // row_token.size(1) * vocab + row_token.view(batch, -1).gather(1, pick)


ROW_CHUNK = 64  # row_topk's chunk width (fastest at 64-128 for Whisper's 51,865 tokens)


def row_topk(x: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """x (R, V) -> x.topk(k, dim=1) (the same values and tokens, up to the order of ties), faster for long rows.

    CPU topk copies a row into (value, index) pairs and partially sorts them (~0.35 ms for 5 x
    51,865, k = 10). The k best lie in the k chunks of the row whose maxima are highest (a chunk
    outside them has k better elements elsewhere), so one vectorised max per chunk, a topk of the
    maxima and a topk over those k chunks (plus the row's ragged end) find them (~0.09 ms).
    """
    rows, width = x.shape
    chunks = width // ROW_CHUNK
    if chunks < 4 * k:
        return x.topk(k, dim=1)
    maxima = x[:, : chunks * ROW_CHUNK].reshape(rows, chunks, ROW_CHUNK).amax(dim=2)
    offsets = torch.arange(ROW_CHUNK, device=x.device)
    columns = (maxima.topk(k, dim=1).indices[:, :, None] * ROW_CHUNK + offsets).view(rows, -1)  # (R, k * chunk)
    if chunks * ROW_CHUNK < width:
        ragged_end = torch.arange(chunks * ROW_CHUNK, width, device=x.device).expand(rows, -1)
        columns = torch.cat([columns, ragged_end], dim=1)
    values, pick = x.gather(1, columns).topk(k, dim=1)
    return values, columns.gather(1, pick)


def _score(scorers: Sequence[WeightedScorer], states: list, rules: TokenRules, history: Tensor, t: int,
           pre_beam: int | None, primary: str) -> tuple[Tensor, Tensor, list]:
    """-> (weighted scores (N, V) of every next token, the primary scorer's scores (N, V), new states).

    The full scorers' weighted sum, with the rules applied, ranks the pre-beam of candidates that the
    partial scorers (CTC) score. `scorers` are ordered full ones first.
    """
    total, candidates, outputs, new_states = None, None, {}, []
    full = sum(not s.scorer.partial for s in scorers)
    blocked = rules.blocked_at(t)
    # A full scorer that masks the blocked ids itself makes the total a new tensor with them masked
    # already: the rules then only fill in place.
    fresh = False
    for i, (s, state) in enumerate(zip(scorers, states)):
        if i == full:  # the first partial scorer
            total = rules.apply(total, history, t, fresh)
            candidates = None if pre_beam is None else total.topk(pre_beam, dim=1).indices
        outputs[s.name], state = s.scorer.score(state, candidates, blocked)
        new_states.append(state)
        weighted = outputs[s.name] if s.weight == 1.0 else s.weight * outputs[s.name]
        total = weighted if total is None else total + weighted
        fresh = fresh or s.scorer.masks_blocked
    if full == len(scorers):
        total = rules.apply(total, history, t, fresh)
    return total, outputs[primary], new_states


class TokenRules:
    """Which next tokens are allowed, as -inf added to their scores: never the blocked ids, nor the
    initial_blocked ones first; <eos> not before min_len tokens; only <eos> at a hypothesis' length
    limit; no token that would repeat an n-gram of the hypothesis (no_repeat_ngram)."""

    def __init__(self, vocab_size: int, blocked: Sequence[int], options: DecodeOptions, hyp_limits: Tensor,
                 shortest: int, eos_id: int = EOS_ID, initial_blocked: Sequence[int] = ()):
        device = hyp_limits.device
        self.vocab_size, self.hyp_limits, self.shortest = vocab_size, hyp_limits, shortest
        self.min_len, self.ngram, self.eos_id = options.min_len, options.no_repeat_ngram, eos_id
        self.blocked = torch.zeros(1, vocab_size, device=device)
        self.blocked[0, list(blocked)] = NEG_INF
        self.initial_blocked = self.blocked.clone()
        self.initial_blocked[0, list(initial_blocked)] = NEG_INF
        self.not_eos = torch.ones(vocab_size, dtype=torch.bool, device=device)
        self.not_eos[eos_id] = False

    def blocked_at(self, t: int) -> Tensor:
        """(1, V): -inf at the ids blocked at step t whatever the hypothesis, else 0."""
        return self.initial_blocked if t == 0 else self.blocked

    def apply(self, scores: Tensor | None, history: Tensor, t: int, fresh: bool = False) -> Tensor:
        """scores (N, V), (1, V) or None (all 0), history (N, t): the tokens emitted so far -> (N, V).

        fresh: `scores` is a new tensor, blocked ids masked already, that may be changed in place
        (the primary scorer's log-probs may be that tensor: only the scores of tokens the search
        does not pick change).
        """
        hyps = self.hyp_limits.size(0)
        if scores is None or not fresh:
            blocked = self.blocked_at(t)
            scores = blocked if scores is None else scores + blocked
        if scores.size(0) != hyps:
            scores = scores.expand(hyps, -1).clone()
        at_limit = t >= self.hyp_limits  # (N,)
        if t < self.min_len:
            scores[:, self.eos_id].masked_fill_(~at_limit, NEG_INF)
        if t >= self.shortest:
            scores.masked_fill_(at_limit[:, None] & self.not_eos, NEG_INF)
        if self.ngram and t >= self.ngram:
            scores.masked_fill_(repeated_ngrams(history, self.ngram, self.vocab_size), NEG_INF)
        return scores


def repeated_ngrams(history: Tensor, n: int, vocab_size: int) -> Tensor:
    """history (N, t) -> (N, V) bool: True where the token would end an n-gram already in the history."""
    windows = history.unfold(1, n, 1)  # (N, t - n + 1, n): every n-gram so far
    suffix = history[:, history.size(1) - n + 1:]  # (N, n - 1): what the next token extends
    match = (windows[:, :, :-1] == suffix[:, None, :]).all(dim=2)  # (N, W)
    # Scatter True at the tokens that complete a matching n-gram; the others go to a spare column.
    target = torch.where(match, windows[:, :, -1], vocab_size)
    banned = torch.zeros(history.size(0), vocab_size + 1, dtype=torch.bool, device=history.device)
    return banned.scatter_(1, target, True)[:, :vocab_size]


@dataclass(frozen=True)
class Finished:
    """The best `nbest` finished hypotheses of every utterance, best first.

    rank (B, F): ranking score (score / (tokens + 1) ** length_penalty; -inf: an empty slot);
    tokens (B, F, L) padded with <eos>; logp (B, F, L): primary scorer's log-prob of each token
    and of the <eos>; length (B, F): tokens before <eos>.
    """

    rank: Tensor
    tokens: Tensor
    logp: Tensor
    length: Tensor

    @classmethod
    def empty(cls, batch: int, nbest: int, steps: int, device: torch.device) -> Finished:
        return cls(torch.full((batch, nbest), NEG_INF, device=device),
                   torch.full((batch, nbest, steps), EOS_ID, dtype=torch.long, device=device),
                   torch.zeros(batch, nbest, steps, device=device),
                   torch.zeros(batch, nbest, dtype=torch.long, device=device))

    def add(self, scores: Tensor, history: Tensor, history_logp: Tensor, source: Tensor, eos_logp: Tensor, t: int,
            length_penalty: float) -> Finished:
        """Hypotheses `source` (B, C) end with <eos> at step t with `scores` (B, C) (-inf: not ending)."""
        batch, count = source.shape
        rank = scores / float(t + 1) ** length_penalty if length_penalty else scores
        tokens = history[source.view(-1)].view(batch, count, -1)
        logp = history_logp[source.view(-1)].view(batch, count, -1)
        logp[:, :, t] = eos_logp
        merged = [torch.cat(pair, dim=1) for pair in ((self.rank, rank), (self.tokens, tokens), (self.logp, logp),
                                                       (self.length, torch.full_like(source, t)))]
        best = merged[0].topk(self.rank.size(1), dim=1).indices
        picked = [m.gather(1, best if m.dim() == 2 else best[:, :, None].expand(-1, -1, m.size(2))) for m in merged]
        return Finished(*picked)

    def done(self, live: Tensor, emitted: int, limits: Tensor, options: DecodeOptions) -> Tensor:
        """live (B, beam) scores of hypotheses with `emitted` tokens -> (B,) True where none of them
        can finish above the nbest-th finished hypothesis."""
        # Only the length bonus raises a score; it can add at most (limit - emitted) tokens.
        bound = live.max(dim=1).values + max(options.length_bonus, 0.0) * (limits - emitted).clamp(min=0)
        if options.length_penalty:  # the best normalisation over the lengths still possible
            p = options.length_penalty
            bound = torch.maximum(bound / float(emitted + 1) ** p, bound / (limits + 1).float() ** p)
        return self.rank[:, -1] >= bound

    def results(self, tokenizer: Tokenizer) -> list[DecodeResult]:
        """One DecodeResult per utterance (one transfer from the device)."""
        rank, tokens, logp, length = (x.cpu().tolist() for x in (self.rank, self.tokens, self.logp, self.length))
        results = []
        for b in range(len(rank)):
            hyps = [DecodeResult(tuple(tokens[b][f][:n]), tokenizer.decode(tokens[b][f][:n]), rank[b][f],
                                 tuple(logp[b][f][: n + 1]))
                    for f, n in enumerate(length[b]) if rank[b][f] != NEG_INF]
            hyps = hyps or [DecodeResult((), "", NEG_INF)]
            best = hyps[0]
            results.append(DecodeResult(best.tokens, best.text, best.score, best.token_logprobs, tuple(hyps)))
        return results


def forced_prefix(tokenizer: Tokenizer, options: DecodeOptions) -> list[int | None]:
    """Token ids forced after <sos> (tokenizer.prefix_ids): for our tokenizers, the task token
    ("<asr>"/"<st>", when the tokenizer has task tokens) and the target-language token
    f"<{target_lang}>"; None: a language token to detect (Whisper, asr.decode.language)."""
    return tokenizer.prefix_ids(options.task, options.target_lang)


def _decoder_room(model: nn.Module, prefix_len: int) -> int:
    """The most tokens the decoder can emit after <sos> and the prefix (learned positions are finite)."""
    capacity = getattr(model.decoder, "max_positions", None)
    return max(1, capacity - prefix_len - 1) if capacity else 1 << 30


def _check_inputs(model: nn.Module, feats: Tensor, feat_lengths: Tensor, options: DecodeOptions,
                  tokenizer: Tokenizer, lm: nn.Module | None) -> None:
    if feats.dim() != 3 or feat_lengths.shape != feats.shape[:1]:
        raise ValueError(f"decode: expected feats (B, T, F) and feat_lengths (B,), got shapes {tuple(feats.shape)} "
                         f"and {tuple(feat_lengths.shape)}")
    vocab = model.config.vocab_size
    if tokenizer.vocab_size != vocab:
        raise ValueError(f"decode: the tokenizer has {tokenizer.vocab_size} tokens but the model {vocab}")
    if options.ctc_weight < 1.0 and model.decoder is None:
        raise ValueError(f"DecodeOptions.ctc_weight={options.ctc_weight}: this model has no attention decoder "
                         "(it was trained with ctc_weight=1); decode it with ctc_weight=1.0")
    if options.ctc_weight > 0.0 and model.ctc is None:
        raise ValueError(f"DecodeOptions.ctc_weight={options.ctc_weight}: this model has no CTC head (it was "
                         "trained with ctc_weight=0); decode it with ctc_weight=0")
    if options.ctc_weight > 0.0 and options.task == "st":
        raise ValueError(f"DecodeOptions.ctc_weight={options.ctc_weight} with task='st': the CTC head models the "
                         "source-language transcript, not the translation; set ctc_weight=0 to translate")
    if options.lm_weight > 0.0:
        if lm is None:
            raise ValueError(f"DecodeOptions.lm_weight={options.lm_weight} needs a language model (lm=...)")
        if lm.config.vocab_size != vocab:
            raise ValueError(f"decode: the language model has {lm.config.vocab_size} tokens but the model {vocab}")
