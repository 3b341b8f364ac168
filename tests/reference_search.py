"""A straightforward beam search, one utterance and one hypothesis at a time, to check asr.decode.decode.

Nothing is shared with the batched search but the model and the rules it must follow:
- every hypothesis is re-scored from scratch: the decoder and the LM by teacher forcing on the whole
  prefix (no KV cache), CTC by the textbook prefix recursion (Watanabe et al., 2017) in Python floats;
- candidates are sorted in Python; the search runs to the length limit (no early stopping).
Rules: score = (1 - ctc_weight) att + ctc_weight ctc + lm_weight lm + length_bonus (per non-<eos>
token), the decoder's distribution normalised over the ids that are not blocked;
blocked ids, <eos> not before min_len, only <eos> at the limit, no repeated n-grams; CTC
scores the top ceil(ctc_pre_beam * beam) tokens by the other terms, and <eos>. Walking the ranked
extensions, an <eos> one finishes its hypothesis while fewer than `beam` live ones were kept.
Finished hypotheses rank by score / (tokens + 1) ** length_penalty.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from asr.decode import DecodeOptions, forced_prefix
from asr.decode.scorers import pre_beam_size
from asr.model.config import BLANK_ID, EOS_ID, SOS_ID

NEG_INF = float("-inf")


def logaddexp(a: float, b: float) -> float:
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    return max(a, b) + math.log1p(math.exp(-abs(a - b)))


def ctc_prefix_scores(x: list[list[float]], prefix: list[int]) -> tuple[float, float]:
    """x[t][v]: CTC log-posteriors of one utterance's frames. -> (log psi(prefix): probability of
    all label sequences starting with `prefix`, log P(prefix): of exactly `prefix`)."""
    frames = len(x)
    r_n = [NEG_INF] * frames
    r_b = []
    acc = 0.0
    for t in range(frames):
        acc += x[t][BLANK_ID]
        r_b.append(acc)
    psi, last = 0.0, None
    for c in prefix:
        new_n, new_b = [NEG_INF] * frames, [NEG_INF] * frames
        phi = [r_b[t] if c == last else logaddexp(r_b[t], r_n[t]) for t in range(frames)]
        if last is None and frames:
            new_n[0] = x[0][c]
        psi = new_n[0] if frames else NEG_INF
        for t in range(1, frames):
            new_n[t] = logaddexp(new_n[t - 1], phi[t - 1]) + x[t][c]
            new_b[t] = logaddexp(new_b[t - 1], new_n[t - 1]) + x[t][BLANK_ID]
            psi = logaddexp(psi, phi[t - 1] + x[t][c])
        r_n, r_b, last = new_n, new_b, c
    complete = logaddexp(r_n[-1], r_b[-1]) if frames else (0.0 if not prefix else NEG_INF)
    return psi, complete


@dataclass
class Hyp:
    tokens: list[int]
    score: float
    logps: list[float]


def repeated(tokens: list[int], n: int) -> set[int]:
    if n == 0 or len(tokens) < n:
        return set()
    suffix = tokens[len(tokens) - n + 1:]
    return {tokens[i + n - 1] for i in range(len(tokens) - n + 1) if tokens[i:i + n - 1] == suffix}


@torch.no_grad()
def reference_decode(model, feats: torch.Tensor, options: DecodeOptions, tokenizer, lm=None):
    """feats (T, F) of ONE utterance -> n-best list of (tokens, rank score, token log-probs), best first."""
    model.eval()
    enc, enc_lengths = model.encode(feats[None], torch.tensor([feats.size(0)]))
    frames = int(enc_lengths[0])
    limit = int(torch.clamp((enc_lengths.float() * options.max_len_ratio).long(), 1, options.max_len)[0])
    vocab = tokenizer.vocab_size
    forced = [SOS_ID, *forced_prefix(tokenizer, options)]
    blocked = tokenizer.skipped_ids - {EOS_ID}
    blocked_mask = torch.zeros(vocab)
    blocked_mask[sorted(blocked)] = NEG_INF
    ctc_w, lm_w = options.ctc_weight, options.lm_weight
    x = model.ctc.log_probs(enc)[0, :frames].double().tolist() if ctc_w > 0 else None
    cache: dict[tuple[int, ...], tuple[float, float]] = {}

    def ctc(prefix: list[int]) -> tuple[float, float]:
        key = tuple(prefix)
        if key not in cache:
            cache[key] = ctc_prefix_scores(x, prefix)
        return cache[key]

    pre_beam = pre_beam_size(options, vocab)
    live, finished = [Hyp([], 0.0, [])], []
    for t in range(limit + 1):
        extensions = []
        for hyp in live:
            full = torch.zeros(vocab, dtype=torch.float64)
            att = None
            if ctc_w < 1:
                logits = model.decoder(torch.tensor([forced + hyp.tokens]), enc, enc_lengths)[0, -1]
                att = (logits.float() + blocked_mask).log_softmax(-1).double()
                full += (1 - ctc_w) * att
            if lm_w > 0:
                full += lm_w * lm.logits(torch.tensor([[SOS_ID] + hyp.tokens]))[0, -1].float().log_softmax(-1).double()
            if options.length_bonus:
                full += options.length_bonus
                full[EOS_ID] -= options.length_bonus
            banned = set(blocked) | repeated(hyp.tokens, options.no_repeat_ngram)
            if t < options.min_len and t < limit:
                banned.add(EOS_ID)
            if t >= limit:
                banned = set(range(vocab)) - {EOS_ID}
            full[sorted(banned)] = NEG_INF
            total = full.clone()
            ctc_scores = None
            if ctc_w > 0:
                candidates = set(range(vocab)) if pre_beam is None else set(full.topk(pre_beam).indices.tolist())
                psi, complete = ctc(hyp.tokens)
                ctc_scores = torch.full((vocab,), NEG_INF, dtype=torch.float64)
                for c in candidates | {EOS_ID}:
                    new = complete if c == EOS_ID else ctc(hyp.tokens + [c])[0]
                    ctc_scores[c] = NEG_INF if psi == NEG_INF else new - psi
                total = total + ctc_w * ctc_scores
            primary = att if att is not None else ctc_scores
            for v in range(vocab):
                if total[v] > NEG_INF:
                    extensions.append((hyp.score + float(total[v]), hyp, v, float(primary[v])))
        extensions.sort(key=lambda e: -e[0])
        live = []
        for score, hyp, v, logp in extensions:
            if len(live) == options.beam_size:
                break
            if v == EOS_ID:
                rank = score / (t + 1) ** options.length_penalty if options.length_penalty else score
                finished.append((hyp.tokens, rank, hyp.logps + [logp]))
            else:
                live.append(Hyp(hyp.tokens + [v], score, hyp.logps + [logp]))
        if not live:
            break
    finished.sort(key=lambda f: -f[1])
    return finished[: options.nbest]
