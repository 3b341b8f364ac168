"""Corpus preparers, by name: each writes {data.dir}/{split}.jsonl manifests for a recipe.

A recipe's `recipe.prepare` is {"kind": <name>, **arguments}; the arguments go to the preparer, so a
new corpus is a new function registered here plus a conf/recipe/<name>.yaml.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from asr.data import import_kaldi_dir, write_manifest


def _synth(out_dir: Path, root: str | None, **kwargs: Any) -> None:
    from asr.datasets.synth import prepare_synth

    prepare_synth(out_dir, **kwargs)


def _fsdd(out_dir: Path, root: str | None, **kwargs: Any) -> None:
    from asr.datasets.fsdd import prepare_fsdd

    if root is None:
        raise ValueError("recipe fsdd: set data.root to the FSDD folder (e.g. data.root=../shared/data/fsdd)")
    prepare_fsdd(out_dir, root, **kwargs)


def _freedict(out_dir: Path, root: str | None, **kwargs: Any) -> None:
    """root: the folder with freedict-eng-deu.index and .dict.dz; None reads /usr/share/dictd."""
    from asr.datasets.freedict import prepare_freedict

    prepare_freedict(out_dir, root, **kwargs)


def _kaldi(out_dir: Path, root: str | None, splits: dict[str, str] | None = None, lang: str | None = None) -> None:
    """splits: manifest name -> Kaldi data dir (relative to data.root), e.g. {train: train_clean_100}."""
    if not splits:
        raise ValueError("recipe.prepare.splits: give manifest names and Kaldi data dirs, e.g. {train: data/train}")
    base = Path(root) if root is not None else Path()
    for name, data_dir in splits.items():
        write_manifest(out_dir / f"{name}.jsonl", import_kaldi_dir(base / data_dir, lang=lang))


def _corpus_root(recipe: str, root: str | None, example: str) -> str:
    if root is None:
        raise ValueError(f"recipe {recipe}: set data.root to the corpus as downloaded (e.g. data.root={example})")
    return root


def _librispeech(out_dir: Path, root: str | None, **kwargs: Any) -> None:
    from asr.datasets.librispeech import prepare_librispeech

    prepare_librispeech(out_dir, _corpus_root("librispeech", root, "/data/LibriSpeech"), **kwargs)


def _commonvoice(out_dir: Path, root: str | None, **kwargs: Any) -> None:
    from asr.datasets.commonvoice import prepare_commonvoice

    prepare_commonvoice(out_dir, _corpus_root("commonvoice", root, "/data/cv-corpus-17.0-2024-03-15/en"), **kwargs)


def _tedlium(out_dir: Path, root: str | None, **kwargs: Any) -> None:
    from asr.datasets.tedlium import prepare_tedlium

    prepare_tedlium(out_dir, _corpus_root("tedlium", root, "/data/TEDLIUM_release-3"), **kwargs)


def _aishell(out_dir: Path, root: str | None, **kwargs: Any) -> None:
    from asr.datasets.aishell import prepare_aishell

    prepare_aishell(out_dir, _corpus_root("aishell", root, "/data/data_aishell"), **kwargs)


def _mustc(out_dir: Path, root: str | None, **kwargs: Any) -> None:
    from asr.datasets.mustc import prepare_mustc

    prepare_mustc(out_dir, _corpus_root("mustc", root, "/data/MUSTC_v1.0/en-de"), **kwargs)


def _covost(out_dir: Path, root: str | None, **kwargs: Any) -> None:
    from asr.datasets.covost import prepare_covost

    prepare_covost(out_dir, _corpus_root("covost", root, "/data/cv-corpus-4/fr"), **kwargs)


PREPARERS: dict[str, Callable[..., None]] = {
    "synth": _synth, "fsdd": _fsdd, "freedict": _freedict, "kaldi": _kaldi, "librispeech": _librispeech,
    "commonvoice": _commonvoice,
    "tedlium": _tedlium, "aishell": _aishell, "mustc": _mustc, "covost": _covost,
}


def prepare_corpus(out_dir: Path, root: str | None, settings: dict[str, Any]) -> None:
    """Run the preparer named by settings["kind"] with the other settings as arguments."""
    settings = dict(settings)
    kind = settings.pop("kind", None)
    if kind not in PREPARERS:
        raise ValueError(f"recipe.prepare.kind={kind!r}: expected one of {sorted(PREPARERS)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        PREPARERS[kind](out_dir, root, **settings)
    except TypeError as error:  # an argument the preparer does not take
        raise ValueError(f"recipe.prepare ({kind}): {error}") from None
