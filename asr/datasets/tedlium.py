"""TED-LIUM release 3: segment manifests from the stm transcripts of the talks.

    TEDLIUM_release-3/legacy/{train,dev,test}/stm/<talk>.stm   (the legacy split; `data/` is the speaker-adaptation one)
    TEDLIUM_release-3/legacy/{train,dev,test}/sph/<talk>.sph   NIST SPHERE, 16 kHz

stm lines: `<talk> <channel> <speaker> <start> <end> [<label>] <transcript>`, times in seconds.
Lines whose transcript is `ignore_time_segment_in_scoring` (gaps between segments) are dropped.
Transcripts are cleaned as the ESPnet/Kaldi recipes do: `<unk>` and other bracketed markup are
removed, and split contractions ("it 's") are joined again ("it's").
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from asr.data import Utterance
from asr.data.manifest import ManifestError
from asr.datasets.corpus import (
    check_max_utts,
    find_corpus_dir,
    read_durations,
    read_lines,
    report_skipped,
    segment_duration,
    write_splits,
)

CORPUS = "tedlium"
SPLITS = ("train", "dev", "test")
IGNORE = "ignore_time_segment_in_scoring"
_LABEL = re.compile(r"^<[^<>]*,[^<>]*>$")  # e.g. <o,f0,male>; a transcript may start with <unk>, which has no comma
_MARKUP = re.compile(r"<[^<>]*>|\{[^{}]*\}|\[[^\[\]]*\]")
_SPLIT_CONTRACTION = re.compile(r" '(?=\w)")


def prepare_tedlium(
    out_dir: str | os.PathLike,
    root: str | os.PathLike,
    *,
    splits: tuple[str, ...] | list[str] = SPLITS,
    max_utts: int | None = None,
    progress: bool = True,
) -> dict[str, Path]:
    """Write `{split}.jsonl` for each of `splits`; returns split -> manifest path.

    root: `TEDLIUM_release-3` (its `legacy/<split>` folders are used), or a folder holding
    `<split>/stm` and `<split>/sph` directly. max_utts: keep the first this many segments of each
    split (smoke runs). Segment ids are `<talk>-<start cs>-<end cs>` (centiseconds, as in Kaldi).
    """
    check_max_utts(max_utts, CORPUS)
    result = {}
    for split in splits:
        folder = find_corpus_dir(root, (f"legacy/{split}", split), "stm", CORPUS)
        result[split] = _read_split(folder, split, max_utts, progress)
    return write_splits(out_dir, result, CORPUS)


def clean_transcript(text: str) -> str:
    """Drop <unk> and bracketed markup, join split contractions, collapse whitespace."""
    text = " ".join(_MARKUP.sub(" ", text).split())
    return _SPLIT_CONTRACTION.sub("'", text)


def _read_split(folder: Path, split: str, max_utts: int | None, progress: bool) -> list[Utterance]:
    stms = sorted((folder / "stm").glob("*.stm"))
    if not stms:
        raise FileNotFoundError(f"{CORPUS}: no .stm files in {folder / 'stm'}")
    skipped: list[str] = []
    segments: list[tuple[str, Path, float, float, str, str, str]] = []  # id, sph, start, end, text, speaker, where
    for stm in stms:
        segments += _read_stm(stm, folder / "sph", skipped)
        if max_utts is not None and len(segments) >= max_utts:
            segments = segments[:max_utts]
            break
    recordings = read_durations(sorted({seg[1] for seg in segments}), skipped, desc=f"{CORPUS} {split}",
                                progress=progress)
    utterances = []
    seen: dict[str, str] = {}
    for utt_id, sph, start, end, text, speaker, where in segments:
        if sph not in recordings:
            continue  # reported when its header could not be read
        duration = segment_duration(start, end, recordings[sph])
        if duration is None:
            skipped.append(f"{where}: segment {start}-{end} s is empty or outside its recording "
                           f"({recordings[sph]:.2f} s)")
        elif utt_id in seen:
            skipped.append(f"{where}: segment {utt_id} repeats {seen[utt_id]}")
        else:
            seen[utt_id] = where
            utterances.append(Utterance(id=utt_id, audio=str(sph.resolve()), duration=duration, text=text,
                                        offset=start, speaker=speaker, lang="en"))
    report_skipped(CORPUS, split, skipped)
    return utterances


def _read_stm(stm: Path, sph_dir: Path, skipped: list[str]) -> list[tuple[str, Path, float, float, str, str, str]]:
    segments = []
    for lineno, line in enumerate(read_lines(stm), start=1):
        if not line.strip() or line.startswith(";;"):
            continue
        where = f"{stm}:{lineno}"
        parts = line.split(maxsplit=5)
        if len(parts) < 5:
            raise ManifestError(f"{where}: expected '<talk> <channel> <speaker> <start> <end> [<label>] "
                                f"<transcript>', got {line[:200]!r}")
        talk, _, speaker, start_s, end_s = parts[:5]
        times = []
        for name, value in (("start", start_s), ("end", end_s)):
            try:
                times.append(float(value))
            except ValueError:
                raise ManifestError(f"{where}: field {name!r}: expected seconds, got {value!r}") from None
        rest = parts[5] if len(parts) > 5 else ""
        label, _, transcript = rest.partition(" ")
        if not _LABEL.match(label):
            transcript = rest
        if transcript.strip() == IGNORE:
            continue
        text = clean_transcript(transcript)
        if not text:
            skipped.append(f"{where}: empty transcript")
            continue
        start, end = times
        utt_id = f"{talk}-{round(start * 100):07d}-{round(end * 100):07d}"
        segments.append((utt_id, sph_dir / f"{talk}.sph", start, end, text, speaker, where))
    return segments
