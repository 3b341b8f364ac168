"""The synth corpus: eSpeak NG binding, speakers, rendering in worker processes, prepare_synth."""

from __future__ import annotations

import _ctypes
import ctypes
import json
import logging
import shutil
import signal
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import espeakng_loader
import numpy as np
import pytest
import soundfile as sf

import asr.datasets
from asr.data.manifest import read_manifest
from asr.datasets import AugmentConfig, Espeak, EspeakError, generate_pairs, get_engine, prepare_synth, speakers
from asr.datasets.synth import _plan, _render_split
from asr.datasets.synth_render import RenderError, RenderJob, RenderPool, RenderResult, render
from asr.datasets.synth_voices import ACCENTS, VARIANTS

# --- eSpeak ----------------------------------------------------------------------------------


def test_espeak_speaks_a_sentence():
    assert {"prepare_synth", "get_engine", "Espeak"} <= set(dir(asr.datasets))
    engine = get_engine()
    assert engine is get_engine()  # one engine per process
    assert engine.sample_rate == 22050
    wave = engine.synthesize("set a timer for ten minutes", "en-us+f3", rate=175, pitch=60)
    assert wave.dtype == np.float32 and wave.ndim == 1
    seconds = wave.size / engine.sample_rate
    assert 1.0 < seconds < 4.0, seconds  # six words at 175 words per minute
    assert np.sqrt(np.mean(wave**2)) > 0.02 and np.abs(wave).max() <= 1.0
    # The variant, pitch and rate are applied: another voice gives other audio, a faster rate less of it.
    other = engine.synthesize("set a timer for ten minutes", "en-gb-scotland+m3", rate=175, pitch=60)
    assert other.size != wave.size or not np.array_equal(other, wave)
    fast = engine.synthesize("set a timer for ten minutes", "en-us+f3", rate=300, pitch=60)
    assert fast.size < 0.8 * wave.size


def test_espeak_is_deterministic_and_thread_safe():
    engine = get_engine()
    # f2 breathes: its noise generator is seeded from the clock unless it is reseeded.
    texts = [("wake me up at seven", "en-us+m1"), ("play some jazz", "en+klatt2"), ("call my mother", "en-029+f2")]
    expected = [engine.synthesize(t, v) for t, v in texts]
    # The same request gives the same samples whatever was spoken before it (eSpeak NG's
    # pitch flutter and gain control would otherwise carry over from the previous utterance).
    for _ in range(2):
        again = [engine.synthesize(t, v) for t, v in reversed(texts)][::-1]
        assert all(np.array_equal(a, b) for a, b in zip(again, expected))
    time.sleep(1.05)  # and a second later
    assert np.array_equal(engine.synthesize(*texts[2]), expected[2])
    results: dict[int, list[np.ndarray]] = {}

    def work(k: int) -> None:
        results[k] = [engine.synthesize(t, v) for t, v in texts[k:] + texts[:k]]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(3):
        assert all(np.array_equal(a, b) for a, b in zip(results[k], expected[k:] + expected[:k]))


