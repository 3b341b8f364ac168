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


def _kaldi(out_dir: Path, root: str | None, splits: dict[str, str] | None = None, lang: str | None = None) -> None:
    """splits: manifest name -> Kaldi data dir (relative to data.root), e.g. {train: train_clean_100}."""
    if not splits:
        raise ValueError("recipe.prepare.splits: give manifest names and Kaldi data dirs, e.g. {train: data/train}")
    base = Path(root) if root is not None else Path()
    for name, data_dir in splits.items():
        write_manifest(out_dir / f"{name}.jsonl", import_kaldi_dir(base / data_dir, lang=lang))


PREPARERS: dict[str, Callable[..., None]] = {"synth": _synth, "fsdd": _fsdd, "kaldi": _kaldi}


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
