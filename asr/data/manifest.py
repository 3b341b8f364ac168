"""Manifests: JSON Lines files that list the utterances of a data set, one per line.

    {"id": "1272-128104-0000", "audio": "wav/1272-128104-0000.flac", "duration": 5.855, "text": "mister quilter ..."}

Required fields: id, audio, duration (seconds), text. Optional: offset (seconds into the audio
file, for segments of long recordings), speaker, lang, target_text and target_lang (speech
translation). Relative audio paths are relative to the manifest's folder, so a data folder
can be moved as a whole.

Every line is validated when read: a typo in a field name or a bad value stops training before it
starts, with the file, line and field in the message, rather than hours into the first epoch.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path

from asr.fileio import atomic_write_text

# How many problems one error message lists before it only counts the rest.
MAX_LISTED = 20


class ManifestError(ValueError):
    """A manifest or data folder is malformed; the message names the file, line and field."""


@dataclass(frozen=True)
class Utterance:
    """One utterance: `duration` seconds of `audio` starting `offset` seconds in."""

    id: str
    audio: str
    duration: float
    text: str
    offset: float = 0.0
    speaker: str | None = None
    lang: str | None = None
    target_text: str | None = None
    target_lang: str | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            problem = _field_problem(f.name, getattr(self, f.name))
            if problem:
                raise ValueError(f"Utterance {self.id!r}: field {f.name!r}: {problem}")


REQUIRED_FIELDS = ("id", "audio", "duration", "text")
OPTIONAL_FIELDS = tuple(f.name for f in fields(Utterance) if f.name not in REQUIRED_FIELDS)
_NON_EMPTY_STRINGS = ("id", "audio")
_NUMBERS = ("duration", "offset")


def _field_problem(name: str, value: object) -> str | None:
    """What is wrong with `value` for field `name`, or None when it is fine."""
    if name in _NUMBERS:
        # bool is an int subclass; `"duration": true` is a typo, not one second.
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"expected a number, got {value!r}"
        if name == "duration" and value <= 0:
            return f"expected a positive number, got {value!r}"
        if name == "offset" and value < 0:
            return f"expected a non-negative number, got {value!r}"
        return None
    if name in REQUIRED_FIELDS:
        if not isinstance(value, str):
            return f"expected a string, got {value!r}"
        if name in _NON_EMPTY_STRINGS and not value.strip():
            return "expected a non-empty string"
        return None
    if value is not None and not isinstance(value, str):
        return f"expected a string or null, got {value!r}"
    return None


def _parse_line(line: str, folder: str) -> Utterance:
    """One manifest line -> Utterance with its audio path resolved against `folder`.

    Raises ValueError("field 'x': ...") on bad content.
    """
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"invalid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    unknown = sorted(set(record) - set(REQUIRED_FIELDS) - set(OPTIONAL_FIELDS))
    if unknown:
        raise ValueError(
            f"unknown field(s) {', '.join(map(repr, unknown))}; valid fields are "
            f"{', '.join(REQUIRED_FIELDS + OPTIONAL_FIELDS)}"
        )
    for name in REQUIRED_FIELDS:
        if name not in record:
            raise ValueError(f"field {name!r}: missing")
    for name, value in record.items():
        problem = _field_problem(name, value)
        if problem:
            raise ValueError(f"field {name!r}: {problem}")
    record["duration"] = float(record["duration"])
    record["offset"] = float(record.get("offset", 0.0))
    record["audio"] = os.path.normpath(os.path.join(folder, record["audio"]))
    return Utterance(**record)


def format_problems(problems: list[str]) -> str:
    """One indented line per problem, the first MAX_LISTED of them, then a count of the rest."""
    listed = "\n  ".join(problems[:MAX_LISTED])
    more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    return f"\n  {listed}{more}"


def read_manifest(path: str | os.PathLike, *, check_audio: bool = True) -> list[Utterance]:
    """Read and validate a JSON Lines manifest.

    Audio paths come back absolute (relative ones are resolved against the manifest's folder).
    Blank lines are ignored. Raises ManifestError naming `path:line: field ...` for bad lines
    (all bad lines are listed, up to MAX_LISTED), duplicate ids, and, when `check_audio`, one
    error listing every audio file that does not exist.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError(f"{path}: cannot read manifest: {e}") from e
    folder = os.path.abspath(path.parent)

    utterances: list[Utterance] = []
    problems: list[str] = []
    first_line: dict[str, int] = {}
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            utt = _parse_line(line, folder)
        except ValueError as e:
            problems.append(f"{path}:{lineno}: {e}")
            continue
        if utt.id in first_line:
            first = first_line[utt.id]
            problems.append(f"{path}:{lineno}: field 'id': duplicate id {utt.id!r} (first at line {first})")
            continue
        first_line[utt.id] = lineno
        utterances.append(utt)
    if len(problems) == 1:
        raise ManifestError(problems[0])
    if problems:
        raise ManifestError(f"{path}: {len(problems)} bad lines:{format_problems(problems)}")

    if check_audio:
        missing = [
            f"line {first_line[u.id]}: {u.audio} (id {u.id!r})" for u in utterances if not os.path.isfile(u.audio)
        ]
        if missing:
            raise ManifestError(
                f"{path}: {len(missing)} of {len(utterances)} audio files are missing:{format_problems(missing)}"
            )
    return utterances


def utterance_to_dict(utt: Utterance, *, relative_to: str | os.PathLike | None = None) -> dict:
    """The manifest record of `utt`: None optionals and a zero offset are left out.

    Audio under `relative_to` is written relative to it so that the folder stays movable;
    other audio paths are written absolute.
    """
    record = {f.name: getattr(utt, f.name) for f in fields(utt)}
    audio = os.path.abspath(utt.audio)
    if relative_to is not None:
        relative = os.path.relpath(audio, os.path.abspath(relative_to))
        if not relative.startswith(os.pardir):
            audio = relative
    record["audio"] = audio
    if record["offset"] == 0.0:
        del record["offset"]
    return {k: v for k, v in record.items() if v is not None}


def write_manifest(path: str | os.PathLike, utterances: Iterable[Utterance]) -> None:
    """Write `utterances` as JSON Lines to `path`, atomically.

    The file is written to a temporary file in the same folder and moved into place with
    os.replace, so a crash never leaves a half-written manifest behind. In-memory relative audio
    paths are taken as relative to the current directory (as open() would).
    """
    path = Path(path)
    folder = path.parent
    lines = []
    seen: set[str] = set()
    for utt in utterances:
        if utt.id in seen:
            raise ManifestError(f"{path}: duplicate utterance id {utt.id!r}")
        seen.add(utt.id)
        lines.append(json.dumps(utterance_to_dict(utt, relative_to=folder), ensure_ascii=False) + "\n")

    atomic_write_text(path, "".join(lines))
