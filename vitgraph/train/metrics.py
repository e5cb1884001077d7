"""The run's numbers beside its checkpoints, rewritten after every epoch from the whole
history (so a resumed run's files hold every epoch, once): ``metrics.jsonl`` (one JSON
object per epoch), ``metrics.csv`` (one row per epoch, a column per number), and, when
the ``tensorboard`` package is installed, TensorBoard scalars under ``tensorboard/``."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any


def write_metrics(out: Path, history: list[dict[str, Any]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(row) + "\n" for row in history)
    (out / "metrics.jsonl").write_text(lines)
    columns: list[str] = ["epoch"]
    for row in history:
        columns += [k for k in row if k not in columns]
    with open(out / "metrics.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)
    _tensorboard(out, history[-1:] if history else [])


def _tensorboard(out: Path, rows: list[dict[str, Any]]) -> None:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is not a dependency: the files above suffice
        return
    with SummaryWriter(str(out / "tensorboard")) as writer:
        for row in rows:
            for key, value in row.items():
                if key != "epoch" and isinstance(value, int | float):
                    writer.add_scalar(key, value, int(row["epoch"]))
