"""Rendering the synth corpus: one utterance at a time, or many in parallel worker processes.

    with RenderPool(workers=2) as pool:
        for result in pool.render(jobs):   # RenderResult per job, in completion order
            ...

Rendering an utterance is eSpeak NG, resampling to 16 kHz with soxr, optional augmentation and an
atomic WAV write. Its samples depend only on the job (espeak.py explains how eSpeak NG is made
to forget earlier utterances), so which worker renders a job, and in what order, changes nothing.

The workers are fresh interpreters that read jobs from stdin and write results to stdout as JSON
lines, rather than multiprocessing processes: spawn would re-run the caller's script in every
worker unless it has an `if __name__ == "__main__":` guard, and fork would copy the locks of the
caller's threads (torch's, tqdm's) in whatever state they are. They import neither torch nor the
caller's modules, so they start in a fraction of a second. A worker that dies (say, eSpeak NG
crashes on some text) costs only its utterance, which is reported as failed, and is replaced.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, astuple, dataclass
from types import TracebackType

import numpy as np
import soundfile as sf
import soxr

from asr.datasets.augment import AugmentConfig, augment
from asr.datasets.espeak import get_engine
from asr.datasets.synth_voices import Speaker

SAMPLE_RATE = 16000
# A worker's first line: it has loaded eSpeak NG and waits for jobs.
READY = "ready"
# Seconds a worker gets to exit once its stdin is closed, before it is killed.
EXIT_TIMEOUT = 5.0
_BOOTSTRAP = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[1]); from asr.datasets.synth_render import serve; serve()"
)


class RenderError(RuntimeError):
    """The worker processes cannot be started."""


@dataclass(frozen=True)
class RenderJob:
    """One utterance to render: `text` spoken by `speaker`, written to `wav_path` as 16-bit PCM."""

    index: int
    utt_id: str
    text: str
    wav_path: str
    speaker: Speaker
    augment: AugmentConfig
    seed: int

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> RenderJob:
        record = json.loads(line)
        speaker = Speaker(**record.pop("speaker"))
        # JSON has no tuples: the ranges of AugmentConfig come back as lists.
        config = {k: tuple(v) if isinstance(v, list) else v for k, v in record.pop("augment").items()}
        return cls(**record, speaker=speaker, augment=AugmentConfig(**config))


@dataclass(frozen=True)
class RenderResult:
    """The outcome of a job: `samples` written at SAMPLE_RATE, or 0 and the `error`."""

    index: int
    samples: int
    error: str = ""


def utterance_seed(seed: int, utt_id: str) -> int:
    """The augmentation seed of one utterance: fixed by the corpus seed and the id, not the worker."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{utt_id}".encode()).digest()[:8], "big")


def render(job: RenderJob) -> RenderResult:
    """Synthesise, resample, augment and write one utterance; an error is returned, not raised."""
    try:
        engine = get_engine()
        speaker = job.speaker
        wave = engine.synthesize(
            job.text, speaker.voice, rate=speaker.rate, pitch=speaker.pitch, pitch_range=speaker.pitch_range
        )
        wave = soxr.resample(wave, engine.sample_rate, SAMPLE_RATE, quality="HQ")
        if job.augment.enabled:
            wave = augment(wave, SAMPLE_RATE, job.augment, np.random.default_rng(utterance_seed(job.seed, job.utt_id)))
        # Some voices peak near full scale and resampling overshoots a little: scale down rather
        # than clip, which would add distortion the other voices do not have.
        peak = float(np.max(np.abs(wave)))
        if peak > 0.99:
            wave = wave * (0.99 / peak)
        # Encoded in memory: libsndfile fsyncs every file it closes, which would take longer than
        # the synthesis. A crash can leave an empty or short file, but under the final name only
        # after the rename, and prepare_synth renders any WAV again that it cannot read.
        buffer = io.BytesIO()
        sf.write(buffer, wave, SAMPLE_RATE, subtype="PCM_16", format="WAV")
        tmp = f"{job.wav_path}.tmp"
        with open(tmp, "wb") as f:
            f.write(buffer.getvalue())
        os.replace(tmp, job.wav_path)
        return RenderResult(job.index, int(wave.size))
    except Exception as exc:  # one bad utterance is reported and skipped, never the whole corpus
        return RenderResult(job.index, 0, f"{type(exc).__name__}: {exc}")