def test_espeak_errors_are_clear(tmp_path: Path):
    engine = get_engine()
    with pytest.raises(EspeakError, match="unknown eSpeak voice 'xx-yy'"):
        engine.synthesize("hello", "xx-yy")
    with pytest.raises(EspeakError, match="unknown eSpeak voice variant 'nosuch'.*m1"):
        engine.synthesize("hello", "en-us+nosuch")
    with pytest.raises(EspeakError, match="empty text"):
        engine.synthesize("  ", "en-us")
    with pytest.raises(EspeakError, match="pitch must be in 0..100"):
        engine.synthesize("hello", "en-us", pitch=120)
    with pytest.raises(EspeakError, match="cannot load the eSpeak NG library /nonexistent"):
        Espeak("/nonexistent/libespeak-ng.so", engine.data_path)
    with pytest.raises(EspeakError, match="not an espeak-ng-data folder"):
        Espeak(espeakng_loader.get_library_path(), tmp_path)
    # Another module holding the same library (a phonemizer, say) would share eSpeak NG's state:
    # the engine then loads a private copy of it, and speaks as before.
    expected = engine.synthesize("hello", "en-us+f2")
    other = ctypes.CDLL(espeakng_loader.get_library_path())
    try:
        other.espeak_Initialize(2, 500, str(engine.data_path).encode(), 0x8000)
        assert np.array_equal(engine.synthesize("hello", "en-us+f2"), expected)
        assert np.array_equal(Espeak(engine.library_path, engine.data_path).synthesize("hello", "en-us+f2"), expected)
    finally:
        other.espeak_Terminate()
        _ctypes.dlclose(other._handle)
    # After all that the engine still works.
    assert engine.synthesize("hello", "en-us").size > 0


def test_synth_voices_exist_and_splits_are_disjoint():
    engine = get_engine()
    assert set(ACCENTS) <= set(engine.languages())
    assert set(VARIANTS) <= set(engine.variants())
    voices = {split: {s.id for s in speakers(split)} for split in ("train", "dev", "test")}
    assert len(voices["train"]) >= 30 and len(voices["dev"]) >= 8 and len(voices["test"]) >= 8
    assert not voices["train"] & voices["test"] and not voices["train"] & voices["dev"]
    assert not voices["dev"] & voices["test"]
    # Every accent and every variant is heard in training; only their combinations are new.
    assert {v.split("+")[0] for v in voices["train"]} == set(ACCENTS)
    assert {v.split("+")[1] for v in voices["train"]} == set(VARIANTS)
    train = speakers("train")
    assert len({(s.pitch, s.rate) for s in train}) > 20  # prosody differs between speakers
    assert all(35 <= s.pitch <= 65 and 150 <= s.rate <= 195 for s in train)
    with pytest.raises(ValueError, match="unknown split 'eval'"):
        speakers("eval")


# --- rendering -------------------------------------------------------------------------------


def _jobs(tmp_path: Path, count: int, config: AugmentConfig | None = None) -> list[RenderJob]:
    return _plan("train", generate_pairs(count, seed=5), 5, config or AugmentConfig(), tmp_path)


def test_render_writes_a_wav_and_returns_errors(tmp_path: Path):
    config = AugmentConfig(noise=True, reverb=True)
    (tmp_path / "wavs" / "train").mkdir(parents=True)
    job = _jobs(tmp_path, 1, config)[0]
    assert RenderJob.from_json(job.to_json()) == job  # what a worker process receives
    result = render(job)
    assert result == RenderResult(0, result.samples) and result.samples > 8000
    wave, rate = sf.read(job.wav_path, dtype="float32")
    assert rate == 16000 and wave.size == result.samples and 0.1 < np.abs(wave).max() <= 0.99
    assert not list((tmp_path / "wavs" / "train").glob("*.tmp"))
    failed = render(replace(job, text=""))
    assert failed.samples == 0 and "EspeakError: cannot synthesise an empty text" in failed.error
    lost = render(replace(job, wav_path=str(tmp_path / "nowhere" / "x.wav")))
    assert lost.samples == 0 and "nowhere" in lost.error


