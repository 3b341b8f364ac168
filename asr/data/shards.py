"""Tar shards (WebDataset-style): many utterances per file, for corpora of thousands of hours.

A shard directory holds `shard-000000.tar`, `shard-000001.tar`, ... and the index `shards.json`.
Each utterance is two consecutive tar members named by its key (the utterance id with ".", "/"
and "%" percent-escaped, so that the key is everything before the first dot, as in WebDataset):

    <key>.json    {"id", "text", "duration", and "speaker", "lang", "target_text", "target_lang" when set}
    <key>.flac    the audio (or <key>.wav)

Audio is stored as the original file's bytes when the utterance is a whole wav or flac file
(audio_format="auto"), and otherwise as FLAC: segments (manifest `offset`, e.g. TED-LIUM and MuST-C)
are cut first, and other formats (mp3, sph, ...) are re-encoded. The index lists every shard with
its utterance count, seconds, size and the duration of each utterance in member order, so that a
streaming reader can plan its batches (asr.data.stream.ShardDataset) without opening a shard.

Shards and index are written atomically, and the index last: a directory with an index is complete.

    index = write_shards(read_manifest("data/train.jsonl"), "data/train_shards", shard_size_mb=256)
    for sample in read_shard(index.shards[0].path, expected=index.shards[0].num_utts): ...
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import math
import os
import random
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import numpy as np
import soundfile as sf
from torch import Tensor
from tqdm import tqdm

from asr.audio import AudioError, load_audio
from asr.data.manifest import Utterance
from asr.fileio import atomic_write, write_json

logger = logging.getLogger(__name__)

INDEX_NAME = "shards.json"
FORMAT = "asr-shards"
VERSION = 1
AUDIO_FORMATS = ("auto", "flac")  # auto: original wav/flac bytes where possible, else FLAC
AUDIO_EXTENSIONS = ("flac", "wav")
DEFAULT_SHARD_MB = 256.0
_WHOLE_FILE_TOLERANCE = 1e-3  # seconds: a manifest duration this close to the file's is the whole file
_META_FIELDS = ("speaker", "lang", "target_text", "target_lang")


class ShardError(ValueError):
    """A shard directory or index that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class ShardInfo:
    """One shard file, as the index describes it."""

    path: Path
    num_utts: int
    seconds: float
    bytes: int
    durations: tuple[float, ...]  # of its utterances, in member order


