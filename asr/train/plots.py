"""Training figures: loss/accuracy/WER curves and cross-attention alignments (matplotlib, Agg backend)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on training machines; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
from torch import Tensor  # noqa: E402

# (series: (metric key, legend label), event, y label, title) per panel.
_PANELS = (
    ((("loss", ""),), "train", "loss", "train loss"),
    ((("valid_loss", ""),), "valid", "loss", "valid loss"),
    ((("valid_acc", ""),), "valid", "token accuracy", "valid acc"),
    ((("valid_wer", "attention greedy"), ("valid_ctc_wer", "CTC greedy")), "valid", "WER", "valid WER"),
)


def _series(history: Sequence[dict[str, Any]], key: str, event: str) -> tuple[list[int], list[float]]:
    steps, values = [], []
    for record in history:
        value = record.get(key)
        if record.get("event") == event and isinstance(value, (int, float)) and math.isfinite(value):
            steps.append(int(record["step"]))
            values.append(float(value))
    return steps, values


def plot_training_curves(history: Sequence[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Train loss, valid loss, valid accuracy and valid WERs against the step, as one 2x2 PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), constrained_layout=True)
    for ax, (series, event, ylabel, title) in zip(axes.flat, _PANELS):
        plotted = 0
        for key, label in series:
            steps, values = _series(history, key, event)
            if steps:
                ax.plot(steps, values, marker="." if len(steps) < 50 else None, label=label or None)
                plotted += 1
        if not plotted:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        elif len(series) > 1:
            ax.legend()
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def plot_attention(weights: Tensor, path: str | os.PathLike, title: str = "",
                   tokens: Sequence[str] | None = None) -> Path:
    """One utterance's cross-attention, weights (U, T') = output tokens x encoder frames, as a PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    matrix = weights.detach().float().cpu().numpy()
    height = min(8.0, 2.0 + 0.25 * matrix.shape[0])
    fig, ax = plt.subplots(figsize=(8, height), constrained_layout=True)
    image = ax.imshow(matrix, aspect="auto", origin="lower", interpolation="nearest", cmap="viridis")
    fig.colorbar(image, ax=ax)
    ax.set_xlabel("encoder frame")
    ax.set_ylabel("output token")
    if tokens is not None and len(tokens) == matrix.shape[0] and len(tokens) <= 60:
        ax.set_yticks(range(len(tokens)), labels=list(tokens), fontsize=7)
    ax.set_title(title)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
