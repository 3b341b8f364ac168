"""Reading dictionaries in the dictd format (RFC 2229 servers): a `.index` and a `.dict.dz` (or `.dict`).

    index = read_index("/usr/share/dictd/freedict-eng-deu.index")
    data = read_dict_data("/usr/share/dictd/freedict-eng-deu.dict.dz")
    for entry in iter_entries(index, data):
        print(entry.headword, entry.text)

The index has one line per headword: `headword TAB offset TAB length`, where offset and length
are byte positions in the uncompressed dictionary, written as numbers in dictd's base 64 (digits
"A".."Z", "a".."z", "0".."9", "+", "/", most significant first, no padding). Headwords are
normalised for lookup (lower case, punctuation dropped, possibly empty) and several of them may
point at the same entry. The `.dict.dz` is dictzip: a gzip file whose header carries a chunk
table for random access. Gzip readers ignore that table, and reading the whole file is what
extracting from every entry needs anyway, so it is decompressed in one go.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

DICTD_BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_DIGITS = {c: i for i, c in enumerate(DICTD_BASE64)}


class DictdError(ValueError):
    """A malformed dictd file; the message names the file (and line) and what is wrong."""


@dataclass(frozen=True)
class IndexEntry:
    """One index line: `headword` is at bytes offset..offset+length of the dictionary (line `line`)."""

    headword: str
    offset: int
    length: int
    line: int


@dataclass(frozen=True)
class Entry:
    """A dictionary entry's text and the first index line (headword, line number) that points at it."""

    headword: str
    line: int
    offset: int
    text: str


def decode_number(text: str) -> int:
    """A number written in dictd's base 64, e.g. "B8" -> 60. ValueError names a bad character."""
    if not text:
        raise ValueError("empty number")
    value = 0
    for char in text:
        digit = _DIGITS.get(char)
        if digit is None:
            raise ValueError(f"bad character {char!r} in {text!r}")
        value = value * 64 + digit
    return value


def read_index(path: str | os.PathLike) -> list[IndexEntry]:
    """The lines of a dictd `.index` file, in file order. DictdError names the line that is malformed."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise DictdError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    entries = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) != 3:
            raise DictdError(f"{path}:{number}: expected 'headword<TAB>offset<TAB>length', "
                             f"got {len(fields)} tab-separated fields: {line[:80]!r}")
        try:
            offset, length = decode_number(fields[1]), decode_number(fields[2])
        except ValueError as error:
            raise DictdError(f"{path}:{number}: offset/length are not dictd base64 numbers: {error}") from None
        entries.append(IndexEntry(fields[0], offset, length, number))
    if not entries:
        raise DictdError(f"{path}: the index is empty")
    return entries


def read_dict_data(path: str | os.PathLike) -> bytes:
    """The uncompressed bytes of a dictd dictionary: `.dict.dz` (dictzip/gzip) or plain `.dict`."""
    path = Path(path)
    raw = path.read_bytes()
    if not path.name.endswith(".dz"):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:  # BadGzipFile is an OSError
        raise DictdError(f"{path}: not a valid dictzip (gzip) file: {error}") from None


def iter_entries(index: Sequence[IndexEntry], data: bytes, *, index_path: str | os.PathLike = "index",
                 skip_prefix: str = "00database") -> Iterator[Entry]:
    """Each distinct entry once, in dictionary order, decoded as UTF-8.

    Headwords starting with `skip_prefix` are dictd's metadata (00databaseinfo, 00databaseshort,
    ...), not entries. DictdError names the index line of an entry that lies outside `data` or
    is not UTF-8: the index and the dictionary do not belong together.
    """
    spans: dict[int, IndexEntry] = {}
    for item in index:
        if item.headword.startswith(skip_prefix):
            continue
        if item.offset + item.length > len(data):
            raise DictdError(f"{index_path}:{item.line}: entry {item.headword!r} at bytes {item.offset}.."
                             f"{item.offset + item.length} lies outside the dictionary ({len(data)} bytes "
                             "uncompressed); the index does not belong to this dictionary")
        first = spans.get(item.offset)
        if first is None or item.line < first.line:
            spans[item.offset] = item
    for offset in sorted(spans):
        item = spans[offset]
        try:
            text = data[offset:offset + item.length].decode("utf-8")
        except UnicodeDecodeError as error:
            raise DictdError(f"{index_path}:{item.line}: entry {item.headword!r} is not UTF-8 "
                             f"({error.reason} at byte {offset + error.start} of the dictionary)") from None
        yield Entry(item.headword, item.line, offset, text)
