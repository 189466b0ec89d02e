"""After a PBT/PB2 search: the lineage (which trial copied which, when) read from the trials' MLflow runs, as
JSON and a plot on the parent run, and the best trial's hyperparameter schedule (what the registry records)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import matplotlib

if "MPLBACKEND" not in os.environ:  # a notebook kernel sets its inline backend there: keep it
    matplotlib.use("Agg")
import matplotlib.pyplot as plt

from raymlops.core import names
from raymlops.tracking.client import client


def lineage(uri: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every exploit of every trial, in epoch order: {trial, epoch, donor_trial, old, donor, new}."""
    c, events = client(uri), []
    for row in rows:
        if not row.get("mlflow_run_id"):
            continue
        tags = c.get_run(row["mlflow_run_id"]).data.tags
        for key, value in tags.items():
            if key.startswith(names.TAG_EXPLOIT_PREFIX):
                events.append({"trial": row["trial_id"], **json.loads(value)})
    return sorted(events, key=lambda e: (e["epoch"], e["trial"]))


def schedule(uri: str, run_id: str) -> list[dict[str, Any]]:
    """A trial's searched values by the epoch they took effect: [{"epoch": 0, "optim.lr": ...}, ...]."""
    c = client(uri)
    keys = [k for k in c.get_run(run_id).data.metrics if k.startswith(names.HP_METRIC_PREFIX)]
    by_epoch: dict[int, dict[str, Any]] = {}
    for key in keys:
        for m in c.get_metric_history(run_id, key):
            by_epoch.setdefault(int(m.step), {"epoch": int(m.step)})[key.removeprefix(names.HP_METRIC_PREFIX)] = m.value
    return [by_epoch[e] for e in sorted(by_epoch)]


def write_lineage(events: list[dict[str, Any]], rows: list[dict[str, Any]], max_epochs: int, out: Path) -> list[Path]:
    """pbt_lineage.json and pbt_lineage.png: one line per trial over epochs, an arrow per exploit (donor -> copier)."""
    json_path, png = out / "pbt_lineage.json", out / "pbt_lineage.png"
    json_path.write_text(json.dumps(events, indent=2))
    ids = [r["trial_id"] for r in rows]
    y = {tid: i for i, tid in enumerate(ids)}
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(ids) + 2))
    for tid, row in zip(ids, rows, strict=True):
        ax.plot([0, row["epochs"]], [y[tid], y[tid]], color="C0" if y[tid] else "C3", lw=2 if not y[tid] else 1)
    for e in events:
        if e["trial"] in y and e.get("donor_trial") in y:
            ax.annotate(
                "",
                xy=(e["epoch"], y[e["trial"]]),
                xytext=(e["epoch"], y[e["donor_trial"]]),
                arrowprops={"arrowstyle": "->", "color": "C1", "lw": 1.2},
            )
    ax.set_yticks(range(len(ids)), [t.rsplit("_", 1)[-1] + (" (best)" if not i else "") for i, t in enumerate(ids)])
    ax.set_xlim(-0.2, max_epochs + 0.2)
    ax.set_xlabel("epoch")
    ax.set_title(f"PBT lineage: {len(events)} exploit(s); arrow = copied from donor at that epoch")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return [json_path, png]
