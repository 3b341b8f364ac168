"""The built-in `synth` corpus: voice-assistant requests spoken by eSpeak NG, with German translations.

    manifests = prepare_synth("data/synth")   # {"train": Path(".../train.jsonl"), "dev": ..., "test": ...}

Writes `out_dir/{train,dev,test}.jsonl` (asr.data.manifest format: English `text`, German
`target_text`, `speaker` = eSpeak voice) and 16 kHz 16-bit WAV files under `out_dir/wavs/<split>/`.
The splits share neither sentences (synth_grammar.sentence_split) nor voices (synth_voices).

The corpus is a function of its arguments: the same arguments give the same files, byte for byte,
whatever the number of workers. Preparation is incremental. A WAV's name carries a hash of
everything that determines its samples, so an existing WAV is reused exactly when it would come
out the same: a second run, a run resumed after a crash, or a larger `num_train` renders only what
is missing. A finished split leaves `out_dir/<split>.done`; a split whose marker matches and
whose manifest lists all its audio is skipped without touching a file.

The rendering is not tied to the grammar: `synthesize_pairs` speaks any English/German sentence
pairs with the same voices, splits, incremental rendering and markers (the `freedict` corpus uses it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Protocol

import soundfile as sf
from tqdm import tqdm

from asr.data.manifest import ManifestError, Utterance, read_manifest, write_manifest
from asr.datasets.augment import AugmentConfig
from asr.datasets.espeak import EspeakError, get_engine
from asr.datasets.synth_grammar import SPLITS, split_pairs
from asr.datasets.synth_render import SAMPLE_RATE, RenderJob, RenderPool
from asr.datasets.synth_voices import Speaker, speakers

logger = logging.getLogger(__name__)

# Bump when a change to the code changes the audio rendered for the same job.
FORMAT_VERSION = 3
# Default sizes: about 110 minutes of training audio, rendered in well under a minute on 2 cores.
NUM_TRAIN = 3000
NUM_DEV = 200
NUM_TEST = 300
# Failures listed one by one before the log only counts the rest.
MAX_REPORTED_FAILURES = 20


class TextPair(Protocol):
    """What synthesize_pairs needs of a sentence pair: the English it speaks and the German translation."""

    @property
    def en(self) -> str: ...

    @property
    def de(self) -> str: ...


@cache
def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


# --- planning --------------------------------------------------------------------------------


def _assign_speakers(split: str, count: int, seed: int) -> list[Speaker]:
    """Speakers for `count` utterances: the split's speakers in shuffled rounds, so each speaks evenly.

    The first n of them do not depend on `count`, so a larger corpus keeps the smaller one's audio.
    """
    pool = list(speakers(split))
    rng = random.Random(f"synth-speakers/{seed}/{split}")
    order: list[Speaker] = []
    while len(order) < count:
        round_ = pool[:]
        rng.shuffle(round_)
        order.extend(round_)
    return order[:count]


def _render_key(utt_id: str, text: str, speaker: Speaker, config: AugmentConfig, seed: int) -> str:
    """A hash of everything that determines an utterance's samples (see synth_render.render)."""
    params = {
        "format": FORMAT_VERSION,
        "espeak": _package_version("espeakng-loader"),
        "soxr": _package_version("soxr"),
        "sample_rate": SAMPLE_RATE,
        "text": text,
        "speaker": asdict(speaker),
        # The augmentation draws from a generator seeded by the corpus seed and the utterance id.
        "augment": [asdict(config), seed, utt_id] if config.enabled else None,
    }
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]


def _plan(
    split: str, pairs: Sequence[TextPair], seed: int, config: AugmentConfig, out_dir: Path, name: str = "synth"
) -> list[RenderJob]:
    """The jobs that render a split's utterances, in manifest order; `name` prefixes the utterance ids."""
    wav_dir = out_dir / "wavs" / split
    jobs = []
    for i, (pair, speaker) in enumerate(zip(pairs, _assign_speakers(split, len(pairs), seed))):
        utt_id = f"{name}-{split}-{i:06d}"
        wav = wav_dir / f"{utt_id}-{_render_key(utt_id, pair.en, speaker, config, seed)}.wav"
        jobs.append(RenderJob(i, utt_id, pair.en, str(wav), speaker, config, seed))
    return jobs


