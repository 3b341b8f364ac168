"""Free Spoken Digit Dataset (FSDD): manifests for the spoken digits "zero" … "nine".

The corpus is 3,000 8 kHz WAVs named `{digit}_{speaker}_{take}.wav` (6 speakers x 10 digits x 50
takes). Upstream holds takes 0-4 out for testing; the takes after them give the dev set, the rest train.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from asr.audio import AudioError, audio_duration
from asr.data import Utterance, write_manifest

logger = logging.getLogger(__name__)

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_NAME = re.compile(r"^(\d)_([a-z]+)_(\d+)\.wav$")


def prepare_fsdd(
    out_dir: str | os.PathLike,
    root: str | os.PathLike,
    *,
    speakers: Sequence[str] | None = None,
    num_test_takes: int = 5,
    num_dev_takes: int = 5,
    num_train_takes: int | None = None,
    progress: bool = True,
) -> dict[str, Path]:
    """Write train/dev/test manifests for FSDD under `out_dir`; audio stays where it is.

    root: the corpus folder (the one holding `recordings/`, or `recordings/` itself).
    speakers: restrict to these speakers (default: all). Takes 0..num_test_takes-1 are test, the
    next num_dev_takes are dev, and the next num_train_takes (default: all the rest) are train.
    Files that do not follow the naming scheme or cannot be read are reported and skipped.
    """
    root = Path(root)
    folder = root / "recordings" if (root / "recordings").is_dir() else root
    files = sorted(folder.glob("*.wav"))
    if not files:
        raise FileNotFoundError(f"prepare_fsdd: no .wav files in {folder}; data.root should point at FSDD")
    wanted = set(speakers) if speakers else None
    first_train = num_test_takes + num_dev_takes
    last_train = first_train + num_train_takes if num_train_takes is not None else None
    splits: dict[str, list[Utterance]] = {"train": [], "dev": [], "test": []}
    for path in tqdm(files, desc="fsdd", unit="file", disable=not progress):
        match = _NAME.match(path.name)
        if match is None:
            logger.warning("prepare_fsdd: skipped %s: not named {digit}_{speaker}_{take}.wav", path)
            continue
        digit, speaker, take = int(match[1]), match[2], int(match[3])
        if wanted is not None and speaker not in wanted:
            continue
        if take < num_test_takes:
            split = "test"
        elif take < first_train:
            split = "dev"
        elif last_train is None or take < last_train:
            split = "train"
        else:
            continue
        try:
            duration = audio_duration(path)
        except AudioError as error:
            logger.warning("prepare_fsdd: skipped %s: %s", path, error)
            continue
        splits[split].append(Utterance(id=path.stem, audio=str(path.resolve()), duration=duration,
                                       text=DIGITS[digit], speaker=speaker, lang="en"))
    if wanted is not None:
        missing = sorted(wanted - {u.speaker for utts in splits.values() for u in utts})
        if missing:
            raise ValueError(f"prepare_fsdd: no recordings of speaker(s) {missing} in {folder}")
    out_dir = Path(out_dir)
    manifests = {}
    for split, utterances in splits.items():
        manifests[split] = out_dir / f"{split}.jsonl"
        write_manifest(manifests[split], utterances)
        logger.info("fsdd %s: %d utterances", split, len(utterances))
    return manifests
