"""Word and character error rates (via jiwer), with empty references handled.

Used by validation during training and by the `asr-wer` scorer.

Edge cases, defined here once:
  * Whitespace is collapsed and stripped before scoring, so "a  b " and "a b" are the same text.
  * An empty reference (no words) cannot be aligned by older jiwer versions, which raise; its
    hypothesis words are all insertions. The corpus rates divide by max(ref_words, 1), so a corpus
    whose references are all empty has WER = number of inserted words (0.0 when every hypothesis
    is empty too), never a crash or a division by zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import jiwer


@dataclass(frozen=True)
class ErrorRate:
    """Corpus-level error counts. Rates are fractions (0.25 = 25 %)."""

    wer: float
    cer: float
    substitutions: int
    deletions: int
    insertions: int
    hits: int
    ref_words: int
    sentence_error_rate: float
    num_utts: int
    char_errors: int = 0
    ref_chars: int = 0
    char_substitutions: int = 0
    char_deletions: int = 0
    char_insertions: int = 0

    @property
    def word_errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    def to_dict(self) -> dict:
        return asdict(self)


def _clean(text: str) -> str:
    return " ".join(text.split())


def error_rate(refs: Sequence[str], hyps: Sequence[str]) -> ErrorRate:
    """Score hypotheses against references, utterance i against utterance i.

    >>> r = error_rate(["a b c"], ["a x c d"])
    >>> (r.substitutions, r.insertions, r.wer)
    (1, 1, 0.6666666666666666)
    """
    if len(refs) != len(hyps):
        raise ValueError(f"error_rate: {len(refs)} references but {len(hyps)} hypotheses")
    refs = [_clean(r) for r in refs]
    hyps = [_clean(h) for h in hyps]

    # Empty references are scored here (all insertions); only the rest goes through jiwer.
    scored = [i for i, r in enumerate(refs) if r]
    empty = [i for i, r in enumerate(refs) if not r]
    subs = dels = hits = 0
    ins = sum(len(hyps[i].split()) for i in empty)
    char_ins = sum(len(hyps[i]) for i in empty)
    char_subs = char_dels = 0
    if scored:
        words = jiwer.process_words([refs[i] for i in scored], [hyps[i] for i in scored])
        subs, dels, hits = words.substitutions, words.deletions, words.hits
        ins += words.insertions
        chars = jiwer.process_characters([refs[i] for i in scored], [hyps[i] for i in scored])
        char_subs, char_dels = chars.substitutions, chars.deletions
        char_ins += chars.insertions
    char_errors = char_subs + char_dels + char_ins

    ref_words = sum(len(r.split()) for r in refs)
    ref_chars = sum(len(r) for r in refs)
    wrong_utts = sum(r.split() != h.split() for r, h in zip(refs, hyps))
    return ErrorRate(
        wer=(subs + dels + ins) / max(ref_words, 1),
        cer=char_errors / max(ref_chars, 1),
        substitutions=subs,
        deletions=dels,
        insertions=ins,
        hits=hits,
        ref_words=ref_words,
        sentence_error_rate=wrong_utts / max(len(refs), 1),
        num_utts=len(refs),
        char_errors=char_errors,
        ref_chars=ref_chars,
        char_substitutions=char_subs,
        char_deletions=char_dels,
        char_insertions=char_ins,
    )
