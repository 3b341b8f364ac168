"""Writing transcripts: plain text, JSON, SubRip (SRT) and WebVTT subtitles.

Every writer takes one DecodeResult and returns the file's text; `write_outputs` writes the
chosen formats next to each other (atomically), named after the input.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from asr.decode.options import DecodeResult, Segment
from asr.fileio import atomic_write_text

OUTPUT_FORMATS = ("txt", "json", "srt", "vtt")


def format_timestamp(seconds: float, decimal_marker: str = ".") -> str:
    """Seconds -> "HH:MM:SS.mmm" (SRT uses "," as the decimal marker). Hours may exceed 99."""
    if seconds < 0:
        raise ValueError(f"format_timestamp: negative time {seconds}")
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal_marker}{millis:03d}"


def _cues(result: DecodeResult) -> list[Segment]:
    """The subtitle cues: segments with text, or nothing when the audio had no speech."""
    return [s for s in result.segments if s.text.strip()]


def to_txt(result: DecodeResult) -> str:
    return result.text + "\n"


def to_json(result: DecodeResult, **extra: Any) -> str:
    """The result's fields (DecodeResult.to_dict), after `extra` fields such as the input's id."""
    return json.dumps(extra | result.to_dict(), ensure_ascii=False, indent=1) + "\n"


def to_srt(result: DecodeResult) -> str:
    """SubRip: numbered cues, "HH:MM:SS,mmm --> HH:MM:SS,mmm", a blank line after each."""
    blocks = []
    for number, segment in enumerate(_cues(result), start=1):
        start, end = format_timestamp(segment.start, ","), format_timestamp(segment.end, ",")
        # A cue ends at a blank line, so the text must not contain one.
        text = " ".join(segment.text.split())
        blocks.append(f"{number}\n{start} --> {end}\n{text}\n")
    return "\n".join(blocks)


def to_vtt(result: DecodeResult) -> str:
    """WebVTT: the "WEBVTT" header, then "HH:MM:SS.mmm --> HH:MM:SS.mmm" cues with escaped text."""
    blocks = ["WEBVTT\n"]
    for segment in _cues(result):
        start, end = format_timestamp(segment.start), format_timestamp(segment.end)
        # "&" and "<" start entities and tags in cue text; "-->" is not allowed in it at all.
        text = " ".join(segment.text.split()).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        blocks.append(f"{start} --> {end}\n{text}\n")
    return "\n".join(blocks)


WRITERS: dict[str, Callable[[DecodeResult], str]] = {"txt": to_txt, "json": to_json, "srt": to_srt, "vtt": to_vtt}


def parse_formats(spec: str | Iterable[str]) -> tuple[str, ...]:
    """"txt", "srt,vtt", "all" or a list of names -> the formats, checked."""
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [n.strip().lower() for n in names if n.strip()]
    if "all" in names:
        return OUTPUT_FORMATS
    unknown = [n for n in names if n not in WRITERS]
    if unknown or not names:
        raise ValueError(f"unknown output format(s) {unknown or names}; expected {', '.join(OUTPUT_FORMATS)} or all")
    return tuple(dict.fromkeys(names))


def output_stem(directory: str | os.PathLike, utterance_id: str) -> Path:
    """Where the outputs of `utterance_id` go (without extension); ids with "/" make sub-folders,
    and ".." or absolute parts never leave `directory`."""
    parts = [p for p in utterance_id.replace("\\", "/").split("/") if p not in ("", ".", "..")]
    return Path(directory).joinpath(*(parts or ["_"]))


def write_outputs(directory: str | os.PathLike, utterance_id: str, result: DecodeResult,
                  formats: Iterable[str]) -> list[Path]:
    """Write `result` as <directory>/<id>.<format> for each format; returns the paths written."""
    stem = output_stem(directory, utterance_id)
    written = []
    for name in formats:
        path = stem.with_name(f"{stem.name}.{name}")
        text = to_json(result, id=utterance_id) if name == "json" else WRITERS[name](result)
        atomic_write_text(path, text)
        written.append(path)
    return written
