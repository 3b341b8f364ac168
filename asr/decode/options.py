"""What decoding is asked to do (DecodeOptions) and what it returns (DecodeResult, Segment)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DecodeOptions:
    """Every decoding knob, in one place. The score of a hypothesis y is

        (1 - ctc_weight) * log p_att(y|x) + ctc_weight * log p_ctc(y|x) + lm_weight * log p_lm(y)
        + length_bonus * |y|

    and finished hypotheses are ranked by that score divided by |y| ** length_penalty (0: no
    normalisation, 1: per-token average).

    beam_size: 1 with ctc_weight = lm_weight = 0 is greedy decoding.
    ctc_weight: weight of the CTC prefix scorer (0 disables it; 1 would be CTC-only prefix search).
    ctc_pre_beam: the CTC prefix scorer only scores this many top attention candidates per
        hypothesis (ESPnet's pre-beam), as a multiple of beam_size.
    lm_weight: shallow fusion with a language model (needs one).
    max_len_ratio / max_len: a hypothesis may have at most min(max_len, max_len_ratio * encoder
        frames) tokens (at least 1). min_len: <eos> is forbidden before this many tokens.
    no_repeat_ngram: forbid repeating any n-gram of this size within a hypothesis (0: off); a guard
        against attention decoders looping on a phrase.
    nbest: how many hypotheses per utterance to return (<= beam_size).
    task / target_lang: forced prefix tokens after <sos>, e.g. "<st>", "<de>" for translation; a
        token is only forced when the tokenizer knows it (models without task tokens get none).
    """

    beam_size: int = 5
    ctc_weight: float = 0.3
    ctc_pre_beam: float = 1.5
    lm_weight: float = 0.0
    length_bonus: float = 0.0
    length_penalty: float = 0.0
    max_len_ratio: float = 1.0
    max_len: int = 448
    min_len: int = 0
    no_repeat_ngram: int = 0
    nbest: int = 1
    task: str | None = None
    target_lang: str | None = None

    def __post_init__(self) -> None:
        checks = [
            (self.beam_size >= 1, "beam_size", "must be >= 1"),
            (0.0 <= self.ctc_weight <= 1.0, "ctc_weight", "must be in [0, 1]"),
            (self.ctc_pre_beam >= 1.0, "ctc_pre_beam", "must be >= 1"),
            (self.lm_weight >= 0.0, "lm_weight", "must be >= 0"),
            (self.max_len_ratio > 0.0, "max_len_ratio", "must be > 0"),
            (self.max_len >= 1, "max_len", "must be >= 1"),
            (0 <= self.min_len <= self.max_len, "min_len", "must be in [0, max_len]"),
            (self.no_repeat_ngram >= 0, "no_repeat_ngram", "must be >= 0"),
            (1 <= self.nbest <= self.beam_size, "nbest", "must be in [1, beam_size]"),
            (self.task in (None, "asr", "st"), "task", "must be 'asr', 'st' or None"),
        ]
        for ok, name, rule in checks:
            if not ok:
                raise ValueError(f"DecodeOptions.{name}={getattr(self, name)!r}: {rule}")

    def replace(self, **changes: Any) -> DecodeOptions:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Segment:
    """A stretch of long audio and its text. Times are seconds from the start of the file."""

    start: float
    end: float
    text: str
    tokens: tuple[int, ...] = ()


@dataclass(frozen=True)
class DecodeResult:
    """One utterance's best hypothesis, with the n-best list and, for long audio, its segments.

    tokens: token ids without <sos>, forced prefix tokens and <eos>.
    score: the ranking score (see DecodeOptions). token_logprobs: the attention decoder's
    log-probability of each emitted token, then of <eos> when it was emitted (len(tokens) or
    len(tokens) + 1).
    nbest: the top DecodeOptions.nbest hypotheses, best first (nbest[0] is this one, with an
    empty nbest of its own). audio: the source it came from, when transcribing files.
    """

    tokens: tuple[int, ...]
    text: str
    score: float
    token_logprobs: tuple[float, ...] = ()
    nbest: tuple[DecodeResult, ...] = ()
    segments: tuple[Segment, ...] = ()
    audio: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "audio": self.audio,
            "text": self.text,
            "score": self.score,
            "tokens": list(self.tokens),
            "token_logprobs": list(self.token_logprobs),
            "segments": [dataclasses.asdict(s) | {"tokens": list(s.tokens)} for s in self.segments],
            "nbest": [{"text": h.text, "score": h.score, "tokens": list(h.tokens)} for h in self.nbest],
        }
