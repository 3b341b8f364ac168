"""Pieces shared by the corpus preparers (LibriSpeech, Common Voice, TED-LIUM, AISHELL, MuST-C, CoVoST).

Every preparer reads a corpus in its official layout and writes one `{split}.jsonl` manifest per
split; the audio stays where it is and segments of long recordings are given by `offset` and
`duration`. Malformed metadata (a transcript line without text, a tsv row with the wrong number
of fields, an stm line with a bad time) raises ManifestError naming the file and line, because it
means the download is broken. Items that are well formed but unusable (missing or unreadable
audio, empty transcripts, segments outside their recording) are skipped and reported in one logged
warning per split, so that one bad file does not stop a preparation that takes an hour.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from tqdm import tqdm

from asr.audio import AudioError, audio_duration
from asr.data import Utterance, write_manifest
from asr.data.kaldi import MAX_OVERSHOOT
from asr.data.manifest import ManifestError, format_problems

logger = logging.getLogger(__name__)


def find_corpus_dir(root: str | os.PathLike, candidates: Sequence[str], marker: str, corpus: str) -> Path:
    """The first `root/candidate` (candidate "" is root itself) that holds `marker` (a file or folder).

    Lets data.root point at the corpus folder or at the folder it was unpacked into. Raises
    FileNotFoundError naming every place that was looked at.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{corpus}: data.root={root} is not a folder")
    places = [root / c if c else root for c in candidates]
    for place in places:
        if (place / marker).exists():
            return place
    looked = ", ".join(str(p / marker) for p in places)
    raise FileNotFoundError(f"{corpus}: not found under data.root={root} (looked for {looked})")


def read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file, split on newlines only.

    str.splitlines() would also split on characters such as U+2028 or U+0085 that can occur inside
    a transcript, shifting every following line.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise ManifestError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise ManifestError(f"{path}: cannot read: {e.strerror or e}") from None
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def read_tsv(path: Path, required: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    """Rows of a tab-separated file with a header line, as (line number, column -> value).

    Fields are split on tabs only, without quote processing (Common Voice sentences contain quote
    characters that csv would take as quoting). Rows may leave out trailing columns (read as
    empty) but may not have more fields than the header, which happens when a stray tab in a
    sentence shifts the columns; that, and a header without a `required` column, is a ManifestError.
    """
    lines = read_lines(path)
    if not lines:
        raise ManifestError(f"{path}: empty file, expected a header line with columns {', '.join(required)}")
    header = lines[0].split("\t")
    missing = [c for c in required if c not in header]
    if missing:
        raise ManifestError(f"{path}:1: header lacks column(s) {', '.join(missing)}; it has {', '.join(header)}")
    last_required = max(header.index(c) for c in required)
    rows = []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) > len(header) or len(fields) <= last_required:
            raise ManifestError(f"{path}:{lineno}: expected {len(header)} tab-separated fields as in the header, "
                                f"got {len(fields)}: {line[:200]!r}")
        rows.append((lineno, dict(zip(header, fields + [""] * (len(header) - len(fields))))))
    return rows


def read_durations(paths: Iterable[Path], skipped: list[str], *, desc: str, progress: bool = True) -> dict[Path, float]:
    """Seconds of each readable audio file (from its header); unreadable ones are added to `skipped`."""
    durations = {}
    for path in tqdm(list(paths), desc=desc, unit="file", disable=not progress):
        try:
            durations[path] = audio_duration(path)
        except AudioError as error:  # its message names the file and the cause
            skipped.append(str(error))
    return durations


def segment_duration(start: float, end: float, recording: float) -> float | None:
    """Duration of the segment [start, end) of a recording of `recording` seconds, or None when it
    is empty or lies outside the recording. A segment that overshoots the end by at most
    MAX_OVERSHOOT seconds (as Kaldi tolerates) is cut at the end."""
    if start < 0 or end <= start or start >= recording or end > recording + MAX_OVERSHOOT:
        return None
    return min(end, recording) - start


def report_skipped(corpus: str, split: str, skipped: list[str]) -> None:
    if skipped:
        logger.warning("%s %s: skipped %d items:%s", corpus, split, len(skipped), format_problems(skipped))


def write_splits(out_dir: str | os.PathLike, splits: dict[str, list[Utterance]], corpus: str) -> dict[str, Path]:
    """Write `{out_dir}/{name}.jsonl` for each split; returns name -> manifest path."""
    out_dir = Path(out_dir)
    manifests = {}
    for name, utterances in splits.items():
        if not utterances:
            logger.warning("%s %s: no usable utterances; the manifest is empty", corpus, name)
        manifests[name] = out_dir / f"{name}.jsonl"
        write_manifest(manifests[name], utterances)
        hours = sum(u.duration for u in utterances) / 3600
        logger.info("%s %s: %d utterances, %.2f h -> %s", corpus, name, len(utterances), hours, manifests[name])
    return manifests


def check_max_utts(max_utts: int | None, corpus: str) -> None:
    if max_utts is not None and max_utts < 1:
        raise ValueError(f"{corpus}: max_utts must be >= 1 or None (all), got {max_utts}")
