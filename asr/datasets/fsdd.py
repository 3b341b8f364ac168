"""Connected spoken digits from the Free Spoken Digit Dataset (FSDD), like TIDIGITS.

FSDD has 3,000 8 kHz recordings named `{digit}_{speaker}_{take}.wav` (6 speakers x 10 digits x 50
takes). Each utterance here joins 3-7 recordings of one speaker with short random silences and a
little noise, and is transcribed as digit words ("three one four"). Splits follow the upstream
convention: takes 0-4 are test, so no test recording is ever heard in training; the next takes
give the dev set, the rest train. `holdout_speaker` instead keeps one speaker out of train and dev
and tests on all of that speaker's recordings (a speaker-independent test).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from asr.audio import AudioError, load_audio
from asr.data import Utterance, read_manifest, write_manifest
from asr.fileio import write_json

logger = logging.getLogger(__name__)

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SAMPLE_RATE = 8000
SPLITS = ("train", "dev", "test")
_NAME = re.compile(r"^(\d)_([a-z]+)_(\d+)\.wav$")


@dataclass(frozen=True)
class Recording:
    digit: int
    speaker: str
    take: int
    path: Path


def find_recordings(root: str | os.PathLike) -> list[Recording]:
    """Every `{digit}_{speaker}_{take}.wav` under root (or root/recordings); other files are reported."""
    root = Path(root)
    folder = root / "recordings" if (root / "recordings").is_dir() else root
    files = sorted(folder.glob("*.wav"))
    if not files:
        raise FileNotFoundError(f"prepare_fsdd: no .wav files in {folder}; data.root should point at FSDD")
    recordings = []
    for path in files:
        match = _NAME.match(path.name)
        if match is None:
            logger.warning("prepare_fsdd: skipped %s: not named {digit}_{speaker}_{take}.wav", path)
            continue
        recordings.append(Recording(int(match[1]), match[2], int(match[3]), path))
    return recordings


def split_recordings(recordings: list[Recording], num_test_takes: int, num_dev_takes: int,
                     holdout_speaker: str | None, speakers: list[str] | None) -> dict[str, list[Recording]]:
    """Recordings per split: by take (upstream convention), or by speaker with holdout_speaker."""
    known = sorted({r.speaker for r in recordings})
    for name in ([holdout_speaker] if holdout_speaker else []) + list(speakers or []):
        if name not in known:
            raise ValueError(f"prepare_fsdd: unknown speaker {name!r}; speakers are {known}")
    if speakers:
        recordings = [r for r in recordings if r.speaker in speakers or r.speaker == holdout_speaker]
    splits: dict[str, list[Recording]] = {split: [] for split in SPLITS}
    for rec in recordings:
        if holdout_speaker:
            split = "test" if rec.speaker == holdout_speaker else "dev" if rec.take < num_dev_takes else "train"
        else:
            split = "test" if rec.take < num_test_takes else "dev" if rec.take < num_test_takes + num_dev_takes \
                else "train"
        splits[split].append(rec)
    return splits


def prepare_fsdd(
    out_dir: str | os.PathLike,
    root: str | os.PathLike,
    *,
    num_train: int = 2000,
    num_dev: int = 200,
    num_test: int = 500,
    min_digits: int = 3,
    max_digits: int = 7,
    num_test_takes: int = 5,
    num_dev_takes: int = 3,
    holdout_speaker: str | None = None,
    speakers: list[str] | None = None,
    silence: tuple[float, float] = (0.05, 0.3),
    snr_db: tuple[float, float] = (25.0, 40.0),
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Path]:
    """Write connected-digit audio and train/dev/test manifests under `out_dir`.

    num_*: digit strings per split; each has min_digits..max_digits recordings of one speaker,
    joined by silences of `silence` seconds (uniform) and with white noise at `snr_db` (uniform).
    speakers: only use these speakers (default: all). A split whose outputs are complete and were
    made with the same settings is skipped, so rerunning is cheap; a partial split is redone.
    """
    if not 1 <= min_digits <= max_digits:
        raise ValueError(f"prepare_fsdd: need 1 <= min_digits <= max_digits, got {min_digits}, {max_digits}")
    out_dir = Path(out_dir)
    splits = split_recordings(find_recordings(root), num_test_takes, num_dev_takes, holdout_speaker, speakers)
    counts = {"train": num_train, "dev": num_dev, "test": num_test}
    settings = dict(min_digits=min_digits, max_digits=max_digits, silence=list(silence), snr_db=list(snr_db),
                    seed=seed, version=1)
    manifests = {}
    for index, split in enumerate(SPLITS):
        manifests[split] = out_dir / f"{split}.jsonl"
        if not splits[split]:
            raise ValueError(f"prepare_fsdd: no recordings for the {split} split (check speakers/takes settings)")
        files = sorted(str(r.path.name) for r in splits[split])
        params = hashlib.sha256(json.dumps([settings, counts[split], files]).encode()).hexdigest()[:16]
        if _is_complete(out_dir, split, params):
            logger.info("fsdd %s: up to date, skipped", split)
            continue
        rng = np.random.default_rng([seed, index])
        utterances = _render_split(out_dir, split, splits[split], counts[split], rng, settings, progress)
        write_manifest(manifests[split], utterances)
        write_json(out_dir / f"{split}.done", {"params": params, "utterances": len(utterances)})
        logger.info("fsdd %s: %d utterances", split, len(utterances))
    return manifests


def _is_complete(out_dir: Path, split: str, params: str) -> bool:
    try:
        done = json.loads((out_dir / f"{split}.done").read_text())
        return done["params"] == params and len(read_manifest(out_dir / f"{split}.jsonl")) == done["utterances"]
    except (OSError, ValueError, KeyError):
        return False


def _render_split(out_dir: Path, split: str, recordings: list[Recording], count: int, rng: np.random.Generator,
                  settings: dict, progress: bool) -> list[Utterance]:
    (out_dir / f"{split}.done").unlink(missing_ok=True)
    audio = {rec.path: _load(rec.path) for rec in recordings}  # FSDD is small: ~10 MB at 8 kHz
    by_speaker: dict[str, list[Recording]] = defaultdict(list)
    for rec in recordings:
        if audio[rec.path] is not None:  # unreadable recordings are reported by _load and left out
            by_speaker[rec.speaker].append(rec)
    speakers = sorted(by_speaker)
    if not speakers:
        raise ValueError(f"prepare_fsdd: no readable recordings for the {split} split")
    wav_dir = out_dir / "wavs" / split
    wav_dir.mkdir(parents=True, exist_ok=True)
    utterances = []
    for n in tqdm(range(count), desc=f"fsdd {split}", unit="utt", disable=not progress):
        speaker = speakers[rng.integers(len(speakers))]
        pool = by_speaker[speaker]
        num_digits = rng.integers(settings["min_digits"], settings["max_digits"] + 1)
        chosen = [pool[i] for i in rng.integers(len(pool), size=num_digits)]
        pieces = [_silence(rng, settings["silence"])]
        for rec in chosen:
            pieces += [audio[rec.path], _silence(rng, settings["silence"])]
        wave = _add_noise(np.concatenate(pieces), rng, settings["snr_db"])
        utt_id = f"fsdd-{split}-{speaker}-{n:05d}"
        path = wav_dir / f"{utt_id}.wav"
        # No fsync per file: the split's .done marker, written last, is what vouches for completeness.
        sf.write(path, wave, SAMPLE_RATE, subtype="PCM_16")
        utterances.append(Utterance(id=utt_id, audio=str(path.resolve()), duration=len(wave) / SAMPLE_RATE,
                                    text=" ".join(DIGITS[r.digit] for r in chosen), speaker=speaker, lang="en"))
    return utterances


def _load(path: Path) -> np.ndarray | None:
    """A recording as float32 at 8 kHz; None (reported) when it cannot be read."""
    try:
        return load_audio(path, SAMPLE_RATE).numpy()
    except AudioError as error:
        logger.warning("prepare_fsdd: skipped %s: %s", path, error)
        return None


def _silence(rng: np.random.Generator, bounds: list[float]) -> np.ndarray:
    return np.zeros(int(rng.uniform(*bounds) * SAMPLE_RATE), dtype=np.float32)


def _add_noise(wave: np.ndarray, rng: np.random.Generator, snr_db: list[float]) -> np.ndarray:
    power = float(np.mean(wave**2)) + 1e-10
    noise = rng.standard_normal(wave.size) * np.sqrt(power / 10 ** (rng.uniform(*snr_db) / 10))
    out = wave + noise.astype(np.float32)
    return np.clip(out, -1.0, 1.0).astype(np.float32)
