"""Mozilla Common Voice: manifests for any language, from a release as downloaded.

    cv-corpus-<version>/<lang>/{train,dev,test}.tsv   client_id, path, sentence, ... (tab-separated, header line)
    cv-corpus-<version>/<lang>/clips/<path>           mp3 clips
    cv-corpus-<version>/<lang>/clip_durations.tsv     clip, duration[ms] (newer releases; saves reading mp3 headers)

Rows with an empty sentence are skipped and reported, as are clips that are missing or unreadable.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from tqdm import tqdm

from asr.audio import AudioError, audio_duration
from asr.data import Utterance
from asr.datasets.corpus import check_max_utts, find_corpus_dir, read_tsv, report_skipped, write_splits

logger = logging.getLogger(__name__)

CORPUS = "commonvoice"
SPLITS = ("train", "dev", "test")
_LOCALE = re.compile(r"^[a-z]{2,3}(-[A-Za-z]{2,4})?$")  # Common Voice folder names: en, fr, zh-CN, sv-SE


def prepare_commonvoice(
    out_dir: str | os.PathLike,
    root: str | os.PathLike,
    *,
    lang: str | None = None,
    splits: tuple[str, ...] | list[str] = SPLITS,
    max_utts: int | None = None,
    progress: bool = True,
) -> dict[str, Path]:
    """Write `{split}.jsonl` for each of `splits` (tsv file names: train, dev, test, validated, ...).

    root: the language folder of a release (`cv-corpus-*/<lang>`), or the release folder with `lang` set.
    lang: the language code, stored in each utterance (default: the language folder's name).
    max_utts: keep only the first this many rows of each tsv (smoke runs).
    Utterance ids are the clip names without extension; speakers are the tsv's client_id.
    """
    check_max_utts(max_utts, CORPUS)
    folder = find_corpus_dir(root, ("", lang) if lang else ("",), f"{splits[0]}.tsv", CORPUS)
    if lang and folder.name != lang and _LOCALE.match(folder.name):
        raise ValueError(f"{CORPUS}: data.root {folder} holds Common Voice language {folder.name!r}, but "
                         f"lang={lang!r} (set data.source_lang={folder.name})")
    lang = lang or folder.name
    known = clip_durations(folder)
    result = {}
    for split in splits:
        rows = read_tsv(folder / f"{split}.tsv", ("path", "sentence"))[:max_utts]
        skipped: list[str] = []
        utterances = []
        seen: set[str] = set()
        for lineno, row in tqdm(rows, desc=f"{CORPUS} {split}", unit="clip", disable=not progress):
            where = f"{folder / f'{split}.tsv'}:{lineno}"
            sentence = " ".join(row["sentence"].split())
            if not sentence:
                skipped.append(f"{where}: clip {row['path']!r} has an empty sentence")
                continue
            utt = clip_utterance(folder, row["path"], known, skipped, where, text=sentence,
                                 speaker=row.get("client_id") or None, lang=lang)
            if utt is not None and utt.id in seen:
                skipped.append(f"{where}: clip {row['path']!r} is listed twice")
            elif utt is not None:
                seen.add(utt.id)
                utterances.append(utt)
        report_skipped(CORPUS, split, skipped)
        result[split] = utterances
    return write_splits(out_dir, result, CORPUS)


def clip_durations(folder: Path) -> dict[str, float]:
    """Clip name -> seconds from clip_durations.tsv, when the release has one (else empty)."""
    path = folder / "clip_durations.tsv"
    if not path.is_file():
        return {}
    durations = {}
    for lineno, row in read_tsv(path, ("clip", "duration[ms]")):
        try:
            durations[row["clip"]] = float(row["duration[ms]"]) / 1000
        except ValueError:
            logger.warning("%s:%d: duration %r is not a number; the clip's header will be read instead",
                           path, lineno, row["duration[ms]"])
    return durations


def clip_utterance(folder: Path, name: str, known: dict[str, float], skipped: list[str], where: str,
                   **fields: str | None) -> Utterance | None:
    """The Utterance of clip `name` in folder/clips (None, with a note in `skipped`, when it cannot be used).

    Early releases list clips without the .mp3 extension, so that is tried too.
    """
    if not name.strip():
        skipped.append(f"{where}: empty clip path")
        return None
    audio = folder / "clips" / name
    if not audio.is_file() and not Path(name).suffix and (folder / "clips" / f"{name}.mp3").is_file():
        audio = folder / "clips" / f"{name}.mp3"
    duration = known.get(audio.name) if audio.is_file() else None
    if duration is None or duration <= 0:
        try:
            duration = audio_duration(audio)
        except AudioError as error:
            skipped.append(f"{where}: {error}")
            return None
    return Utterance(id=Path(name).stem, audio=str(audio.resolve()), duration=duration, **fields)