def _params_hash(jobs: Sequence[RenderJob], pairs: Sequence[TextPair]) -> str:
    """A hash of everything in a split's manifest: the audio (by file name) and both texts.

    File names, not paths: a corpus folder that was moved is still up to date.
    """
    records = [
        [job.utt_id, Path(job.wav_path).name, job.speaker.id, pair.en, pair.de] for job, pair in zip(jobs, pairs)
    ]
    return hashlib.sha256(json.dumps([FORMAT_VERSION, records]).encode()).hexdigest()


def _is_complete(out_dir: Path, split: str, params: str) -> bool:
    """Whether the split's marker matches `params` and its manifest lists all its audio."""
    marker, manifest = out_dir / f"{split}.done", out_dir / f"{split}.jsonl"
    try:
        done = json.loads(marker.read_text(encoding="utf-8"))
        if done.get("params") != params:
            return False
        return len(read_manifest(manifest, check_audio=True)) == done.get("utterances")
    except (OSError, ValueError, ManifestError):  # no marker, a broken one, or missing audio
        return False


# --- rendering -------------------------------------------------------------------------------


def _existing_samples(path: str) -> int:
    """Frames in a WAV rendered by an earlier run, or 0 if it is unreadable."""
    try:
        return sf.info(path).frames
    except (OSError, RuntimeError):  # soundfile raises LibsndfileError, a RuntimeError, on bad files
        return 0


def _render_split(
    out_dir: Path,
    split: str,
    jobs: Sequence[RenderJob],
    pairs: Sequence[TextPair],
    params: str,
    pool: RenderPool,
    progress: bool = False,
    name: str = "synth",
) -> None:
    """Render the split's missing audio, then write its manifest and marker."""
    marker = out_dir / f"{split}.done"
    marker.unlink(missing_ok=True)
    wav_dir = out_dir / "wavs" / split
    wav_dir.mkdir(parents=True, exist_ok=True)
    # Files of other parameters, and temporary files of a killed run, are not part of this corpus.
    wanted = {Path(job.wav_path).name for job in jobs}
    for path in wav_dir.iterdir():
        if path.name not in wanted:
            path.unlink()

    existing = {path.name for path in wav_dir.iterdir()}
    samples = [_existing_samples(job.wav_path) if Path(job.wav_path).name in existing else 0 for job in jobs]
    todo = [job for job in jobs if samples[job.index] == 0]
    if len(todo) < len(jobs):
        logger.info("%s %s: %d of %d utterances already rendered", name, split, len(jobs) - len(todo), len(jobs))
    failures: list[tuple[RenderJob, str]] = []
    with tqdm(total=len(todo), desc=f"{name} {split}", unit="utt", disable=not progress or not todo) as bar:
        for result in pool.render(todo):
            samples[result.index] = result.samples
            if result.error:
                failures.append((jobs[result.index], result.error))
            bar.update()
    if todo and len(failures) == len(todo):
        raise EspeakError(f"{name} {split}: all {len(todo)} utterances failed; the first: {failures[0][1]}")
    failures.sort(key=lambda failure: failure[0].index)
    for job, error in failures[:MAX_REPORTED_FAILURES]:
        logger.warning("%s %s: skipped %s (%r): %s", name, split, job.utt_id, job.text, error)
    if len(failures) > MAX_REPORTED_FAILURES:
        logger.warning("%s %s: ... and %d more failures", name, split, len(failures) - MAX_REPORTED_FAILURES)

    utterances = [
        Utterance(
            id=job.utt_id,
            audio=job.wav_path,
            duration=samples[job.index] / SAMPLE_RATE,
            text=pair.en,
            speaker=job.speaker.id,
            lang="en",
            target_text=pair.de,
            target_lang="de",
        )
        for job, pair in zip(jobs, pairs)
        if samples[job.index] > 0
    ]
    write_manifest(out_dir / f"{split}.jsonl", utterances)
    # The marker goes last: its presence means every file before it is complete.
    record = {"params": params, "utterances": len(utterances), "failed": [job.utt_id for job, _ in failures]}
    tmp = marker.with_name(marker.name + ".tmp")
    tmp.write_text(json.dumps(record) + "\n", encoding="utf-8")
    os.replace(tmp, marker)


