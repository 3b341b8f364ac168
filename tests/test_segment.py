"""Segmentation of long audio: energy VAD on real recordings joined by pauses, forced cuts at the
maximum length, fixed windows, audio access, and memory that stays bounded on a 10-minute file."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.audio import AudioError, load_audio
from asr.segment import (
    ArrayAudio,
    FileAudio,
    SegmenterConfig,
    Span,
    frame_energies,
    open_audio,
    plan_segments,
    vad_spans,
    window_spans,
)

RATE = 16000
GAP_S = 1.5


def real_recordings(shared: Path) -> list[Path]:
    real = shared / "data" / "real"
    return sorted((real / "librispeech").glob("*.flac")) + sorted((real / "librivox").glob("*.wav"))


def make_long_recording(shared: Path, path: Path, gap_s: float = GAP_S, repeat: int = 1, scale: float = 1.0,
                        noise: float = 1e-4, subtype: str = "PCM_16") -> list[tuple[float, float]]:
    """Write real recordings separated by `gap_s` of faint noise (`noise` rms), all times `scale`,
    to `path` (16 kHz), piece by piece; returns where each recording lies (seconds)."""
    rng = np.random.default_rng(0)
    waves = [load_audio(p, RATE).numpy() for p in real_recordings(shared)]
    bounds, t = [], 0.0

    def gap() -> np.ndarray:
        return (noise * scale * rng.standard_normal(round(gap_s * RATE))).astype(np.float32)

    with sf.SoundFile(str(path), "w", RATE, 1, subtype=subtype) as out:
        for _ in range(repeat):
            for wave in waves:
                out.write(gap())
                bounds.append((t + gap_s, t + gap_s + len(wave) / RATE))
                out.write(wave * scale)
                t += gap_s + len(wave) / RATE
        out.write(gap())
    return bounds


def assert_voiced_frames_inside(path: Path, spans: list[Span], level_db: float) -> None:
    """Every frame louder than level_db lies inside a span."""
    wave, rate = sf.read(str(path), dtype="float32")
    energies = frame_energies(wave, round(0.02 * rate))
    loud = np.flatnonzero(energies > level_db) * 0.02
    inside = np.zeros(len(loud), dtype=bool)
    for span in spans:
        inside |= (loud >= span.start) & (loud + 0.02 <= span.end + 1e-6)
    assert inside.all(), loud[~inside][:10]


@pytest.fixture(scope="module")
def long_recording(shared_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("segment") / "long.wav"
    return path, make_long_recording(shared_dir, path)


def assert_spans_follow_recordings(spans: list[Span], bounds: list[tuple[float, float]], pad: float) -> None:
    assert len(spans) == len(bounds)
    for span, (start, end) in zip(spans, bounds):
        # Each span starts and ends within the recording (which has its own quiet edges) plus padding...
        assert start - pad - 0.021 <= span.start and span.end <= end + pad + 0.021, (span, start, end)
        # ...and covers most of it.
        assert span.duration >= 0.7 * (end - start), (span, start, end)
    assert all(a.end <= b.start for a, b in zip(spans, spans[1:]))


def test_vad_finds_each_recording_between_pauses(long_recording):
    path, bounds = long_recording
    config = SegmenterConfig(max_segment_s=20.0)
    spans = list(plan_segments(FileAudio(path), config))
    assert_spans_follow_recordings(spans, bounds, config.pad_s)
    assert_voiced_frames_inside(path, spans, -35.0)


def test_vad_adapts_to_the_recording_level(shared_dir, tmp_path):
    # Louder pauses (-60 dBFS): the sentences' own pauses now split them too, and a copy 30 dB
    # quieter (speech around -55 dBFS, like some FLEURS clips) is cut in the same places.
    spans = {}
    for scale in (1.0, 0.03):
        path = tmp_path / f"scaled_{scale}.wav"
        bounds = make_long_recording(shared_dir, path, scale=scale, noise=1e-3, subtype="FLOAT")
        spans[scale] = list(plan_segments(FileAudio(path), SegmenterConfig()))
        assert_voiced_frames_inside(path, spans[scale], -35.0 + 20 * np.log10(scale))
    assert len(spans[1.0]) > len(bounds)
    assert len(spans[0.03]) == len(spans[1.0])
    assert np.allclose(spans[0.03], spans[1.0], atol=0.041)


def test_long_speech_is_cut_at_max_segment_length(long_recording):
    path, bounds = long_recording
    config = SegmenterConfig(max_segment_s=4.0)
    spans = list(plan_segments(FileAudio(path), config))
    assert all(span.duration <= 4.0 + 1e-6 for span in spans)
    assert all(a.end <= b.start for a, b in zip(spans, spans[1:]))
    # The 16 s recording is split into several contiguous pieces (cut at quiet moments, no padding).
    start, end = bounds[3]
    pieces = [s for s in spans if start - 0.5 < s.start and s.end < end + 0.5]
    assert len(pieces) >= 4
    assert sum(a.end == b.start for a, b in zip(pieces, pieces[1:])) >= 3
    assert pieces[0].start <= start + 0.5 and pieces[-1].end >= end - 1.0


def test_short_blips_and_short_pauses():
    rng = np.random.default_rng(1)
    silence = lambda s: (1e-4 * rng.standard_normal(round(s * RATE))).astype(np.float32)  # noqa: E731
    tone = lambda s: (0.3 * np.sin(np.arange(round(s * RATE)) * 0.2)).astype(np.float32)  # noqa: E731
    # A 40 ms click (dropped), then 1 s of tone with a 0.2 s dip (one segment), then a pause.
    wave = np.concatenate([silence(3), tone(0.04), silence(3), tone(0.5), silence(0.2), tone(0.5), silence(3)])
    config = SegmenterConfig(max_segment_s=5.0, min_silence_s=0.4, min_segment_s=0.25, pad_s=0.1)
    spans = list(vad_spans([wave[i : i + 8000] for i in range(0, len(wave), 8000)], RATE, config))
    assert spans == [Span(6.04 - 0.1, 7.24 + 0.1)]
    # The same audio in one block, and in tiny blocks that split frames, gives the same spans.
    assert list(vad_spans([wave], RATE, config)) == spans
    assert list(vad_spans([wave[i : i + 333] for i in range(0, len(wave), 333)], RATE, config)) == spans


def test_speech_running_to_the_end_is_closed_at_the_end():
    tone = (0.3 * np.sin(np.arange(RATE * 2) * 0.2)).astype(np.float32)
    wave = np.concatenate([np.zeros(RATE, dtype=np.float32), tone[:-77]])
    spans = list(vad_spans([wave], RATE, SegmenterConfig(max_segment_s=5.0, pad_s=0.1)))
    assert spans == [Span(0.9, round(len(wave) / RATE, 3))]


def test_fixed_threshold_and_digital_silence():
    wave = np.concatenate([np.zeros(RATE * 2, dtype=np.float32), np.full(RATE, 0.01, dtype=np.float32),
                           np.zeros(RATE * 2, dtype=np.float32)])
    # -40 dBFS is speech for a -50 dB threshold, not for a -30 dB one.
    assert list(vad_spans([wave], RATE, SegmenterConfig(threshold_db=-50.0, pad_s=0.0))) == [Span(2.0, 3.0)]
    assert list(vad_spans([wave], RATE, SegmenterConfig(threshold_db=-30.0))) == []
    assert list(vad_spans([np.zeros(RATE * 30, dtype=np.float32)], RATE, SegmenterConfig())) == []


def test_frame_energies():
    frames = frame_energies(np.concatenate([np.full(320, 0.5), np.zeros(320), np.full(100, 0.1)]), 320)
    assert frames == pytest.approx([10 * np.log10(0.25), -100.0, -20.0])


def test_windows_cover_the_audio_with_overlap():
    assert list(window_spans(45.0, 20.0, 4.0)) == [Span(0.0, 20.0), Span(16.0, 36.0), Span(32.0, 45.0)]
    assert list(window_spans(20.0, 20.0, 4.0)) == [Span(0.0, 20.0)]
    assert list(window_spans(36.5, 20.0, 0.0)) == [Span(0.0, 20.0), Span(20.0, 36.5)]
    audio = ArrayAudio(torch.zeros(RATE * 50), RATE)
    assert list(plan_segments(audio, SegmenterConfig(method="window", max_segment_s=30.0, overlap_s=5.0))) == [
        Span(0.0, 30.0), Span(25.0, 50.0)]
    with pytest.raises(ValueError, match="overlap_s"):
        list(window_spans(10.0, 5.0, 5.0))


def test_short_audio_is_one_segment(shared_dir):
    path = shared_dir / "data" / "real" / "librispeech" / "1272-128104-0000.flac"
    for method in ("vad", "window"):
        assert list(plan_segments(FileAudio(path), SegmenterConfig(method=method))) == [Span(0.0, 5.855)]


def test_config_is_checked():
    with pytest.raises(ValueError, match="SegmenterConfig.method='energy'"):
        SegmenterConfig(method="energy")
    with pytest.raises(ValueError, match="pad_s"):
        SegmenterConfig(pad_s=1.0)
    with pytest.raises(ValueError, match="overlap_s"):
        SegmenterConfig(method="window", max_segment_s=10.0, overlap_s=5.0)


def test_audio_readers(shared_dir):
    real = shared_dir / "data" / "real"
    # A 44.1 kHz stereo file: spans are read, mixed and resampled on their own.
    jfk = open_audio(real / "misc" / "jfk.flac", RATE)
    assert isinstance(jfk, FileAudio) and jfk.duration == pytest.approx(11.0) and jfk.rate == 44100
    piece = jfk.read(Span(2.0, 3.5), RATE)
    assert len(piece) == 24000
    assert torch.allclose(piece, load_audio(real / "misc" / "jfk.flac", RATE, offset=2.0, duration=1.5))
    blocks = list(jfk.blocks(2.0))
    assert [len(b) for b in blocks] == [88200] * 5 + [485100 - 5 * 88200] and blocks[0].ndim == 1
    # A stretch of a file (as manifests give it): times are relative to its start.
    stretch = open_audio(real / "misc" / "jfk.flac", RATE, offset=3.0, duration=5.0)
    assert stretch.duration == pytest.approx(5.0)
    assert torch.allclose(stretch.read(Span(0.0, 1.0), RATE), jfk.read(Span(3.0, 4.0), RATE))
    assert sum(len(b) for b in stretch.blocks(1.0)) == 5 * 44100
    # Arrays, at their own rate.
    array = open_audio(np.zeros(8000 * 3, dtype=np.float32), RATE, source_rate=8000)
    assert isinstance(array, ArrayAudio) and array.duration == pytest.approx(3.0)
    assert len(array.read(Span(1.0, 2.0), RATE)) == RATE
    assert [len(b) for b in array.blocks(1.25)] == [20000, 20000, 8000]  # resampled to RATE at open


@pytest.mark.parametrize("name", ["bad.wav", "null.wav", "evil.wav", "awful.wav"])
def test_malformed_files_raise_audio_error_naming_them(shared_dir, name):
    path = shared_dir / "data" / "real" / "malformed" / name
    with pytest.raises(AudioError, match=name):
        open_audio(path, RATE)


def test_missing_file_and_offset_past_the_end(shared_dir, tmp_path):
    with pytest.raises(AudioError, match="nothere.wav: audio file not found"):
        open_audio(tmp_path / "nothere.wav", RATE)
    with pytest.raises(AudioError, match="beyond the end"):
        open_audio(shared_dir / "data" / "real" / "misc" / "jfk.flac", RATE, offset=20.0)


def test_memory_stays_bounded_on_a_ten_minute_file(shared_dir, tmp_path):
    path = tmp_path / "ten_minutes.wav"
    bounds = make_long_recording(shared_dir, path, repeat=9)
    duration = sf.info(str(path)).duration
    assert duration >= 600
    audio = FileAudio(path)
    config = SegmenterConfig(block_s=10.0)
    # Scanning reads blocks of at most block_s seconds...
    assert max(len(b) for b in audio.blocks(config.block_s)) == 10 * RATE
    # ...and the whole scan holds a few MB, while the decoded file would take 38 MB.
    tracemalloc.start()
    try:
        spans = list(plan_segments(audio, config))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8e6, f"peak {peak / 1e6:.1f} MB"
    assert len(spans) == len(bounds)
    assert spans[-1].end <= duration
