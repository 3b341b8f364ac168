"""Audio input: decode files, bytes, file objects and arrays into mono float32 waveforms.

`load_audio` is the one way audio enters the toolkit. Files are decoded by soundfile (libsndfile:
wav, flac, ogg/vorbis/opus, NIST SPHERE, mp3 with libsndfile >= 1.1, ...); files it cannot open
(m4a/aac, or mp3 with an older libsndfile) go through librosa's audioread fallback, which needs
ffmpeg or gstreamer for those formats. Every problem with the audio itself raises `AudioError`
naming the source and the cause, so batch jobs can report and skip the item.
"""

from __future__ import annotations

import io
import math
import os
import struct
import tempfile
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional
from torch import Tensor

# Plausible sample rates: a corrupt header can claim 1 MHz (or 0 Hz), and resampling such audio
# would silently produce garbage instead of an error.
MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 384_000

# Magic bytes of containers libsndfile or ffmpeg recognise. Bytes that start with none of these
# are taken as headerless PCM16 when the caller passes `source_rate`.
_CONTAINER_MAGIC = (b"RIFF", b"RIFX", b"RF64", b"fLaC", b"OggS", b"NIST_1A", b"FORM", b".snd", b"caff", b"ID3")

# Scale that maps each integer PCM dtype onto [-1, 1).
_INT_SCALE = {np.dtype(np.int8): 2.0**7, np.dtype(np.int16): 2.0**15, np.dtype(np.int32): 2.0**31}

AudioSource = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO | np.ndarray | Tensor


class AudioError(ValueError):
    """Audio that cannot be used; the message reads "<source>: <cause>"."""


def load_audio(
    source: AudioSource,
    sample_rate: int = 16000,
    *,
    source_rate: int | None = None,
    offset: float = 0.0,
    duration: float | None = None,
) -> Tensor:
    """Decode `source` into a mono waveform at `sample_rate`.

    source: a path; bytes holding an audio file, or headerless 16-bit little-endian mono PCM when
        `source_rate` is given; a binary file object (read from its position to the end, then as
        bytes); a numpy array or torch tensor of samples, either (S,) or 2-D. A 2-D array is taken
        as (channels, samples) when shape[0] <= 8 and shape[0] < shape[1], else as (samples, channels).
        Integer arrays (int8, uint8, int16, int32) are PCM and scaled to [-1, 1).
    sample_rate: rate of the returned waveform; audio at another rate is resampled.
    source_rate: rate of headerless input (raw PCM, arrays; arrays default to `sample_rate`).
        For files it is a check: a header that disagrees raises AudioError.
    offset, duration: seconds; read only this segment (a segment running past the end is cut short).

    Returns: (S,) float32, contiguous; channels are averaged.
    """
    name = _source_name(source)
    _check_rate_argument("sample_rate", sample_rate)
    if source_rate is not None:
        _check_rate_argument("source_rate", source_rate)
    if not (math.isfinite(offset) and offset >= 0):
        raise ValueError(f"{name}: offset must be a finite number >= 0, got {offset}")
    if duration is not None and not (math.isfinite(duration) and duration > 0):
        raise ValueError(f"{name}: duration must be a positive number, got {duration}")

    if isinstance(source, (np.ndarray, Tensor)):
        rate = sample_rate if source_rate is None else source_rate
        frames = _slice_segment(_array_frames(source, name), rate, offset, duration, name)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        frames, rate = _decode_bytes(bytes(source), name, source_rate, offset, duration)
    elif isinstance(source, (str, os.PathLike)):
        frames, rate = _decode_path(Path(source), name, source_rate, offset, duration)
    elif hasattr(source, "read") and not isinstance(source, io.TextIOBase):
        frames, rate = _decode_bytes(source.read(), name, source_rate, offset, duration)
    else:
        raise TypeError(
            f"load_audio: unsupported source {type(source).__name__}; expected a path, bytes, "
            "a binary file object (opened in binary mode), a numpy array or a torch tensor"
        )
    return _to_mono_tensor(frames, rate, sample_rate, name)


def audio_duration(path: str | os.PathLike) -> float:
    """Duration in seconds of the audio file at `path`, read from its header (the audio is not decoded)."""
    path = Path(path)
    name = str(path)
    _check_file(path, name)
    try:
        info = sf.info(str(path))
    except sf.SoundFileError as exc:
        return _librosa_duration(path, name, _explain_unreadable(path, name, exc))
    _check_header_rate(info.samplerate, name)
    if info.frames <= 0:
        raise AudioError(f"{name}: contains no audio samples (0 frames)")
    return info.frames / info.samplerate


