"""Training checkpoints: atomic writes, RNG snapshots, best-k retention, weight averaging.

Layout under `exp_dir/checkpoints/`:
    last.pt          the latest state (resume starts here); rewritten atomically (asr.fileio)
    step{N}.pt       a validated checkpoint, kept while it is among the best `keep_best`
    index.json       the kept checkpoints with their metric, best first (for the `average` stage)

Every checkpoint is a dict of tensors, numbers, strings and plain containers only, so it loads
with `torch.load(path, weights_only=True)`: nothing is ever unpickled.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asr.fileio import load_tensors, save_tensors, write_json

CHECKPOINT_VERSION = 1


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> None:
    """torch.save `state` to `path` atomically (asr.fileio.save_tensors: a crash leaves the old file or
    the new one, never half of one)."""
    save_tensors(state, path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (asr.fileio.load_tensors: weights_only=True); errors name the file."""
    try:
        return load_tensors(path, map_location=map_location)
    except ValueError as error:  # truncated or foreign: say that it was meant to be a checkpoint
        cause = error.__cause__
        raise ValueError(f"{path}: cannot load checkpoint ({type(cause).__name__}: {cause})") from cause


# --- random number generators -------------------------------------------------------------------


def capture_rng_state() -> dict[str, Any]:
    """Every RNG the training loop can draw from, as weights_only-loadable values."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of `capture_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --- best-k retention ---------------------------------------------------------------------------


class CheckpointManager:
    """Writes `last.pt` and keeps the best `keep_best` validated checkpoints by one metric.

    The list of kept checkpoints is part of the training state (`state_dict()`), so a resumed
    run continues the same ranking; `index.json` mirrors it for tools outside the trainer.
    write=False (DDP ranks other than 0) keeps the same ranking without touching the disk.
    """

    def __init__(self, directory: str | os.PathLike, keep_best: int, higher_is_better: bool, write: bool = True):
        if keep_best < 1:
            raise ValueError(f"CheckpointManager: keep_best must be >= 1, got {keep_best}")
        self.directory = Path(directory)
        self.keep_best = keep_best
        self.higher_is_better = higher_is_better
        self.write = write
        self.kept: list[dict[str, Any]] = []  # {"name", "step", "epoch", "metric"}, best first

    @property
    def last_path(self) -> Path:
        return self.directory / "last.pt"

    def _rank_key(self, entry: dict[str, Any]) -> tuple[float, int]:
        metric = entry["metric"]
        if not math.isfinite(metric):
            metric = math.inf  # a NaN/inf metric never ranks above a finite one
        elif self.higher_is_better:
            metric = -metric
        return metric, -entry["step"]  # ties: the later checkpoint first

    def would_keep(self, metric: float) -> bool:
        """Whether a checkpoint with this metric value enters the best `keep_best`."""
        if len(self.kept) < self.keep_best:
            return True
        return self._rank_key({"metric": metric, "step": math.inf}) < self._rank_key(self.kept[-1])

    def best(self) -> dict[str, Any] | None:
        return self.kept[0] if self.kept else None

    def save_last(self, state: dict[str, Any]) -> Path:
        state["checkpoints"] = self.state_dict()
        if self.write:
            save_checkpoint(state, self.last_path)
        return self.last_path

    def save_validated(self, state: dict[str, Any], step: int, epoch: int, metric: float) -> Path | None:
        """Rank a validated checkpoint; write it when it makes the best k, drop the one it displaces.

        Always rewrites `last.pt` too (with the updated ranking). Returns the kept path or None.
        """
        entry = {"name": f"step{step}.pt", "step": int(step), "epoch": int(epoch), "metric": float(metric)}
        kept_path = None
        if self.would_keep(metric):
            self.kept = sorted([e for e in self.kept if e["step"] != step] + [entry], key=self._rank_key)
            dropped, self.kept = self.kept[self.keep_best :], self.kept[: self.keep_best]
            state["checkpoints"] = self.state_dict()
            kept_path = self.directory / entry["name"]
            if self.write:
                save_checkpoint(state, kept_path)
                for old in dropped:
                    (self.directory / old["name"]).unlink(missing_ok=True)
        self.save_last(state)
        if self.write:
            write_json(self.directory / "index.json", self.index())
        return kept_path

    def index(self) -> dict[str, Any]:
        return {"higher_is_better": self.higher_is_better, "best": [dict(e) for e in self.kept]}

    def state_dict(self) -> dict[str, Any]:
        return {"keep_best": self.keep_best, "higher_is_better": self.higher_is_better,
                "kept": [dict(e) for e in self.kept]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.kept = sorted((dict(e) for e in state["kept"]), key=self._rank_key)[: self.keep_best]

    def remove_partial_writes(self) -> None:
        """Delete the temporary files of writes that a killed process never finished (asr.fileio.atomic_write)."""
        for path in self.directory.glob(".*.tmp"):
            path.unlink(missing_ok=True)

    def remove_strays(self) -> None:
        """Delete step checkpoints not in the ranking (written after the state a run resumed from)."""
        names = {e["name"] for e in self.kept}
        for path in self.directory.glob("step*.pt"):
            if path.name not in names:
                path.unlink()
        write_json(self.directory / "index.json", self.index())


# --- averaging ----------------------------------------------------------------------------------


def select_checkpoints(exp_dir: str | os.PathLike, num: int, by: str = "best") -> list[Path]:
    """Paths of the `num` best (by the training metric) or latest kept checkpoints of an experiment."""
    directory = Path(exp_dir) / "checkpoints"
    index_path = directory / "index.json"
    if not index_path.is_file():
        raise FileNotFoundError(f"{index_path} not found: has this experiment been trained and validated?")
    kept = json.loads(index_path.read_text())["best"]
    if by == "last":
        kept = sorted(kept, key=lambda e: e["step"], reverse=True)
    elif by != "best":
        raise ValueError(f"select_checkpoints: by must be 'best' or 'last', got {by!r}")
    if not kept:
        raise ValueError(f"{index_path}: lists no checkpoints")
    return [directory / e["name"] for e in kept[:num]]


def average_checkpoints(paths: Sequence[str | os.PathLike]) -> dict[str, torch.Tensor]:
    """Average the model weights stored in `paths` -> a model state_dict.

    Accepts training checkpoints (weights under "model") or bare state_dicts. Floating tensors are
    averaged in float64 and cast back; integer buffers (step counters and the like) cannot be
    meaningfully averaged and are copied from the last checkpoint.
    """
    if not paths:
        raise ValueError("average_checkpoints: no checkpoints given")
    total: dict[str, torch.Tensor] = {}
    first_keys: set[str] = set()
    for i, path in enumerate(paths):
        state = load_checkpoint(path)
        weights = state["model"] if "model" in state and isinstance(state["model"], dict) else state
        if i == 0:
            first_keys = set(weights)
        elif set(weights) != first_keys:
            diff = sorted(set(weights) ^ first_keys)[:5]
            raise ValueError(f"{path}: parameters differ from {paths[0]} (e.g. {diff})")
        for name, tensor in weights.items():
            if tensor.is_floating_point():
                acc = tensor.to(torch.float64)
                total[name] = acc if i == 0 else total[name] + acc
            else:
                total[name] = tensor.clone()
    dtypes = {name: t.dtype for name, t in weights.items()}
    return {name: (t / len(paths)).to(dtypes[name]) if dtypes[name].is_floating_point else t
            for name, t in total.items()}


def average_experiment(exp_dir: str | os.PathLike, num: int = 5, by: str = "best",
                       output: str | os.PathLike | None = None) -> Path:
    """Average the `num` best/last checkpoints of an experiment into `exp_dir/model.avg.pt`."""
    paths = select_checkpoints(exp_dir, num, by)
    output = Path(output) if output is not None else Path(exp_dir) / "model.avg.pt"
    save_checkpoint({"model": average_checkpoints(paths), "averaged_from": [p.name for p in paths]}, output)
    return output