def test_render_pool_matches_this_process_and_replaces_a_dead_worker(tmp_path: Path):
    jobs = _jobs(tmp_path, 6)
    (tmp_path / "wavs" / "train").mkdir(parents=True)
    with RenderPool(1) as pool:
        local = sorted(pool.render(jobs), key=lambda r: r.index)
    wavs = {job.wav_path: Path(job.wav_path).read_bytes() for job in jobs}
    with RenderPool(2) as pool:
        assert sorted(pool.render(jobs[:2]), key=lambda r: r.index) == local[:2]
        # Worker processes render byte-identical files.
        assert all(Path(p).read_bytes() == wavs[p] for p in list(wavs)[:2])
        # A worker that dies (here: killed) costs the utterance it had, and is replaced.
        for slot in pool._slots:
            slot.process.send_signal(signal.SIGKILL)
            slot.process.wait()
        results = sorted(pool.render(jobs), key=lambda r: r.index)
        assert sum("worker process died (exit code -9)" in r.error for r in results) == 2
        assert all(r == local[r.index] for r in results if not r.error)
        assert sorted(pool.render(jobs), key=lambda r: r.index) == local
    with pytest.raises(RuntimeError, match="the pool is closed"):
        list(pool.render(jobs))


def test_render_pool_reports_a_worker_that_cannot_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(sys, "path", [])  # workers get this process's sys.path: they cannot find asr
    with RenderPool(2) as pool, pytest.raises(RenderError, match="worker process failed to start"):
        list(pool.render(_jobs(tmp_path, 2)))


# --- prepare_synth ---------------------------------------------------------------------------

TINY = {"num_train": 12, "num_dev": 4, "num_test": 4}


def _mtimes(out: Path) -> dict[str, int]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in sorted(out.rglob("*")) if p.is_file()}


