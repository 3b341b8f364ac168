"""The speakers of the synth corpus: eSpeak NG English voices crossed with voice variants.

A speaker is an accent ("en-us", "en-gb-scotland", ...) with a variant ("m3", "f2", "klatt", ...),
a pitch, a pitch range and a speaking rate. The accent x variant grid is dealt out to the splits
diagonally: every accent and every variant is heard in training, but no accent+variant pair of dev
or test is, so the evaluation speakers are new combinations of formants, pitch and pronunciation
rather than the training voices at another pitch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

# English voices of espeak-ng-data/lang/gmw (en-shaw is left out: it reads the Shavian alphabet).
ACCENTS = (
    "en-us", "en", "en-gb-x-rp", "en-029", "en-gb-scotland", "en-us-nyc", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
)  # fmt: skip
# Human-sounding variants of espeak-ng-data/voices/!v (the novelty ones, "whisper", "croak",
# "Demonic", ..., are left out): male, female, and the Klatt formant synthesiser.
VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2", "klatt3", "klatt4",
)  # fmt: skip
# Diagonals of the grid that go to each held-out split: cell (accent a, variant v) is in diagonal
# (a + v) % len(ACCENTS).
HELD_OUT_DIAGONALS = {"test": 0, "dev": 4}

PITCH_RANGE = (35, 65)  # espeak pitch 0..100, 50 is the voice's own
INTONATION_RANGE = (35, 75)  # espeak "range" 0..100
RATE_RANGE = (150, 195)  # words per minute; 175 is espeak's default


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker; `id` is the eSpeak voice name, e.g. "en-us+f3"."""

    voice: str
    pitch: int
    pitch_range: int
    rate: int

    @property
    def id(self) -> str:
        return self.voice


def _spread(voice: str, salt: str, low: int, high: int) -> int:
    """A value in low..high fixed by the voice name, so a speaker sounds the same in every run."""
    digest = hashlib.sha256(f"{voice}/{salt}".encode()).digest()
    return low + int.from_bytes(digest[:4], "big") % (high - low + 1)


def _speaker(voice: str) -> Speaker:
    return Speaker(
        voice=voice,
        pitch=_spread(voice, "pitch", *PITCH_RANGE),
        pitch_range=_spread(voice, "range", *INTONATION_RANGE),
        rate=_spread(voice, "rate", *RATE_RANGE),
    )


def voice_split(accent_index: int, variant_index: int) -> str:
    """The split of grid cell (accent, variant)."""
    diagonal = (accent_index + variant_index) % len(ACCENTS)
    for split, held_out in HELD_OUT_DIAGONALS.items():
        if diagonal == held_out:
            return split
    return "train"


def speakers(split: str) -> tuple[Speaker, ...]:
    """The speakers of a split ("train", "dev" or "test"), in a fixed order."""
    if split not in ("train", "dev", "test"):
        raise ValueError(f"unknown split {split!r}; splits are train, dev, test")
    return tuple(
        _speaker(f"{accent}+{variant}")
        for a, accent in enumerate(ACCENTS)
        for v, variant in enumerate(VARIANTS)
        if voice_split(a, v) == split
    )
