"""Training logs: `metrics.jsonl`, `metrics.csv` and (when installed) TensorBoard event files.

One record per event: {"event": "train" | "valid", "step", "epoch", ...values}. The full history
also lives in the checkpoint, so a resumed run rewrites both files from it: events logged after
the checkpoint by the killed run are dropped instead of being duplicated.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Columns of metrics.csv; records may leave any of them empty.
CSV_FIELDS = (
    "event", "step", "epoch", "loss", "att_loss", "ctc_loss", "acc", "lr", "grad_norm", "audio_per_sec",
    "sampling_prob", "nonfinite_skipped", "valid_loss", "valid_att_loss", "valid_ctc_loss", "valid_acc",
    "valid_wer", "valid_cer", "valid_ctc_wer", "valid_decoded_utts", "elapsed",
)


def _json_value(value: Any) -> Any:
    # JSON has no NaN/inf; write them as strings so the file stays valid JSON.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class MetricsLogger:
    """Appends records to metrics.jsonl / metrics.csv and scalars to TensorBoard (if importable)."""

    def __init__(self, exp_dir: str | os.PathLike, history: Sequence[dict[str, Any]] = (), purge_step: int = 0,
                 tensorboard: bool = True):
        self.exp_dir = Path(exp_dir)
        self.exp_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl_path = self.exp_dir / "metrics.jsonl"
        self.csv_path = self.exp_dir / "metrics.csv"
        self._rewrite(history)
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is an optional dependency
                SummaryWriter = None
            if SummaryWriter is not None:
                # purge_step hides events a killed run wrote after the checkpoint we resume from.
                self.writer = SummaryWriter(str(self.exp_dir / "tensorboard"), purge_step=purge_step or None)

    def _rewrite(self, history: Sequence[dict[str, Any]]) -> None:
        with open(self.jsonl_path, "w") as f:
            for record in history:
                f.write(json.dumps({k: _json_value(v) for k, v in record.items()}) + "\n")
        with open(self.csv_path, "w", newline="") as f:
            writer = csv.DictWriter(f, CSV_FIELDS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(history)

    def log(self, record: dict[str, Any]) -> None:
        with open(self.jsonl_path, "a") as f:
            f.write(json.dumps({k: _json_value(v) for k, v in record.items()}) + "\n")
        with open(self.csv_path, "a", newline="") as f:
            csv.DictWriter(f, CSV_FIELDS, extrasaction="ignore").writerow(record)
        if self.writer is not None:
            group = record["event"]
            for key, value in record.items():
                if key not in ("event", "step", "epoch") and isinstance(value, (int, float)):
                    name = key.removeprefix("valid_")
                    self.writer.add_scalar(f"{group}/{name}", value, int(record["step"]))
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read metrics.jsonl back (NaN/inf strings become floats again)."""
    records = []
    for line in Path(path).read_text().splitlines():
        record = json.loads(line)
        records.append({k: float(v) if v in ("nan", "inf", "-inf") else v for k, v in record.items()})
    return records
