"""CoVoST 2: speech translation manifests from Common Voice clips and the CoVoST 2 tsv.

    <cv lang folder>/clips/*.mp3                       Common Voice (release 4 for CoVoST 2)
    <cv lang folder>/validated.tsv                     path, sentence, ... (used when the CoVoST tsv has no sentence)
    <cv lang folder>/covost_v2.<src>_<tgt>.tsv         path, [sentence,] translation, [client_id,] split

The `split` column gives the split: train (with `train_covost`, as in fairseq), dev and test.
Rows with an empty sentence or translation are skipped and reported.
"""

from __future__ import annotations

import os
from pathlib import Path

from tqdm import tqdm

from asr.datasets.commonvoice import clip_durations, clip_utterance
from asr.datasets.corpus import check_max_utts, find_corpus_dir, read_tsv, report_skipped, write_splits

CORPUS = "covost"
# Manifest name -> values of the tsv's split column.
SPLITS = {"train": ("train", "train_covost"), "dev": ("dev",), "test": ("test",)}


def prepare_covost(
    out_dir: str | os.PathLike,
    root: str | os.PathLike,
    *,
    source_lang: str = "fr",
    target_lang: str = "en",
    covost_tsv: str | os.PathLike | None = None,
    max_utts: int | None = None,
    progress: bool = True,
) -> dict[str, Path]:
    """Write train/dev/test manifests for CoVoST 2 `source_lang` -> `target_lang`; returns split -> path.

    root: the Common Voice language folder of `source_lang` (holding clips/), or a folder holding it
    as `<source_lang>/` (fairseq's COVOST_ROOT). covost_tsv: the CoVoST 2 tsv (default:
    `covost_v2.<src>_<tgt>.tsv` in that folder or in root). max_utts: keep the first this many rows
    of each split (smoke runs). Utterances carry the transcript as `text` and the translation as
    `target_text`.
    """
    check_max_utts(max_utts, CORPUS)
    folder = find_corpus_dir(root, ("", source_lang), "clips", CORPUS)
    tsv = _covost_tsv(Path(root), folder, source_lang, target_lang, covost_tsv)
    rows = read_tsv(tsv, ("path", "translation", "split"))
    sentences = None
    if rows and "sentence" not in rows[0][1]:
        validated = folder / "validated.tsv"
        if not validated.is_file():
            raise FileNotFoundError(f"{CORPUS}: {tsv} has no sentence column and {validated} is missing")
        sentences = {row["path"]: row["sentence"] for _, row in read_tsv(validated, ("path", "sentence"))}
    known = clip_durations(folder)
    by_split: dict[str, list[tuple[int, dict[str, str]]]] = {name: [] for name in SPLITS}
    for lineno, row in rows:
        for name, values in SPLITS.items():
            if row["split"] in values:
                by_split[name].append((lineno, row))
    result = {}
    for name, split_rows in by_split.items():
        skipped: list[str] = []
        utterances = []
        seen: set[str] = set()
        for lineno, row in tqdm(split_rows[:max_utts], desc=f"{CORPUS} {name}", unit="clip", disable=not progress):
            where = f"{tsv}:{lineno}"
            sentence = row["sentence"] if sentences is None else sentences.get(row["path"], "")
            sentence, translation = " ".join(sentence.split()), " ".join(row["translation"].split())
            if not sentence or not translation:
                skipped.append(f"{where}: clip {row['path']!r} has an empty sentence or translation")
                continue
            utt = clip_utterance(folder, row["path"], known, skipped, where, text=sentence,
                                 speaker=row.get("client_id") or None, lang=source_lang,
                                 target_text=translation, target_lang=target_lang)
            if utt is not None and utt.id in seen:
                skipped.append(f"{where}: clip {row['path']!r} is listed twice")
            elif utt is not None:
                seen.add(utt.id)
                utterances.append(utt)
        report_skipped(CORPUS, name, skipped)
        result[name] = utterances
    return write_splits(out_dir, result, CORPUS)


def _covost_tsv(root: Path, folder: Path, source_lang: str, target_lang: str,
                given: str | os.PathLike | None) -> Path:
    if given is not None:
        path = Path(given) if Path(given).is_absolute() else root / given
        if not path.is_file():
            raise FileNotFoundError(f"{CORPUS}: covost_tsv={given} not found (looked at {path})")
        return path
    name = f"covost_v2.{source_lang}_{target_lang}.tsv"
    for place in (folder, root):
        if (place / name).is_file():
            return place / name
    packed = [p / f"{name}.tar.gz" for p in (folder, root) if (p / f"{name}.tar.gz").is_file()]
    hint = f"; unpack {packed[0]} first" if packed else ""
    raise FileNotFoundError(f"{CORPUS}: {name} not found in {folder} or {root}{hint} "
                            "(or set recipe.prepare.covost_tsv)")
