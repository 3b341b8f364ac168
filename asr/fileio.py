"""Crash-safe file writes and safe tensor loading, shared by checkpoints, model dirs, manifests and stats."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> None:
    """Write a file through `write(fileobj)` so that `path` is either the old or the new file, never half.

    The temporary file lives in the same directory (os.replace is atomic only within a file
    system) and is fsynced before the rename, so a crash or SIGKILL at any moment leaves a
    complete file behind. An existing file's permissions are kept.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    # Make the rename itself durable.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def write_json(path: str | os.PathLike, value: Any) -> None:
    """Write JSON (UTF-8, indented) atomically."""
    atomic_write_text(path, json.dumps(value, indent=1, ensure_ascii=False) + "\n")


def save_tensors(state: dict[str, Any], path: str | os.PathLike) -> None:
    """torch.save `state` (tensors and plain containers only) to `path` atomically."""
    atomic_write(path, lambda f: torch.save(state, f))


def load_tensors(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """torch.load with weights_only=True (never unpickles arbitrary objects); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for truncated or foreign files
        raise ValueError(f"{path}: cannot load ({type(e).__name__}: {e})") from e
