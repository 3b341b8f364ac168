"""AISHELL-1 (openslr.org/33): Mandarin manifests with Chinese characters as the units.

    data_aishell/wav/{train,dev,test}/<speaker>/<utt>.wav     16 kHz (unpack wav/<speaker>.tar.gz first)
    data_aishell/transcript/aishell_transcript_v0.8.txt       "<utt> <word-segmented text>" lines

The transcript's word segmentation is removed (characters are the units and CER the metric).
Some recordings of the corpus have no transcript; they are counted and left out.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from asr.data import Utterance
from asr.data.manifest import ManifestError
from asr.datasets.corpus import (
    check_max_utts,
    find_corpus_dir,
    read_durations,
    read_lines,
    report_skipped,
    write_splits,
)

logger = logging.getLogger(__name__)

CORPUS = "aishell"
SPLITS = ("train", "dev", "test")
TRANSCRIPT = "transcript/aishell_transcript_v0.8.txt"


def prepare_aishell(
    out_dir: str | os.PathLike,
    root: str | os.PathLike,
    *,
    splits: tuple[str, ...] | list[str] = SPLITS,
    max_utts: int | None = None,
    progress: bool = True,
) -> dict[str, Path]:
    """Write `{split}.jsonl` for each of `splits`; returns split -> manifest path.

    root: `data_aishell` (or the folder holding it). max_utts: keep the first this many
    recordings of each split (smoke runs). Texts are written without spaces, e.g. "而对楼市成交".
    """
    check_max_utts(max_utts, CORPUS)
    folder = find_corpus_dir(root, ("", "data_aishell"), TRANSCRIPT, CORPUS)
    transcripts = read_transcripts(folder / TRANSCRIPT)
    result = {}
    for split in splits:
        wav_dir = folder / "wav" / split
        wavs = sorted(wav_dir.glob("*/*.wav"))
        if not wavs:
            archives = sorted((folder / "wav").glob("*.tar.gz"))
            hint = (f"; unpack the speaker archives first: for f in {folder / 'wav'}/*.tar.gz; do tar xzf $f "
                    f"-C {folder / 'wav'}; done" if archives else "")
            raise FileNotFoundError(f"{CORPUS}: no <speaker>/*.wav files in {wav_dir}{hint}")
        untranscribed = [w for w in wavs if w.stem not in transcripts]
        if untranscribed:
            logger.warning("%s %s: %d recordings have no transcript and are left out (e.g. %s)", CORPUS, split,
                           len(untranscribed), untranscribed[0].name)
        wavs = [w for w in wavs if w.stem in transcripts][:max_utts]
        skipped: list[str] = []
        durations = read_durations(wavs, skipped, desc=f"{CORPUS} {split}", progress=progress)
        result[split] = [Utterance(id=w.stem, audio=str(w.resolve()), duration=durations[w], text=transcripts[w.stem],
                                   speaker=w.parent.name, lang="zh") for w in wavs if w in durations]
        report_skipped(CORPUS, split, skipped)
    return write_splits(out_dir, result, CORPUS)


def read_transcripts(path: Path) -> dict[str, str]:
    """Utterance id -> text without spaces. A line without text or a repeated id is a ManifestError."""
    texts: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for lineno, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) < 2:
            raise ManifestError(f"{path}:{lineno}: expected '<utterance id> <text>', got {line[:200]!r}")
        utt_id, text = parts
        if utt_id in texts:
            raise ManifestError(f"{path}:{lineno}: duplicate utterance id {utt_id!r} (first at line "
                                f"{first_line[utt_id]})")
        texts[utt_id] = "".join(text.split())
        first_line[utt_id] = lineno
    return texts
