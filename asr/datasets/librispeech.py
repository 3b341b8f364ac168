"""LibriSpeech: manifests from the corpus as downloaded from openslr.org/12.

    LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac
    LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt   "<utt id> <UPPER-CASE TEXT>" lines

Subsets: train-clean-100, train-clean-360, train-other-500 (the 100 h / 460 h / 960 h training
sets are unions of them), dev-clean, dev-other, test-clean, test-other.
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
    write_splits,
)

CORPUS = "librispeech"
TRAIN_SUBSETS = {
    100: ("train-clean-100",),
    460: ("train-clean-100", "train-clean-360"),
    960: ("train-clean-100", "train-clean-360", "train-other-500"),
}
EVAL_SUBSETS = ("dev-clean", "dev-other", "test-clean", "test-other")
_UTT_ID = re.compile(r"^(\d+)-(\d+)-\d+$")


def prepare_librispeech(
    out_dir: str | os.PathLike,
    root: str | os.PathLike,
    *,
    train_hours: int = 960,
    max_utts: int | None = None,
    progress: bool = True,
) -> dict[str, Path]:
    """Write LibriSpeech manifests under `out_dir`; returns manifest name -> path.

    root: the `LibriSpeech` folder (or the folder holding it).
    train_hours: 100, 460 or 960: which training subsets make up `train`.
    max_utts: keep only the first this many utterances of each subset (smoke runs).

    Manifests: `train`; `dev` (dev-clean + dev-other, for validation); and one per evaluation
    subset with `_` for `-`: dev_clean, dev_other, test_clean, test_other. Transcripts are
    lower-cased (the corpus writes them in capitals). Missing or unreadable audio is reported and
    skipped; a malformed transcript line is a ManifestError naming the file and line.
    """
    if train_hours not in TRAIN_SUBSETS:
        raise ValueError(f"{CORPUS}: train_hours must be one of {sorted(TRAIN_SUBSETS)}, got {train_hours}")
    check_max_utts(max_utts, CORPUS)
    train_subsets = TRAIN_SUBSETS[train_hours]
    folder = find_corpus_dir(root, ("", "LibriSpeech"), EVAL_SUBSETS[0], CORPUS)
    missing = [s for s in (*train_subsets, *EVAL_SUBSETS) if not (folder / s).is_dir()]
    if missing:
        needed = ", ".join((*train_subsets, *EVAL_SUBSETS))
        raise FileNotFoundError(f"{CORPUS}: subset folder(s) {', '.join(missing)} missing in {folder} "
                                f"(train_hours={train_hours} needs {needed})")
    subsets = {s: _read_subset(folder / s, max_utts, progress) for s in (*train_subsets, *EVAL_SUBSETS)}
    splits = {"train": [u for s in train_subsets for u in subsets[s]],
              "dev": subsets["dev-clean"] + subsets["dev-other"]}
    splits.update({s.replace("-", "_"): subsets[s] for s in EVAL_SUBSETS})
    return write_splits(out_dir, splits, CORPUS)


def _read_subset(folder: Path, max_utts: int | None, progress: bool) -> list[Utterance]:
    """The utterances of one subset folder, in the sorted order of their transcript files."""
    transcripts = sorted(folder.glob("*/*/*.trans.txt"))
    if not transcripts:
        raise FileNotFoundError(f"{CORPUS}: no <speaker>/<chapter>/*.trans.txt files in {folder}")
    entries: list[tuple[str, str, Path]] = []  # (utterance id, text, audio)
    for path in transcripts:
        entries += _read_transcript(path)
        if max_utts is not None and len(entries) >= max_utts:
            entries = entries[:max_utts]
            break
    skipped: list[str] = []
    durations = read_durations([audio for _, _, audio in entries], skipped, desc=f"{CORPUS} {folder.name}",
                               progress=progress)
    utterances = []
    for utt_id, text, audio in entries:
        if audio in durations:
            utterances.append(Utterance(id=utt_id, audio=str(audio.resolve()), duration=durations[audio], text=text,
                                        speaker=utt_id.split("-")[0], lang="en"))
    report_skipped(CORPUS, folder.name, skipped)
    return utterances


def _read_transcript(path: Path) -> list[tuple[str, str, Path]]:
    """(id, lower-cased text, flac path) for each line of a <speaker>-<chapter>.trans.txt file."""
    chapter = path.name.removesuffix(".trans.txt")
    entries = []
    for lineno, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        match = _UTT_ID.match(parts[0])
        if len(parts) < 2 or match is None:
            raise ManifestError(f"{path}:{lineno}: expected '<speaker>-<chapter>-<utterance> <TRANSCRIPT>', "
                                f"got {line[:200]!r}")
        if f"{match[1]}-{match[2]}" != chapter:
            raise ManifestError(f"{path}:{lineno}: utterance {parts[0]!r} is not from chapter {chapter}")
        entries.append((parts[0], " ".join(parts[1].lower().split()), path.parent / f"{parts[0]}.flac"))
    return entries
