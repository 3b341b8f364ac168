"""Import Kaldi-style data folders (wav.scp, text, optional segments and utt2spk) as utterances.

    wav.scp    <recording-id> <path>             (pipes "cmd |" and ark offsets "x.ark:123" are skipped)
    text       <utterance-id> <transcript>
    segments   <utterance-id> <recording-id> <start> <end>   (seconds; end -1 = end of the recording)
    utt2spk    <utterance-id> <speaker-id>

Without `segments` every recording is one utterance with the recording's id. Relative paths in
wav.scp are relative to the current directory, as in Kaldi (recipes run from the recipe folder).

Malformed lines are errors (ManifestError naming file:line), since they mean the folder is broken.
Entries that are well formed but unusable here (pipes, ark offsets, missing or unreadable audio,
segments outside their recording, utterances without a transcript) are skipped and reported in one
logged warning that names each one's file and line, so that one bad recording does not stop the import.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from asr.audio import AudioError, audio_duration
from asr.data.manifest import ManifestError, Utterance, format_problems

logger = logging.getLogger(__name__)

# Kaldi's extract-segments tolerates segments that end this far past the recording, and cuts them.
MAX_OVERSHOOT = 0.5
_ARK_OFFSET = re.compile(r":\d+(\[[^\]]*\])?$")


def _read_table(path: Path, num_fields: int | None) -> dict[str, tuple[int, list[str]]]:
    """Key -> (line number, other fields) for a Kaldi table.

    num_fields None: "<key> <rest of line>" (the rest may contain spaces or be empty); otherwise
    exactly num_fields whitespace-separated fields.
    """
    table: dict[str, tuple[int, list[str]]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError(f"{path}: cannot read: {e}") from e
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if num_fields is None:
            parts = line.strip().split(maxsplit=1)
            values = [parts[1] if len(parts) > 1 else ""]
        else:
            parts = line.split()
            if len(parts) != num_fields:
                raise ManifestError(f"{path}:{lineno}: expected {num_fields} fields, got {len(parts)}: {line!r}")
            values = parts[1:]
        key = parts[0]
        if key in table:
            raise ManifestError(f"{path}:{lineno}: duplicate id {key!r} (first at line {table[key][0]})")
        table[key] = (lineno, values)
    return table


def _recording_durations(
    wav_scp: Path, table: dict[str, tuple[int, list[str]]], skipped: list[str]
) -> dict[str, tuple[str, float]]:
    """Recording id -> (absolute audio path, seconds) for the wav.scp entries that can be read."""
    recordings = {}
    for rec, (lineno, (value,)) in table.items():
        where = f"{wav_scp}:{lineno}: recording {rec!r}"
        if not value:
            raise ManifestError(f"{wav_scp}:{lineno}: recording {rec!r} has no audio path")
        if value.endswith("|"):
            skipped.append(f"{where}: command pipes cannot be read, convert the audio to files first")
            continue
        path = os.path.abspath(value)
        if not os.path.isfile(path) and _ARK_OFFSET.search(value):
            skipped.append(f"{where}: ark offsets cannot be read, convert the audio to files first")
            continue
        try:
            recordings[rec] = (path, audio_duration(path))
        except (AudioError, OSError) as e:
            skipped.append(f"{where}: {e}")
    return recordings


def _parse_time(value: str, segments: Path, lineno: int, name: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ManifestError(f"{segments}:{lineno}: field {name!r}: expected seconds, got {value!r}") from None


def import_kaldi_dir(data_dir: str | os.PathLike, *, lang: str | None = None) -> list[Utterance]:
    """Utterances of a Kaldi data folder, in the order of `segments` (or `wav.scp` without it).

    Every utterance gets `lang` when given. Durations come from the audio headers; for segments,
    end - start after checking that the segment lies within its recording.
    """
    data_dir = Path(data_dir)
    for required in ("wav.scp", "text"):
        if not (data_dir / required).is_file():
            raise ManifestError(f"{data_dir}: not a Kaldi data folder ({required} is missing)")
    skipped: list[str] = []
    wav_scp = data_dir / "wav.scp"
    wav_table = _read_table(wav_scp, None)
    recordings = _recording_durations(wav_scp, wav_table, skipped)
    texts = _read_table(data_dir / "text", None)
    utt2spk = _read_table(data_dir / "utt2spk", 2) if (data_dir / "utt2spk").is_file() else {}

    # (utterance id, recording id, offset, duration or None for the whole recording, where it is defined)
    spans: list[tuple[str, str, float, float | None, str]] = []
    segments = data_dir / "segments"
    has_segments = segments.is_file()
    if has_segments:
        for utt, (lineno, (rec, start_s, end_s)) in _read_table(segments, 4).items():
            start = _parse_time(start_s, segments, lineno, "start")
            end = _parse_time(end_s, segments, lineno, "end")
            if start < 0 or (end != -1 and end <= start):
                raise ManifestError(f"{segments}:{lineno}: segment {utt!r}: bad times start={start_s} end={end_s}")
            spans.append((utt, rec, start, None if end == -1 else end, f"{segments}:{lineno}"))
    else:
        spans = [(rec, rec, 0.0, None, f"{wav_scp}:{lineno}") for rec, (lineno, _) in wav_table.items()]

    utterances = []
    for utt, rec, start, end, where in spans:
        if rec not in recordings:
            # Without segments the recording was reported when it was skipped; one report is enough.
            if has_segments:
                skipped.append(f"{where}: utterance {utt!r}: recording {rec!r} is missing or was skipped")
            continue
        if utt not in texts:
            skipped.append(f"{where}: utterance {utt!r} has no transcript in {data_dir / 'text'}")
            continue
        path, rec_duration = recordings[rec]
        if end is None:
            end = rec_duration
        if start >= rec_duration or end > rec_duration + MAX_OVERSHOOT:
            skipped.append(
                f"{where}: utterance {utt!r}: segment {start}-{end} s lies outside its recording "
                f"{rec!r} ({rec_duration:.3f} s)"
            )
            continue
        end = min(end, rec_duration)
        speaker = utt2spk[utt][1][0] if utt in utt2spk else None
        utterances.append(
            Utterance(
                id=utt,
                audio=path,
                duration=round(end - start, 6),
                text=texts[utt][1][0],
                offset=start,
                speaker=speaker,
                lang=lang,
            )
        )

    with_audio = {span[0] for span in spans}
    for utt, (lineno, _) in texts.items():
        if utt not in with_audio:
            skipped.append(f"{data_dir / 'text'}:{lineno}: utterance {utt!r} has no audio entry")
    if skipped:
        logger.warning(
            "%s: imported %d utterances, skipped %d entries:%s",
            data_dir,
            len(utterances),
            len(skipped),
            format_problems(skipped),
        )
    return utterances
