"""Checkpoint edge cases: best-k ranking when full, averaging and selection errors that name the files."""

from __future__ import annotations

import json

import pytest
import torch

from asr.train.checkpoint import (
    CheckpointManager,
    average_checkpoints,
    load_checkpoint,
    save_checkpoint,
    select_checkpoints,
)


def test_best_k_ranking_when_higher_is_better(tmp_path):
    with pytest.raises(ValueError, match="keep_best must be >= 1, got 0"):
        CheckpointManager(tmp_path, keep_best=0, higher_is_better=True)
    manager = CheckpointManager(tmp_path / "checkpoints", keep_best=2, higher_is_better=True)
    assert manager.best() is None and manager.would_keep(0.1)
    for step, acc in [(1, 0.5), (2, 0.7)]:
        manager.save_validated({"model": {"w": torch.full((1,), float(step))}}, step, 0, acc)
    assert not manager.would_keep(0.4) and manager.would_keep(0.6)  # full: only a better one enters
    assert manager.best()["step"] == 2
    # A manager that does not write (DDP ranks other than 0) ranks the same but touches no file.
    silent = CheckpointManager(tmp_path / "silent", keep_best=1, higher_is_better=True, write=False)
    assert silent.save_validated({}, 1, 0, 0.5) == tmp_path / "silent" / "step1.pt"
    assert not (tmp_path / "silent").exists() and silent.best()["step"] == 1


def test_selection_and_averaging_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="index.json not found: has this experiment been trained"):
        select_checkpoints(tmp_path, 2)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "index.json").write_text(json.dumps({"higher_is_better": False, "best": []}))
    with pytest.raises(ValueError, match="by must be 'best' or 'last', got 'worst'"):
        select_checkpoints(tmp_path, 2, by="worst")
    with pytest.raises(ValueError, match="index.json: lists no checkpoints"):
        select_checkpoints(tmp_path, 2)
    with pytest.raises(ValueError, match="no checkpoints given"):
        average_checkpoints([])
    save_checkpoint({"model": {"w": torch.ones(2), "steps": torch.tensor(3)}}, tmp_path / "a.pt")
    save_checkpoint({"w": torch.zeros(2), "steps": torch.tensor(5)}, tmp_path / "b.pt")  # a bare state dict
    averaged = average_checkpoints([tmp_path / "a.pt", tmp_path / "b.pt"])
    assert averaged["w"].tolist() == [0.5, 0.5] and int(averaged["steps"]) == 5  # integers: the last one's
    save_checkpoint({"model": {"v": torch.ones(2)}}, tmp_path / "c.pt")
    with pytest.raises(ValueError, match=r"c.pt: parameters differ from \S*a.pt \(e.g. \['steps', 'v', 'w'\]\)"):
        average_checkpoints([tmp_path / "a.pt", tmp_path / "c.pt"])
    assert load_checkpoint(tmp_path / "b.pt")["w"].tolist() == [0.0, 0.0]
    with pytest.raises(FileNotFoundError, match="missing.pt: no such file"):
        load_checkpoint(tmp_path / "missing.pt")