def resample(wave: Tensor, orig_rate: int, new_rate: int) -> Tensor:
    """Resample (..., S) to (..., ceil(S * new_rate / orig_rate)) with a windowed-sinc filter."""
    for label, rate in (("orig_rate", orig_rate), ("new_rate", new_rate)):
        if int(rate) != rate or rate <= 0:
            raise ValueError(f"resample: {label} must be a positive integer, got {rate}")
    if orig_rate == new_rate:
        return wave
    return torchaudio.functional.resample(wave, int(orig_rate), int(new_rate))


# --- sources ---------------------------------------------------------------------------------


def _source_name(source: object) -> str:
    """How error messages name a source: its path, or a placeholder for in-memory data."""
    if isinstance(source, (str, os.PathLike)):
        return os.fsdecode(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    if isinstance(source, (np.ndarray, Tensor)):
        return "<array>"
    # A file object from open() knows its path, which is more useful to the reader than a placeholder.
    file_name = getattr(source, "name", None)
    return file_name if isinstance(file_name, str) else "<file object>"


def _decode_path(
    path: Path, name: str, source_rate: int | None, offset: float, duration: float | None
) -> tuple[np.ndarray, int]:
    """Decode a file; returns (frames (S, C) float32, rate)."""
    _check_file(path, name)
    try:
        sound = sf.SoundFile(str(path))
    except sf.SoundFileError as exc:
        reason = _explain_unreadable(path, name, exc)
        frames, rate = _librosa_load(path, name, reason, offset, duration)
        _check_claimed_rate(rate, source_rate, name)
        return frames, rate
    return _read_segment(sound, name, source_rate, offset, duration)


def _decode_bytes(
    data: bytes, name: str, source_rate: int | None, offset: float, duration: float | None
) -> tuple[np.ndarray, int]:
    """Decode an in-memory file, or headerless PCM16 when `source_rate` is given."""
    if not data:
        raise AudioError(f"{name}: no data (0 bytes)")
    is_container = data.startswith(_CONTAINER_MAGIC) or data[4:8] == b"ftyp"  # ftyp: mp4/m4a
    if source_rate is not None and not is_container:
        return _slice_segment(_pcm16_frames(data, name), source_rate, offset, duration, name), source_rate
    try:
        sound = sf.SoundFile(io.BytesIO(data))
    except sf.SoundFileError as exc:
        reason = _header_problem(io.BytesIO(data))
        if reason is not None:
            raise AudioError(f"{name}: {reason}") from None
        if not is_container:
            raise AudioError(
                f"{name}: not a recognised audio format ({_libsndfile_reason(exc)}); "
                "for headerless 16-bit PCM pass source_rate"
            ) from None
        # audioread decodes only files: spill to disk so m4a & co. get the same fallback as paths.
        with tempfile.TemporaryDirectory() as tmp:
            spilled = Path(tmp) / "audio"
            spilled.write_bytes(data)
            frames, rate = _librosa_load(spilled, name, _libsndfile_reason(exc), offset, duration)
        _check_claimed_rate(rate, source_rate, name)
        return frames, rate
    return _read_segment(sound, name, source_rate, offset, duration)


def _pcm16_frames(data: bytes, name: str) -> np.ndarray:
    """Headerless 16-bit little-endian mono PCM -> (S, 1) float32."""
    if len(data) % 2:
        raise AudioError(f"{name}: raw PCM16 data has an odd number of bytes ({len(data)}); expected 2 per sample")
    return (np.frombuffer(data, dtype="<i2").astype(np.float32) / 2.0**15)[:, None]


def _array_frames(array: np.ndarray | Tensor, name: str) -> np.ndarray:
    """(S,) or 2-D samples -> (S, C) float32, always a copy (the result never aliases the caller's data)."""
    if isinstance(array, Tensor):
        tensor = array.detach().cpu()
        # numpy has no bfloat16, and half precision gains nothing over float32 here.
        array = (tensor.float() if tensor.dtype in (torch.bfloat16, torch.float16) else tensor).numpy()
    if array.ndim == 1:
        frames = array[:, None]
    elif array.ndim == 2:
        # Audio has few channels and many samples, so a short first axis means channels-first.
        channels_first = array.shape[0] <= 8 and array.shape[0] < array.shape[1]
        frames = array.T if channels_first else array
    else:
        raise AudioError(f"{name}: expected a 1-D (samples) or 2-D (channels, samples) array, got shape {array.shape}")
    if frames.dtype.kind == "f":
        return frames.astype(np.float32)
    if frames.dtype == np.uint8:  # 8-bit PCM is unsigned, centred on 128
        return (frames.astype(np.float32) - 128.0) / 128.0
    if frames.dtype in _INT_SCALE:
        return frames.astype(np.float32) / _INT_SCALE[frames.dtype]
    raise AudioError(
        f"{name}: unsupported sample dtype {frames.dtype}; pass floats in [-1, 1] or int8/uint8/int16/int32 PCM"
    )


# --- soundfile -------------------------------------------------------------------------------


def _read_segment(
    sound: sf.SoundFile, name: str, source_rate: int | None, offset: float, duration: float | None
) -> tuple[np.ndarray, int]:
    """Read [offset, offset + duration) from an open file; returns (frames (S, C) float32, rate)."""
    with sound:
        rate = sound.samplerate
        _check_header_rate(rate, name)
        _check_claimed_rate(rate, source_rate, name)
        start, stop = _segment_bounds(sound.frames, rate, offset, duration, name)
        try:
            if start:
                sound.seek(start)  # decode only the segment, not the whole recording
            frames = sound.read(stop - start, dtype="float32", always_2d=True)
        except sf.SoundFileError as exc:
            raise AudioError(
                f"{name}: decoding failed ({_libsndfile_reason(exc)}); the file is probably truncated or corrupt"
            ) from None
    return frames, rate


def _libsndfile_reason(exc: sf.SoundFileError) -> str:
    reason = str(getattr(exc, "error_string", "") or "").removeprefix("Error : ").strip()
    return reason or "unrecognised format or corrupt header"


def _check_file(path: Path, name: str) -> None:
    """Raise AudioError unless `path` is a readable, non-empty file."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise AudioError(f"{name}: audio file not found") from None
    except OSError as exc:
        raise AudioError(f"{name}: cannot access the file ({exc.strerror})") from None
    if path.is_dir():
        raise AudioError(f"{name}: is a directory, not an audio file")
    if size == 0:
        raise AudioError(f"{name}: the file is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise AudioError(f"{name}: the file is not readable (permission denied)")


def _explain_unreadable(path: Path, name: str, exc: sf.SoundFileError) -> str:
    """Why libsndfile could not open `path`: raises AudioError for a corrupt WAV/SPHERE header,
    else returns libsndfile's reason for the message of the fallback decoder."""
    with open(path, "rb") as stream:
        problem = _header_problem(stream)
    if problem is not None:
        raise AudioError(f"{name}: {problem}") from None
    return _libsndfile_reason(exc)


def _header_problem(stream: BinaryIO) -> str | None:
    """What is wrong with a WAV or NIST SPHERE header libsndfile refused; None for other formats."""
    head = stream.read(12)
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        problem = _riff_problem(stream)
        return None if problem is None else f"corrupt WAV header: {problem}"
    if head.startswith(b"NIST_1A"):
        stream.seek(0)
        return _sphere_problem(stream.read(1024))
    return None


def _riff_problem(stream: BinaryIO) -> str | None:
    """Walk the RIFF chunks up to 'data'; the first inconsistency, or None when the layout is sound."""
    size = stream.seek(0, io.SEEK_END)
    position, seen = 12, set()
    while position + 8 <= size:
        stream.seek(position)
        chunk_id, chunk_size = struct.unpack("<4sI", stream.read(8))
        label = chunk_id.decode("latin-1")
        if chunk_id == b"data":
            # The data chunk may run past the end (a truncated file): libsndfile reads what is there.
            return None if b"fmt " in seen else "the 'data' chunk comes before the 'fmt ' chunk"
        if position + 8 + chunk_size > size:
            return (
                f"chunk {label!r} at byte {position} claims {chunk_size} bytes "
                f"but only {size - position - 8} follow (file size {size} bytes)"
            )
        if chunk_id == b"fmt ":
            stream.seek(position + 8)
            fmt = stream.read(chunk_size)
            if chunk_size < 16:
                return f"the 'fmt ' chunk is {chunk_size} bytes long, expected at least 16"
            channels, rate = struct.unpack("<HI", fmt[2:8])
            if channels == 0 or rate == 0:
                return f"the 'fmt ' chunk declares {channels} channels at {rate} Hz"
        seen.add(chunk_id)
        position += 8 + chunk_size + (chunk_size & 1)  # chunks are padded to even sizes
    missing = "'fmt '" if b"fmt " not in seen else "'data'"
    return f"no {missing} chunk before the end of the file (file size {size} bytes)"


def _sphere_problem(header: bytes) -> str | None:
    """NIST SPHERE compressed with shorten/wavpack, which libsndfile does not decode."""
    for line in header.decode("latin-1").splitlines():
        key, _, value = line.partition(" ")
        if key == "sample_coding":
            coding = value.split(" ", 1)[-1].strip()
            if any(codec in coding for codec in ("shorten", "wavpack", "shortpack")):
                return (
                    f"NIST SPHERE data is compressed ({coding!r}), which libsndfile cannot decode; "
                    "convert it first, e.g. `sph2pipe -f wav in.sph out.wav`"
                )
    return None


# --- librosa / audioread fallback ------------------------------------------------------------


def _librosa_load(
    path: Path, name: str, soundfile_reason: str, offset: float, duration: float | None
) -> tuple[np.ndarray, int]:
    """Decode with librosa (audioread: ffmpeg/gstreamer/...); returns (frames (S, C) float32, rate)."""
    import librosa  # imported here: it pulls in scipy & numba, which only this rare path needs

    with warnings.catch_warnings():
        # librosa warns about every audioread fallback; the outcome is reported through AudioError.
        warnings.simplefilter("ignore")
        try:
            samples, rate = librosa.load(
                str(path), sr=None, mono=False, offset=offset, duration=duration, dtype=np.float32
            )
        except Exception as exc:  # decoders raise anything from EOFError to NoBackendError
            raise AudioError(_undecodable_message(name, soundfile_reason, exc)) from None
    rate = int(rate)
    _check_header_rate(rate, name)
    if samples.size == 0 and offset > 0:  # audioread backends return nothing past the end
        raise AudioError(f"{name}: offset {offset:g} s is beyond the end of the audio")
    return (samples.T if samples.ndim == 2 else samples[:, None]), rate


def _librosa_duration(path: Path, name: str, soundfile_reason: str) -> float:
    import librosa

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            seconds = float(librosa.get_duration(path=str(path)))
        except Exception as exc:  # see _librosa_load
            raise AudioError(_undecodable_message(name, soundfile_reason, exc)) from None
    if seconds <= 0:
        raise AudioError(f"{name}: contains no audio samples")
    return seconds


def _undecodable_message(name: str, soundfile_reason: str, exc: Exception) -> str:
    audioread_reason = str(exc) or type(exc).__name__
    if type(exc).__name__ == "NoBackendError":
        audioread_reason = "no audioread backend can decode it (install ffmpeg for mp3/m4a/aac)"
    return f"{name}: cannot decode audio (soundfile: {soundfile_reason}; audioread: {audioread_reason})"


# --- checks and the common finish ------------------------------------------------------------


def _check_rate_argument(label: str, rate: int) -> None:
    if isinstance(rate, bool) or int(rate) != rate or not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise ValueError(f"{label} must be an integer in [{MIN_SAMPLE_RATE}, {MAX_SAMPLE_RATE}] Hz, got {rate}")


def _check_header_rate(rate: int, name: str) -> None:
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioError(
            f"{name}: implausible sample rate {rate} Hz in the header "
            f"(expected {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz); the header is probably corrupt"
        )


def _check_claimed_rate(rate: int, source_rate: int | None, name: str) -> None:
    if source_rate is not None and source_rate != rate:
        raise AudioError(f"{name}: the file is {rate} Hz but source_rate={source_rate} was passed")


def _segment_bounds(total: int, rate: int, offset: float, duration: float | None, name: str) -> tuple[int, int]:
    """[start, stop) frame indices of the segment in audio of `total` frames."""
    if total <= 0:
        raise AudioError(f"{name}: contains no audio samples")
    start = round(offset * rate)
    if start >= total and offset > 0:
        raise AudioError(f"{name}: offset {offset:g} s is beyond the end of the audio ({total / rate:.3f} s)")
    stop = total if duration is None else min(total, start + round(duration * rate))
    return start, stop


def _slice_segment(frames: np.ndarray, rate: int, offset: float, duration: float | None, name: str) -> np.ndarray:
    start, stop = _segment_bounds(len(frames), rate, offset, duration, name)
    return frames[start:stop]


def _to_mono_tensor(frames: np.ndarray, rate: int, sample_rate: int, name: str) -> Tensor:
    """(S, C) float32 at `rate` -> (S',) float32 at `sample_rate`, refusing empty or non-finite audio."""
    if frames.size == 0:
        raise AudioError(f"{name}: contains no audio samples")
    finite = np.isfinite(frames)
    if not finite.all():
        bad = frames.size - int(finite.sum())
        raise AudioError(f"{name}: contains {bad} non-finite samples (NaN or inf)")
    mono = frames.mean(axis=1, dtype=np.float32) if frames.shape[1] > 1 else frames[:, 0]
    wave = resample(torch.from_numpy(np.ascontiguousarray(mono)), rate, sample_rate)
    return wave.contiguous()
