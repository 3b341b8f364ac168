"""The synth grammar: English voice-assistant requests with parallel German translations.

    pairs = generate_pairs(1000, seed=0)
    pairs[0]  # SentencePair(en="wake me up at seven", de="weck mich um sieben Uhr auf", pattern="wake_up")

Each pattern (synth_patterns_home, synth_patterns_plans) fills its slots once and writes both
sentences from the same values, so translations are exact by construction and need real reordering
and agreement (verb second, separable verbs, gender and case, German number words).

Text conventions. English: lower-case words and apostrophes only, numbers spelled as spoken,
because eSpeak reads it aloud and the transcript must match the audio. German: standard
orthography inside the sentence (capitalised nouns, umlauts and ß, the comma before a subordinate
or infinitive clause: "sag Anna, dass ich unterwegs bin"), but, like the English, no capital at
the start and no final punctuation, so both sides are requests in the same plain form.

Splits. `sentence_split` assigns each English sentence to train, dev or test by a hash of its
text, so a sentence belongs to one split whatever the seed or sizes, and the test sentences of a
corpus never occur in its training set.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from asr.datasets import synth_patterns_home, synth_patterns_plans

PATTERNS: dict[str, Callable[[random.Random], tuple[str, str]]] = {
    fn.__name__: fn for fn in (*synth_patterns_home.PATTERNS, *synth_patterns_plans.PATTERNS)
}
SPLITS = ("train", "dev", "test")
# Per mille of the sentence space held out for dev and test.
DEV_PER_MILLE = 40
TEST_PER_MILLE = 80
# The stream gives up when this many draws in a row repeat earlier sentences: the grammar (or the
# part of it in one split) has run out of new sentences.
MAX_REPEATS_IN_A_ROW = 20_000


@dataclass(frozen=True)
class SentencePair:
    """An English sentence, its German translation and the pattern that made them."""

    en: str
    de: str
    pattern: str


def sentence_split(en: str) -> str:
    """The split ("train", "dev" or "test") an English sentence belongs to, from a hash of its text."""
    bucket = int.from_bytes(hashlib.sha256(en.encode("utf-8")).digest()[:8], "big") % 1000
    if bucket < TEST_PER_MILLE:
        return "test"
    if bucket < TEST_PER_MILLE + DEV_PER_MILLE:
        return "dev"
    return "train"


def iter_pairs(seed: int) -> Iterator[SentencePair]:
    """An endless stream of distinct sentence pairs, the same for the same seed.

    Distinct means distinct English: the first German generated for an English sentence is kept,
    so a transcript always has one translation. Raises RuntimeError if the grammar runs dry.
    """
    rng = random.Random(seed)
    names = sorted(PATTERNS)
    seen: set[str] = set()
    repeats = 0
    while True:
        name = rng.choice(names)
        en, de = PATTERNS[name](rng)
        if en in seen:
            repeats += 1
            if repeats >= MAX_REPEATS_IN_A_ROW:
                raise RuntimeError(f"the synth grammar produced no new sentence in {repeats} draws ({len(seen)} made)")
            continue
        repeats = 0
        seen.add(en)
        yield SentencePair(en, de, name)


def generate_pairs(n: int, seed: int = 0) -> list[SentencePair]:
    """The first `n` distinct sentence pairs of the stream for `seed`."""
    if n < 0:
        raise ValueError(f"generate_pairs: n must be >= 0, got {n}")
    stream = iter_pairs(seed)
    return [next(stream) for _ in range(n)]


def split_pairs(counts: Mapping[str, int], seed: int = 0) -> dict[str, list[SentencePair]]:
    """Distinct sentence pairs for each split, e.g. {"train": 2000, "dev": 100, "test": 200}.

    The stream for `seed` is dealt out by `sentence_split` until every split has its count, so
    the splits share no sentence, and the test set for a seed does not depend on the train size.
    """
    for split, count in counts.items():
        if split not in SPLITS:
            raise ValueError(f"split_pairs: unknown split {split!r}; splits are {SPLITS}")
        if count < 0:
            raise ValueError(f"split_pairs: count for {split!r} must be >= 0, got {count}")
    result: dict[str, list[SentencePair]] = {split: [] for split in counts}
    missing = sum(counts.values())
    stream = iter_pairs(seed)
    while missing:
        pair = next(stream)
        split = sentence_split(pair.en)
        if split in result and len(result[split]) < counts[split]:
            result[split].append(pair)
            missing -= 1
    return result


def vocabulary(pairs: list[SentencePair], side: str = "en") -> set[str]:
    """The distinct words of one side ("en" or "de") of `pairs`."""
    if side not in ("en", "de"):
        raise ValueError(f"vocabulary: side must be 'en' or 'de', got {side!r}")
    return {word for pair in pairs for word in getattr(pair, side).split()}