def test_prepare_synth_writes_valid_manifests_and_is_idempotent(tmp_path: Path, capsys: pytest.CaptureFixture):
    out = tmp_path / "synth"
    manifests = prepare_synth(out, **TINY, seed=1, workers=2, progress=True)
    assert "synth train: 100%" in capsys.readouterr().err  # the progress bar
    assert set(manifests) == {"train", "dev", "test"}
    utts = {split: read_manifest(path) for split, path in manifests.items()}
    assert {k: len(v) for k, v in utts.items()} == {"train": 12, "dev": 4, "test": 4}
    for split, items in utts.items():
        for u in items:
            assert u.lang == "en" and u.target_lang == "de" and u.target_text
            assert u.speaker in {s.id for s in speakers(split)}
            info = sf.info(u.audio)
            assert info.samplerate == 16000 and info.subtype == "PCM_16"
            assert abs(info.frames / 16000 - u.duration) < 1e-6 and 0.5 < u.duration < 10
            assert Path(u.audio).parent == out / "wavs" / split
    lines = (out / "train.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0])["audio"].startswith("wavs/train/synth-train-000000-")  # relative: movable
    texts = {split: {u.text for u in items} for split, items in utts.items()}
    assert not texts["train"] & texts["test"] and not texts["train"] & texts["dev"]
    voices = {split: {u.speaker for u in items} for split, items in utts.items()}
    assert not voices["train"] & voices["test"] and len(voices["train"]) == 12

    before = _mtimes(out)
    assert prepare_synth(out, **TINY, seed=1, workers=2, progress=False) == manifests
    assert _mtimes(out) == before  # nothing rewritten

    # A lost WAV, a broken one, or a run killed before the marker: only the missing audio is rendered.
    wavs = {u.audio: Path(u.audio).read_bytes() for u in utts["test"] + utts["train"][:1]}
    shutil.rmtree(out / "wavs" / "test")
    (out / "test.done").unlink()
    Path(utts["train"][0].audio).write_bytes(b"RIFF")
    (out / "train.done").unlink()
    Path(utts["dev"][2].audio).unlink()
    prepare_synth(out, **TINY, seed=1, workers=1, progress=False)
    after = _mtimes(out)
    redone = [*wavs, utts["dev"][2].audio]
    changed = {"dev.jsonl", "dev.done", "test.jsonl", "test.done", "train.jsonl", "train.done"}
    assert {k for k in after if after[k] != before.get(k)} == changed | {str(Path(a).relative_to(out)) for a in redone}
    assert {split: read_manifest(path) for split, path in manifests.items()} == utts
    # Rendering is deterministic: in this process, the same bytes as the worker processes wrote.
    assert all(Path(a).read_bytes() == data for a, data in wavs.items())

    # The folder can move: it is still up to date there.
    moved = tmp_path / "moved"
    shutil.move(out, moved)
    before = _mtimes(moved)
    prepare_synth(moved, **TINY, seed=1, workers=1, progress=False)
    assert _mtimes(moved) == before


def test_prepare_synth_follows_parameter_changes(tmp_path: Path):
    out = tmp_path / "synth"
    prepare_synth(out, num_train=3, num_dev=1, num_test=0, progress=False)  # a worker per core
    clean = {u.id: sf.read(u.audio)[0] for u in read_manifest(out / "train.jsonl")}
    dev_done = (out / "dev.done").read_text()
    prepare_synth(out, num_train=3, num_dev=1, num_test=0, noise=True, reverb=True, workers=1, progress=False)
    noisy = {u.id: u for u in read_manifest(out / "train.jsonl")}
    assert noisy.keys() == clean.keys()
    assert all(not np.array_equal(sf.read(noisy[k].audio)[0], clean[k]) for k in clean)
    # The clean files are gone: only the current ones are left.
    assert {p.name for p in (out / "wavs" / "train").iterdir()} == {Path(u.audio).name for u in noisy.values()}
    assert (out / "dev.done").read_text() == dev_done  # dev stays clean, so it is not redone
    assert read_manifest(out / "test.jsonl") == []
    # A larger corpus keeps the smaller one's utterances and audio files.
    mtimes = {u.audio: Path(u.audio).stat().st_mtime_ns for u in noisy.values()}
    prepare_synth(out, num_train=5, num_dev=1, num_test=0, noise=True, reverb=True, workers=1, progress=False)
    grown = read_manifest(out / "train.jsonl")
    assert len(grown) == 5 and grown[:3] == list(noisy.values())
    assert all(Path(a).stat().st_mtime_ns == t for a, t in mtimes.items())


def test_prepare_synth_rejects_bad_arguments(tmp_path: Path):
    with pytest.raises(ValueError, match="num_train must be an integer >= 0, got -2"):
        prepare_synth(tmp_path, num_train=-2)
    with pytest.raises(ValueError, match="num_dev must be an integer >= 0, got 1.5"):
        prepare_synth(tmp_path, num_dev=1.5)
    with pytest.raises(ValueError, match="augment_splits has unknown splits"):
        prepare_synth(tmp_path, augment_splits=("eval",))
    with pytest.raises(ValueError, match="augment_splits must be a list of splits, got the string 'train'"):
        prepare_synth(tmp_path, augment_splits="train")
    with pytest.raises(ValueError, match="workers must be an integer >= 1, got 0"):
        prepare_synth(tmp_path, workers=0)
    assert not list(tmp_path.iterdir())


def test_failed_utterances_are_reported_and_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    pairs = generate_pairs(3, seed=0)
    # An empty sentence cannot be synthesised: it stands in for any per-utterance failure.
    broken = [pairs[0], type(pairs[1])(en="", de="", pattern="broken"), pairs[2]]
    jobs = _plan("train", broken, 0, AugmentConfig(), tmp_path)
    with caplog.at_level(logging.WARNING), RenderPool(2) as pool:
        _render_split(tmp_path, "train", jobs, broken, "params", pool)
    assert [u.text for u in read_manifest(tmp_path / "train.jsonl")] == [pairs[0].en, pairs[2].en]
    assert json.loads((tmp_path / "train.done").read_text())["failed"] == ["synth-train-000001"]
    assert "skipped synth-train-000001" in caplog.text and "empty text" in caplog.text
    dev_jobs = _plan("dev", broken[1:2], 0, AugmentConfig(), tmp_path)
    with RenderPool(1) as pool, pytest.raises(EspeakError, match="all 1 utterances failed"):
        _render_split(tmp_path, "dev", dev_jobs, broken[1:2], "params", pool)
