"""What decoding is asked to do (DecodeOptions) and what it returns (DecodeResult, Segment)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

# Decoding methods (DecodeOptions.method); asr.decode.decode dispatches on them.
METHODS = ("attention", "ctc_greedy", "ctc_prefix_beam", "attention_rescoring", "nat", "maskctc")


@dataclass(frozen=True)
class DecodeOptions:
    """Every decoding knob, in one place. With method="attention" the score of a hypothesis y is

        (1 - ctc_weight) * log p_att(y|x) + ctc_weight * log p_ctc(y|x) + lm_weight * log p_lm(y)
        + length_bonus * |y|

    where |y| counts the emitted tokens and the attention and LM terms include the log-probability
    of the final <eos> (the CTC term is then that of the complete sequence). Finished hypotheses
    are ranked by that score divided by (|y| + 1) ** length_penalty: the length counts the <eos>
    (0: no normalisation, 1: the average over the |y| + 1 scored tokens).

    beam_size: 1 with ctc_weight = lm_weight = 0 is greedy decoding.
    ctc_weight: weight of the CTC prefix scorer (0 disables it; 1 would be CTC-only prefix search).
        Translation (task="st") decodes with 0, since the CTC head models the source transcript:
        decode() rejects ctc_weight > 0 with task="st", and SpeechModel and the recipes turn the
        default 0.3 into 0 for it (asr.model.io.apply_task_defaults).
    ctc_pre_beam: the CTC prefix scorer only scores this many top attention candidates per
        hypothesis (ESPnet's pre-beam), as a multiple of beam_size.
    lm_weight: shallow fusion with a language model trained with the model's tokenizer (needs one:
        asr.load_model(dir, lm=lm_dir), or the recipes' lm.dir).
    max_len_ratio / max_len: a hypothesis may have at most min(max_len, max_len_ratio * encoder
        frames) tokens (at least 1). min_len: <eos> is forbidden before this many tokens.
    no_repeat_ngram: forbid repeating any n-gram of this size within a hypothesis (0: off); a guard
        against attention decoders looping on a phrase.
    nbest: how many hypotheses per utterance to return (<= beam_size).
    task / target_lang: forced prefix tokens after <sos>, e.g. "<st>", "<de>" for translation.
        The task token is forced only when the tokenizer has it (models trained without task
        tokens get none); the target-language token must exist: an unknown target_lang is a
        ValueError that lists the tokenizer's task/language tokens.

    method: how to decode (asr/decode/methods.py has the details):
        attention            the beam search above (autoregressive decoder and/or CTC prefix scores)
        ctc_greedy           best CTC path, collapsed (no decoder)
        ctc_prefix_beam      frame-synchronous CTC prefix beam search, beam_size prefixes
        attention_rescoring  the beam_size CTC prefix-beam hypotheses rescored by the attention
                             decoder: (1 - ctc_weight) att + ctc_weight ctc + lm_weight lm + length_bonus |y|
        nat                  non-autoregressive decoder (decoder kind "nat"): one parallel pass
        maskctc              Mask-CTC (decoder kind "maskctc"): CTC greedy output, low-confidence
                             tokens masked and filled in by the masked-LM decoder
    maskctc_threshold: CTC output tokens whose probability is below this are masked.
    maskctc_iterations: the masked tokens are filled over at most this many decoder passes, the
        most confident first (ESPnet's easy-first schedule).
    nat_length_candidates: how many output lengths the NAT decoder tries; with more than one, each
        candidate is scored (1 - ctc_weight) * NAT + ctc_weight * CTC (NAT only without a CTC head).
    nat_length_source: where the candidate lengths come from: "predictor" (the most likely lengths
        of the length predictor) or "ctc" (the lengths nearest to that of the CTC greedy output).
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
    method: str = "attention"
    maskctc_threshold: float = 0.999
    maskctc_iterations: int = 10
    nat_length_candidates: int = 1
    nat_length_source: str = "predictor"

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
            (self.method in METHODS, "method", f"must be one of {', '.join(METHODS)}"),
            (0.0 <= self.maskctc_threshold <= 1.0, "maskctc_threshold", "must be in [0, 1]"),
            (self.maskctc_iterations >= 1, "maskctc_iterations", "must be >= 1"),
            (self.nat_length_candidates >= 1, "nat_length_candidates", "must be >= 1"),
            (self.nat_length_source in ("predictor", "ctc"), "nat_length_source", "must be 'predictor' or 'ctc'"),
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
    len(tokens) + 1), normalised over the tokens the tokenizer lets the search emit. Other
    methods than "attention" define both in asr/decode/methods.py.
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