@dataclass(frozen=True)
class ShardIndex:
    """The contents of shards.json (shard paths resolved against its folder)."""

    path: Path
    shards: tuple[ShardInfo, ...]
    num_translated: int  # utterances with a target_text
    skipped: tuple[str, ...] = ()  # ids the writer left out (unreadable audio)

    @property
    def num_utts(self) -> int:
        return sum(s.num_utts for s in self.shards)

    @property
    def total_seconds(self) -> float:
        return sum(s.seconds for s in self.shards)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ShardIndex:
        """Read shards.json (or the shards.json in folder `path`); checks that every shard file exists."""
        path = Path(path)
        if path.is_dir():
            path = path / INDEX_NAME
        if not path.is_file():
            raise ShardError(f"{path}: no shard index; write shards with asr-shard (an interrupted asr-shard "
                             "leaves no index)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ShardError(f"{path}: not a readable JSON shard index ({e})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
            raise ShardError(f"{path}: not a shard index (expected format {FORMAT!r}, version {VERSION})")
        shards = []
        for i, entry in enumerate(data.get("shards", [])):
            try:
                durations = tuple(float(d) for d in entry["durations"])
                info = ShardInfo(path.parent / entry["path"], int(entry["num_utts"]), float(entry["seconds"]),
                                 int(entry["bytes"]), durations)
            except (KeyError, TypeError, ValueError) as e:
                raise ShardError(f"{path}: shards[{i}]: malformed entry ({type(e).__name__}: {e})") from None
            if len(durations) != info.num_utts or not all(d > 0 for d in durations):
                raise ShardError(f"{path}: shards[{i}] ({entry['path']}): {len(durations)} durations for "
                                 f"{info.num_utts} utterances, or a duration <= 0")
            shards.append(info)
        if not shards:
            raise ShardError(f"{path}: the index lists no shards")
        missing = [str(s.path) for s in shards if not s.path.is_file()]
        if missing:
            raise ShardError(f"{path}: {len(missing)} shard file(s) missing: {', '.join(missing[:10])}"
                             + (" ..." if len(missing) > 10 else ""))
        return cls(path, tuple(shards), int(data.get("num_translated", 0)), tuple(data.get("skipped", ())))


@dataclass(frozen=True)
class ShardSample:
    """One utterance read from a shard: its metadata and its encoded audio."""

    shard: Path
    key: str
    utterance: Utterance  # audio = "<shard path>#<key>" (for messages), offset 0
    audio: bytes
    audio_ext: str


def shard_key(utt_id: str) -> str:
    """The member name stem of an utterance: its id with "%", "/", "." and other unsafe characters escaped."""
    return quote(utt_id, safe="-_~+=,@!()[]{}:;'").replace(".", "%2E")


# --- writing ------------------------------------------------------------------------------------


def write_shards(
    utterances: Iterable[Utterance],
    out_dir: str | os.PathLike,
    *,
    shard_size_mb: float | None = None,
    utts_per_shard: int | None = None,
    audio_format: str = "auto",
    sample_rate: int | None = None,
    shuffle_seed: int | None = 0,
    overwrite: bool = False,
    progress: bool = False,
) -> ShardIndex:
    """Write `utterances` into tar shards in `out_dir`, then the index; returns the index.

    Shards close after `utts_per_shard` utterances or once they reach `shard_size_mb` (default
    256 MB when neither is given). shuffle_seed: shuffle the utterances before writing (so that
    every shard mixes speakers and lengths and a shard's first utterances are a random sample);
    None keeps the given order. sample_rate: store all audio at this rate (FLAC), which saves
    resampling in every epoch. Utterances whose audio cannot be read are reported, skipped and
    listed in the index. An existing shard directory is an error unless overwrite=True.
    """
    if shard_size_mb is not None and utts_per_shard is not None:
        raise ValueError("write_shards: give shard_size_mb or utts_per_shard, not both")
    if shard_size_mb is not None and not shard_size_mb > 0:
        raise ValueError(f"write_shards: shard_size_mb must be positive, got {shard_size_mb}")
    if utts_per_shard is not None and utts_per_shard < 1:
        raise ValueError(f"write_shards: utts_per_shard must be >= 1, got {utts_per_shard}")
    if audio_format not in AUDIO_FORMATS:
        raise ValueError(f"write_shards: audio_format must be one of {AUDIO_FORMATS}, got {audio_format!r}")
    if sample_rate is not None and sample_rate < 1000:
        raise ValueError(f"write_shards: implausible sample_rate {sample_rate}")
    max_bytes = math.inf if utts_per_shard else (shard_size_mb or DEFAULT_SHARD_MB) * 1e6
    max_utts = utts_per_shard or math.inf
    utts = list(utterances)
    seen: set[str] = set()
    duplicates = [u.id for u in utts if u.id in seen or seen.add(u.id)]
    if duplicates:
        raise ValueError(f"write_shards: duplicate utterance ids {duplicates[:10]}")
    if not utts:
        raise ValueError("write_shards: no utterances")
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(utts)

    out = Path(out_dir)
    index_path = out / INDEX_NAME
    old_files: list[Path] = []
    if index_path.exists():
        if not overwrite:
            raise FileExistsError(f"{index_path}: shards exist already; pass overwrite=True (asr-shard --overwrite) "
                                  "to replace them")
        old_files = [out / s["path"] for s in _read_json(index_path).get("shards", []) if "path" in s]
        index_path.unlink()  # from here on the folder has no index: it is incomplete until the new one is written
    out.mkdir(parents=True, exist_ok=True)

    skipped: list[str] = []
    encoded = _encoded(utts, audio_format, sample_rate, skipped, progress)
    pending = next(encoded, None)
    entries: list[dict[str, Any]] = []
    while pending is not None:
        name = f"shard-{len(entries):06d}.tar"
        durations: list[float] = []

        def fill(f: IO[bytes], durations: list[float] = durations) -> None:
            nonlocal pending
            with tarfile.open(fileobj=f, mode="w", format=tarfile.USTAR_FORMAT) as tar:
                while pending is not None and len(durations) < max_utts and f.tell() < max_bytes:
                    utt, audio, ext = pending
                    meta = {"id": utt.id, "text": utt.text, "duration": round(utt.duration, 6)}
                    meta.update({k: getattr(utt, k) for k in _META_FIELDS if getattr(utt, k) is not None})
                    key = shard_key(utt.id)
                    _add_member(tar, f"{key}.json", json.dumps(meta, ensure_ascii=False).encode("utf-8"))
                    _add_member(tar, f"{key}.{ext}", audio)
                    durations.append(meta["duration"])
                    pending = next(encoded, None)

        atomic_write(out / name, fill)
        entries.append({"path": name, "num_utts": len(durations), "seconds": round(sum(durations), 3),
                        "bytes": (out / name).stat().st_size, "durations": durations})
    if not entries:
        raise ValueError(f"write_shards: none of the {len(utts)} utterances could be read (first: {skipped[:3]})")
    left_out = set(skipped)
    num_translated = sum(1 for u in utts if u.target_text is not None and u.id not in left_out)
    write_json(index_path, {
        "format": FORMAT, "version": VERSION, "num_shards": len(entries),
        "num_utts": sum(e["num_utts"] for e in entries), "total_seconds": round(sum(e["seconds"] for e in entries), 3),
        "num_translated": num_translated, "audio_format": audio_format, "sample_rate": sample_rate,
        "skipped": skipped, "shards": entries,
    })
    written = {out / e["path"] for e in entries}
    for stale in old_files:
        if stale not in written and stale.name.startswith("shard-") and stale.suffix == ".tar":
            stale.unlink(missing_ok=True)
    return ShardIndex.load(index_path)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0  # reproducible archives
    tar.addfile(info, io.BytesIO(data))


def _encoded(utts: list[Utterance], audio_format: str, sample_rate: int | None, skipped: list[str],
             progress: bool) -> Iterator[tuple[Utterance, bytes, str]]:
    """(utterance, audio bytes, extension) for each readable utterance; the others are reported and skipped."""
    for utt in tqdm(utts, desc="shards", unit="utt", disable=not progress):
        try:
            audio, ext = encode_audio(utt, audio_format, sample_rate)
        except (AudioError, OSError, RuntimeError, sf.SoundFileError) as e:
            logger.warning("asr-shard: utterance %r (%s): %s; skipped", utt.id, utt.audio, e)
            skipped.append(utt.id)
            continue
        yield utt, audio, ext


def encode_audio(utt: Utterance, audio_format: str = "auto", sample_rate: int | None = None) -> tuple[bytes, str]:
    """The bytes and extension a shard stores for `utt`: the file itself when it is a whole wav/flac file
    (audio_format "auto", at `sample_rate` if one is given), else its segment as FLAC."""
    path = Path(utt.audio)
    ext = path.suffix.lower().lstrip(".")
    try:
        info = sf.info(str(path))
        native_rate, subtype, file_seconds = info.samplerate, info.subtype, info.frames / info.samplerate
    except (sf.SoundFileError, RuntimeError):  # a format libsndfile cannot read; load_audio falls back to librosa
        native_rate, subtype, file_seconds = sample_rate or 16000, "PCM_16", math.nan
    whole = utt.offset == 0 and utt.duration >= file_seconds - _WHOLE_FILE_TOLERANCE
    if audio_format == "auto" and ext in AUDIO_EXTENSIONS and whole and sample_rate in (None, native_rate):
        return path.read_bytes(), ext
    rate = sample_rate or native_rate
    wave = load_audio(path, sample_rate=rate, offset=utt.offset, duration=utt.duration)
    return encode_flac(wave, rate, high_resolution=subtype in ("PCM_24", "PCM_32", "FLOAT", "DOUBLE")), "flac"


def encode_flac(wave: Tensor, sample_rate: int, *, high_resolution: bool = False) -> bytes:
    """A mono waveform (S,) in [-1, 1] -> FLAC bytes (16-bit, or 24-bit with high_resolution)."""
    samples = np.clip(wave.detach().cpu().numpy().astype(np.float32), -1.0, 1.0 - 2.0**-23)
    buffer = io.BytesIO()
    sf.write(buffer, samples, sample_rate, format="FLAC", subtype="PCM_24" if high_resolution else "PCM_16")
    return buffer.getvalue()


# --- reading ------------------------------------------------------------------------------------


def read_shard(path: str | os.PathLike, *, expected: int | None = None) -> Iterator[ShardSample]:
    """The utterances of one shard, in member order, read sequentially (the file is never seeked).

    Bad members are reported (logging, naming the shard and key) and skipped: a key without its
    .json or audio member, or with unreadable metadata. A truncated or corrupt archive ends the
    shard with a report naming the last key read; `expected` (the index's count) lets a shard that
    ends early at a member boundary be reported too.
    """
    path = Path(path)
    count = 0
    key: str | None = None  # the key whose members are being collected
    parts: dict[str, bytes] = {}
    last_good: str | None = None
    try:
        with tarfile.open(str(path), mode="r|") as tar:
            for member in itertools.chain(tar, [None]):  # None: flush the last key
                if member is not None and not member.isfile():
                    continue
                stem = Path(member.name).name.partition(".")[0] if member is not None else None
                if stem != key:
                    sample = _sample(path, key, parts) if key is not None else None
                    if sample is not None:
                        count += 1
                        last_good = key
                        yield sample
                    key, parts = stem, {}
                if member is not None:
                    reader = tar.extractfile(member)
                    parts[Path(member.name).name.partition(".")[2]] = reader.read() if reader is not None else b""
    except (tarfile.TarError, EOFError, OSError) as e:
        where = f"while reading key {key!r}" if key is not None else "at its start"
        logger.warning("%s: truncated or corrupt archive %s (%s: %s); the rest of the shard is skipped "
                       "(last complete key: %r)", path, where, type(e).__name__, e, last_good)
        return
    if expected is not None and count < expected:
        logger.warning("%s: ended after %d of %d utterances (last key %r): truncated or corrupt?", path, count,
                       expected, last_good)


def _sample(path: Path, key: str, parts: dict[str, bytes]) -> ShardSample | None:
    """The sample of one key's members, or None (reported) when they are incomplete or malformed."""
    audio_ext = [ext for ext in AUDIO_EXTENSIONS if ext in parts]
    if "json" not in parts or not audio_ext:
        logger.warning("%s: key %r has members %s but needs a .json and a .flac or .wav member; skipped", path, key,
                       sorted(parts))
        return None
    try:
        meta = json.loads(parts["json"].decode("utf-8"))
        utterance = Utterance(id=meta["id"], audio=f"{path}#{key}", duration=meta["duration"], text=meta["text"],
                              **{k: meta.get(k) for k in _META_FIELDS})
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        logger.warning("%s: key %r: malformed metadata (%s: %s); skipped", path, key, type(e).__name__, e)
        return None
    return ShardSample(path, key, utterance, parts[audio_ext[0]], audio_ext[0])


def decode_sample(sample: ShardSample, sample_rate: int) -> Tensor | None:
    """The waveform (S,) of a sample at `sample_rate`, or None (reported, naming shard and key) if undecodable."""
    try:
        return load_audio(sample.audio, sample_rate=sample_rate)
    except AudioError as e:
        logger.warning("%s: key %r (utterance %r): cannot decode the audio (%s); skipped", sample.shard, sample.key,
                       sample.utterance.id, e)
        return None


def iter_waveforms(index: ShardIndex, sample_rate: int, limit: int | None = None) -> Iterator[tuple[Utterance, Tensor]]:
    """(utterance, waveform) for the first `limit` readable utterances of the shards, in index order
    (a random sample when the shards were written shuffled, e.g. for CMVN statistics)."""
    count = 0
    for shard in index.shards:
        for sample in read_shard(shard.path, expected=shard.num_utts):
            if limit is not None and count >= limit:
                return
            wave = decode_sample(sample, sample_rate)
            if wave is not None:
                count += 1
                yield sample.utterance, wave