def default_workers() -> int:
    """One worker per CPU core this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def prepare_synth(
    out_dir: str | os.PathLike,
    *,
    num_train: int = NUM_TRAIN,
    num_dev: int = NUM_DEV,
    num_test: int = NUM_TEST,
    seed: int = 0,
    noise: bool = False,
    reverb: bool = False,
    augment_splits: Sequence[str] = ("train",),
    workers: int | None = None,
    progress: bool = True,
) -> dict[str, Path]:
    """Generate the synth corpus under `out_dir`; returns {"train": manifest path, "dev": ..., "test": ...}.

    num_train, num_dev, num_test: utterances per split (distinct sentences; an utterance whose
        synthesis fails is reported and left out).
    seed: picks the sentences, the speaker of each, and the augmentation.
    noise, reverb: augment the splits in `augment_splits` (default: train only, so that dev and
        test scores stay comparable between runs) with noise / reverberation (AugmentConfig).
    workers: processes rendering audio (default: one per CPU core); 1 renders in this process.
    progress: show a progress bar per split.
    """
    counts = {"train": num_train, "dev": num_dev, "test": num_test}
    for split, count in counts.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"prepare_synth: num_{split} must be an integer >= 0, got {count!r}")
    if isinstance(augment_splits, str):
        raise ValueError(f"prepare_synth: augment_splits must be a list of splits, got the string {augment_splits!r}")
    unknown = [s for s in augment_splits if s not in SPLITS]
    if unknown:
        raise ValueError(f"prepare_synth: augment_splits has unknown splits {unknown}; splits are {SPLITS}")
    if workers is None:
        workers = default_workers()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"prepare_synth: workers must be an integer >= 1, got {workers!r}")
    augment = {split: AugmentConfig(noise=noise, reverb=reverb) if split in augment_splits else AugmentConfig()
               for split in SPLITS}
    return synthesize_pairs(out_dir, split_pairs(counts, seed), name="synth", seed=seed, augment=augment,
                            workers=workers, progress=progress)


def synthesize_pairs(
    out_dir: str | os.PathLike,
    pairs: Mapping[str, Sequence[TextPair]],
    *,
    name: str,
    seed: int = 0,
    augment: Mapping[str, AugmentConfig] | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> dict[str, Path]:
    """Speak the English of each split's sentence pairs with that split's voices; returns {split: manifest}.

    pairs: {"train" | "dev" | "test": pairs in manifest order}; each pair's `en` is spoken by one of
        the split's speakers (synth_voices.speakers: the splits share no voice) and becomes the
        manifest's `text`, its `de` the `target_text`.
    name: the corpus, for utterance ids ("<name>-<split>-000000"), logs and progress bars.
    seed: picks the speaker of each utterance and seeds the augmentation.
    augment: the AugmentConfig of each split (default: none).
    workers: processes rendering audio (default: one per CPU core); 1 renders in this process.

    Writes out_dir/<split>.jsonl, out_dir/<split>.done and out_dir/wavs/<split>/, incrementally, as
    described at the top of this module.
    """
    unknown = [split for split in pairs if split not in SPLITS]
    if unknown:
        raise ValueError(f"synthesize_pairs ({name}): unknown splits {unknown}; splits are {SPLITS}")
    if workers is None:
        workers = default_workers()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"synthesize_pairs ({name}): workers must be an integer >= 1, got {workers!r}")
    augment = augment or {}
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)

    todo = []
    for split, texts in pairs.items():
        jobs = _plan(split, texts, seed, augment.get(split, AugmentConfig()), out_dir, name)
        params = _params_hash(jobs, texts)
        if _is_complete(out_dir, split, params):
            logger.info("%s %s: up to date", name, split)
        else:
            todo.append((split, jobs, params))

    if todo:
        engine = get_engine()  # fails here, with the reason, if eSpeak NG cannot be loaded
        for voice in sorted({job.speaker.voice for _, jobs, _ in todo for job in jobs}):
            engine.check_voice(voice)
        with RenderPool(workers) as pool:
            for split, jobs, params in todo:
                _render_split(out_dir, split, jobs, pairs[split], params, pool, progress, name)
    return {split: out_dir / f"{split}.jsonl" for split in pairs}