def serve() -> None:
    """A worker's main loop: a RenderJob per line of stdin, a RenderResult per line of stdout."""
    # Ctrl-C reaches the whole process group; the parent decides, and closes or kills its workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Results go to a private copy of stdout; anything else printed there, from Python or from
    # eSpeak NG's C code, goes to stderr instead of into the results.
    results = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    get_engine()
    results.write(READY + "\n")
    for line in sys.stdin:
        results.write(json.dumps(astuple(render(RenderJob.from_json(line)))) + "\n")


class _Worker:
    """A worker process, started and ready for jobs."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _BOOTSTRAP, json.dumps(sys.path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        if self.process.stdout.readline().strip() != READY:
            code = self.close()
            raise RenderError(f"a synth worker process failed to start (exit code {code}); its error is above")

    def render(self, job: RenderJob) -> RenderResult | None:
        """The job's result, or None when the worker died on it."""
        try:
            self.process.stdin.write(job.to_json() + "\n")
            self.process.stdin.flush()
            line = self.process.stdout.readline()
        except OSError:  # the pipe broke: the worker is gone
            return None
        return RenderResult(*json.loads(line)) if line else None

    def close(self) -> int:
        """Stop the worker (it exits at the end of its input, or is killed); returns its exit code."""
        with contextlib.suppress(OSError):  # a broken pipe: the worker is gone already
            self.process.stdin.close()
        try:
            return self.process.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()
        finally:
            self.process.stdout.close()


class RenderPool:
    """Renders jobs in `workers` worker processes, or in this process when workers <= 1.

    Workers start on first use and serve every later `render` call until the pool is closed.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._slots: list[_Worker | None] = [None] * max(workers, 0)
        self._closing = threading.Event()
        self._slots_lock = threading.Lock()  # between a feeding thread starting a worker and close()

    def __enter__(self) -> RenderPool:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._closing.set()
        with self._slots_lock:
            workers, self._slots = self._slots, [None] * len(self._slots)
        for worker in workers:
            if worker is not None:
                worker.close()

    def render(self, jobs: Sequence[RenderJob]) -> Iterator[RenderResult]:
        """The results of `jobs`, one each, as they complete."""
        if self._closing.is_set():
            raise RuntimeError("RenderPool.render: the pool is closed")
        if self.workers <= 1:
            yield from map(render, jobs)
            return
        todo: queue.SimpleQueue[RenderJob] = queue.SimpleQueue()
        for job in jobs:
            todo.put(job)
        done: queue.SimpleQueue[RenderResult | BaseException] = queue.SimpleQueue()
        # One thread per worker feeds it jobs; they mostly wait on pipes, so the GIL is no matter.
        for slot in range(min(self.workers, len(jobs))):
            threading.Thread(target=self._feed, args=(slot, todo, done), daemon=True).start()
        for _ in jobs:
            result = done.get()
            if isinstance(result, BaseException):
                raise result
            yield result

    def _worker(self, slot: int) -> _Worker | None:
        """The worker in `slot`, started if need be; None once the pool is closing."""
        with self._slots_lock:
            worker = self._slots[slot]
        if worker is None:
            worker = _Worker()
            with self._slots_lock:
                if not self._closing.is_set():
                    self._slots[slot] = worker
                    return worker
            worker.close()
            return None
        return worker

    def _feed(self, slot: int, todo: queue.SimpleQueue, done: queue.SimpleQueue) -> None:
        """Send jobs to the worker in `slot` until none are left, replacing it if it dies."""
        try:
            while not self._closing.is_set():
                try:
                    job = todo.get_nowait()
                except queue.Empty:
                    return
                worker = self._worker(slot)
                if worker is None:  # the pool was closed
                    return
                result = worker.render(job)
                if result is None:
                    with self._slots_lock:
                        if self._slots[slot] is worker:
                            self._slots[slot] = None
                    result = RenderResult(job.index, 0, f"the worker process died (exit code {worker.close()})")
                done.put(result)
        except BaseException as exc:  # handed to the caller's thread, which raises it
            done.put(exc)
