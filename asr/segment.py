"""Cutting long audio into segments the model can decode, with bounded memory.

Audio up to `SegmenterConfig.max_segment_s` long is decoded whole. Longer audio (minutes to hours)
is cut in one of two ways:

  * "vad": an energy-based voice activity split. The file is scanned block by block (never
    loaded whole); frames louder than an adaptive threshold are speech, a pause of at least
    `min_silence_s` ends a segment, speech shorter than `min_segment_s` is dropped, and speech
    running longer than `max_segment_s` is cut at its quietest moment.
  * "window": fixed windows of `max_segment_s` seconds overlapping by `overlap_s` seconds; the
    transcriber stitches the overlapping transcripts together.

Either way the result is a stream of `Span`s (seconds from the start of the audio); each span's
audio is read on its own when its batch is decoded, so memory depends on the block and batch
sizes, not on the length of the file.
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile as sf
from torch import Tensor

from asr.audio import AudioError, audio_duration, load_audio

SEGMENT_METHODS = ("vad", "window")

# Frame energies are floored here (dBFS), so digital silence has a finite level.
SILENCE_DB = -100.0


class Span(NamedTuple):
    """A stretch of audio: seconds from the start of the audio it was cut from."""

    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class SegmenterConfig:
    """How long audio is cut (see the module docstring).

    max_segment_s: audio up to this long is decoded whole; longer VAD segments are cut; the
        length of fixed windows.
    min_segment_s, min_silence_s, pad_s: VAD: speech shorter than min_segment_s is dropped, a
        pause of min_silence_s ends a segment, and pad_s of context is kept on either side.
    threshold_db: VAD: a fixed speech threshold in dBFS; None adapts it to the recording: in the
        history_s seconds around each block, it sits margin_db above the noise floor (the 10th
        percentile of the frame energies), or halfway between the noise floor and the loud parts
        (95th percentile) when they are closer than 2 x margin_db, yet at least min_margin_db above
        the noise floor, and never below floor_db.
    overlap_s: windows: how much consecutive windows overlap.
    block_s: how much audio is read at a time while scanning for speech.
    """

    method: str = "vad"
    max_segment_s: float = 20.0
    min_segment_s: float = 0.25
    min_silence_s: float = 0.4
    pad_s: float = 0.15
    frame_ms: float = 20.0
    threshold_db: float | None = None
    margin_db: float = 12.0
    min_margin_db: float = 6.0
    floor_db: float = -80.0
    history_s: float = 30.0
    overlap_s: float = 4.0
    block_s: float = 10.0

    def __post_init__(self) -> None:
        checks = [
            (self.method in SEGMENT_METHODS, "method", f"expected one of {SEGMENT_METHODS}"),
            (self.max_segment_s > 0, "max_segment_s", "must be > 0"),
            (0 <= self.min_segment_s < self.max_segment_s, "min_segment_s", "must be in [0, max_segment_s)"),
            (self.min_silence_s > 0, "min_silence_s", "must be > 0"),
            (0 <= self.pad_s <= self.min_silence_s / 2, "pad_s", "must be in [0, min_silence_s / 2]"),
            (0 < self.frame_ms <= 100, "frame_ms", "must be in (0, 100]"),
            (self.history_s > 0, "history_s", "must be > 0"),
            (0 <= self.overlap_s < self.max_segment_s / 2 or self.method != "window", "overlap_s",
             "must be in [0, max_segment_s / 2) for windows"),
            (self.block_s > 0, "block_s", "must be > 0"),
        ]
        for ok, name, rule in checks:
            if not ok:
                raise ValueError(f"SegmenterConfig.{name}={getattr(self, name)!r}: {rule}")


# --- audio access --------------------------------------------------------------------------------


class AudioReader(ABC):
    """Random and sequential access to one recording (or a stretch of one) without loading it whole.

    name: how errors name it. duration: seconds. rate: the rate `blocks` yields samples at.
    """

    name: str
    duration: float
    rate: int

    @abstractmethod
    def read(self, span: Span, sample_rate: int) -> Tensor:
        """The audio of `span` as a mono (S,) float32 waveform at `sample_rate`."""

    @abstractmethod
    def blocks(self, block_s: float) -> Iterator[np.ndarray]:
        """The whole audio, in order, as mono float32 arrays of at most block_s seconds at `self.rate`."""


class FileAudio(AudioReader):
    """A file libsndfile can seek in: spans are read with load_audio(offset, duration), blocks by streaming."""

    def __init__(self, path: str | os.PathLike, offset: float = 0.0, duration: float | None = None):
        self.path = Path(path)
        self.name = str(path)
        total = audio_duration(self.path)  # raises AudioError (naming the file) for bad files
        self.rate = sf.info(str(self.path)).samplerate
        self.offset = offset
        if offset >= total:
            raise AudioError(f"{self.name}: offset {offset:g} s is beyond the end of the audio ({total:.3f} s)")
        self.duration = total - offset if duration is None else min(duration, total - offset)

    def read(self, span: Span, sample_rate: int) -> Tensor:
        return load_audio(self.path, sample_rate, offset=self.offset + span.start, duration=span.duration)

    def blocks(self, block_s: float) -> Iterator[np.ndarray]:
        block = max(1, round(block_s * self.rate))
        start = round(self.offset * self.rate)
        remaining = round(self.duration * self.rate)
        try:
            with sf.SoundFile(str(self.path)) as sound:
                if start:
                    sound.seek(start)
                while remaining > 0:
                    frames = sound.read(min(block, remaining), dtype="float32", always_2d=True)
                    if len(frames) == 0:
                        return
                    remaining -= len(frames)
                    yield frames.mean(axis=1, dtype=np.float32) if frames.shape[1] > 1 else frames[:, 0]
        except (sf.SoundFileError, RuntimeError) as exc:
            raise AudioError(f"{self.name}: decoding failed while scanning for speech ({exc})") from None


class ArrayAudio(AudioReader):
    """A waveform already in memory (arrays, and files only the audioread fallback decodes)."""

    def __init__(self, wave: Tensor, rate: int, name: str = "<array>"):
        self.wave = wave
        self.rate = rate
        self.name = name
        self.duration = len(wave) / rate

    def read(self, span: Span, sample_rate: int) -> Tensor:
        start, stop = round(span.start * self.rate), round(span.end * self.rate)
        return load_audio(self.wave[start:stop], sample_rate, source_rate=self.rate)

    def blocks(self, block_s: float) -> Iterator[np.ndarray]:
        block = max(1, round(block_s * self.rate))
        samples = self.wave.numpy()
        for start in range(0, len(samples), block):
            yield samples[start : start + block]


def open_audio(source: str | os.PathLike | np.ndarray | Tensor, sample_rate: int, *, offset: float = 0.0,
               duration: float | None = None, source_rate: int | None = None) -> AudioReader:
    """An AudioReader for a path or an array (arrays at `source_rate`, default `sample_rate`).

    Files libsndfile reads are streamed; others (e.g. mp3/m4a through audioread) are decoded whole.
    Raises AudioError naming the source when it is missing, empty or corrupt.
    """
    if isinstance(source, (str, os.PathLike)):
        try:
            sf.info(os.fspath(source))
            streamable = True
        except (sf.SoundFileError, RuntimeError):
            streamable = False
        if streamable:
            return FileAudio(source, offset, duration)
        wave = load_audio(source, sample_rate, offset=offset, duration=duration)
        return ArrayAudio(wave, sample_rate, os.fspath(source))
    wave = load_audio(source, sample_rate, source_rate=source_rate, offset=offset, duration=duration)
    return ArrayAudio(wave, sample_rate)


# --- planning segments -----------------------------------------------------------------------------


def plan_segments(audio: AudioReader, config: SegmenterConfig) -> Iterator[Span]:
    """The spans to decode, in order: the whole audio when it is short, else VAD segments or windows."""
    if audio.duration <= config.max_segment_s:
        yield Span(0.0, round(audio.duration, 3))
    elif config.method == "window":
        yield from window_spans(audio.duration, config.max_segment_s, config.overlap_s)
    else:
        yield from vad_spans(audio.blocks(config.block_s), audio.rate, config)


def window_spans(duration: float, window_s: float, overlap_s: float) -> Iterator[Span]:
    """Windows of window_s seconds, each starting window_s - overlap_s after the previous, covering
    [0, duration]; the last one ends at `duration`."""
    if window_s <= 0 or not 0 <= overlap_s < window_s:
        raise ValueError(f"window_spans: need window_s > 0 and 0 <= overlap_s < window_s, got {window_s}, {overlap_s}")
    step = window_s - overlap_s
    start = 0.0
    while True:
        end = min(start + window_s, duration)
        yield Span(round(start, 3), round(end, 3))
        if end >= duration:
            return
        start += step


def frame_energies(samples: np.ndarray, frame_length: int) -> np.ndarray:
    """Mean-square energy in dBFS of consecutive frames (the last one may be shorter): (S,) -> (ceil(S / L),)."""
    count = math.ceil(len(samples) / frame_length)
    padded = np.zeros(count * frame_length, dtype=np.float64)
    padded[: len(samples)] = samples
    power = np.square(padded).reshape(count, frame_length).sum(axis=1)
    sizes = np.full(count, frame_length, dtype=np.float64)
    sizes[-1] = len(samples) - (count - 1) * frame_length
    return np.maximum(10.0 * np.log10(power / sizes + 1e-30), SILENCE_DB)


def vad_spans(blocks: Iterable[np.ndarray], rate: int, config: SegmenterConfig) -> Iterator[Span]:
    """Energy-based voice activity segmentation of a stream of mono blocks at `rate`.

    Each block's frames are judged against a threshold computed from the frame energies of the
    history_s seconds around them (half before, half after), so spans come out about history_s / 2
    after their audio was read. Memory: one block, history_s of frame energies and the frame
    energies of the open segment (at most max_segment_s of them).
    """
    frame_length = max(1, round(config.frame_ms / 1000 * rate))
    tracker = _SpeechTracker(config, frame_length / rate)
    half_window = max(1, round(config.history_s / 2 * rate / frame_length))
    past: deque[np.ndarray] = deque()  # energies of judged frames, kept as context
    pending: deque[np.ndarray] = deque()  # energies of frames waiting for context after them
    past_frames = pending_frames = samples_seen = 0
    carry = np.zeros(0, dtype=np.float32)  # samples that do not fill a whole frame yet

    def judge_oldest() -> Iterator[Span]:
        nonlocal past_frames, pending_frames
        energies = pending.popleft()
        pending_frames -= len(energies)
        context = np.concatenate([*past, energies, *pending])
        yield from tracker.push(energies, _threshold(context, config))
        past.append(energies)
        past_frames += len(energies)
        while past_frames - len(past[0]) >= half_window:
            past_frames -= len(past.popleft())

    for block in blocks:
        samples_seen += len(block)
        samples = np.concatenate([carry, np.asarray(block, dtype=np.float32)])
        whole = len(samples) // frame_length * frame_length
        carry = samples[whole:]
        if whole:
            pending.append(frame_energies(samples[:whole], frame_length))
            pending_frames += len(pending[-1])
        while pending and pending_frames - len(pending[0]) >= half_window:
            yield from judge_oldest()
    while pending:
        yield from judge_oldest()
    yield from tracker.finish(samples_seen / rate)


def _threshold(energies: np.ndarray, config: SegmenterConfig) -> float:
    """The speech threshold (dBFS) for frames in a stretch of audio whose frame energies are `energies`."""
    if config.threshold_db is not None:
        return config.threshold_db
    noise, loud = np.percentile(energies, [10, 95])
    margin = min(config.margin_db, max(config.min_margin_db, (loud - noise) / 2))
    return max(config.floor_db, noise + margin)


class _SpeechTracker:
    """The VAD state machine over frames: turns speech/non-speech frames into padded spans."""

    def __init__(self, config: SegmenterConfig, frame_s: float):
        self.config = config
        self.frame_s = frame_s
        self.min_silence = max(1, round(config.min_silence_s / frame_s))
        self.frame = 0  # index of the next frame
        self.start: int | None = None  # first frame of the open segment
        self.speech_end = 0  # one past the last speech frame of the open segment
        self.energies: list[float] = []  # energies of the open segment's frames, from `start`
        self.padded_start = 0.0  # the open segment's start time, padding included
        self.last_end = 0.0  # end time of the last span given out
        self.audio_end = 0.0  # end time of the audio, once known

    def push(self, energies: np.ndarray, threshold: float) -> Iterator[Span]:
        """The next frames: speech where their energy (dBFS) is above `threshold`."""
        speech = energies > threshold
        for energy, is_speech in zip(energies.tolist(), speech.tolist()):
            if self.start is None and is_speech:
                self.start, self.energies = self.frame, []
                self.padded_start = max(self.frame * self.frame_s - self.config.pad_s, self.last_end)
            if self.start is not None:
                self.energies.append(energy)
                if is_speech:
                    self.speech_end = self.frame + 1
                elif self.frame + 1 - self.speech_end >= self.min_silence:
                    yield from self._close()
                if self.start is not None and (self.frame + 1) * self.frame_s - self.padded_start >= \
                        self.config.max_segment_s:
                    yield from self._cut()
            self.frame += 1

    def finish(self, audio_end: float) -> Iterator[Span]:
        """The audio ended at `audio_end` seconds (a part of a frame may follow the last frame)."""
        self.audio_end = audio_end
        if self.start is not None:
            yield from self._close(at_end=True)

    def _close(self, at_end: bool = False) -> Iterator[Span]:
        """End the open segment after its last speech frame (plus padding), unless it is too short."""
        assert self.start is not None
        start, self.start = self.start, None
        if (self.speech_end - start) * self.frame_s < self.config.min_segment_s:
            return
        end = self.speech_end * self.frame_s + self.config.pad_s
        if at_end:  # elsewhere the pause that closes the segment is longer than the padding
            end = min(end, self.audio_end)
        yield from self._emit(self.padded_start, min(end, self.padded_start + self.config.max_segment_s))

    def _cut(self) -> Iterator[Span]:
        """The open segment reached max_segment_s: end it at the quietest moment of its second half."""
        assert self.start is not None
        smoothed = np.convolve(np.asarray(self.energies), np.ones(5) / 5, mode="same")
        half = len(smoothed) // 2
        kept = max(1, half + int(np.argmin(smoothed[half:])))
        cut = self.start + kept
        span_start = self.padded_start
        self.start, self.energies = cut, self.energies[kept:]
        self.padded_start = cut * self.frame_s
        yield from self._emit(span_start, cut * self.frame_s)

    def _emit(self, start: float, end: float) -> Iterator[Span]:
        span = Span(round(start, 3), round(end, 3))
        if span.end > span.start:
            self.last_end = span.end
            yield span
