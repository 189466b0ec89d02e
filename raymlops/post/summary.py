"""What a finished search leaves on its parent run: top-k table, learning curves, parameter plots."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

import matplotlib

if "MPLBACKEND" not in os.environ:  # a notebook kernel sets its inline backend there: keep it
    matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def summarize(results: Any, metric: str, mode: str, space_keys: list[str]) -> list[dict[str, Any]]:
    """One row per trial, best first: last metric, epochs run, params, MLflow run id, curve."""
    rows = []
    for r in results:
        m = r.metrics or {}
        if metric not in m:
            continue
        df = r.metrics_dataframe
        curve = df[["epoch", metric]].dropna().values.tolist() if df is not None and "epoch" in df else []
        rows.append(
            {
                "trial_id": m.get("trial_id", ""),
                metric: float(m[metric]),
                "epochs": int(m.get("epoch", len(curve))),
                **{k: r.config.get(k) for k in space_keys},
                "mlflow_run_id": m.get("mlflow_run_id", ""),
                "status": "error" if r.error else "ok",
                "curve": curve,
            }
        )
    sign = -1 if mode == "max" else 1
    rows.sort(key=lambda row: sign * row[metric])
    return rows


def write_top_k(rows: list[dict[str, Any]], k: int, out: Path) -> list[Path]:

    top = [{key: v for key, v in row.items() if key != "curve"} for row in rows[:k]]
    csv_path, json_path = out / "top_trials.csv", out / "top_trials.json"
    if top:
        with open(csv_path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(top[0]))
            writer.writeheader()
            writer.writerows(top)
    else:
        csv_path.write_text("")
    json_path.write_text(json.dumps(top, indent=2, default=str))
    return [csv_path, json_path]


def learning_curves(rows: list[dict[str, Any]], metric: str, max_epochs: int, path: Path) -> None:
    """learning_curves_figure, saved as a PNG."""
    learning_curves_figure(rows, metric, max_epochs).savefig(path, dpi=110)


def learning_curves_figure(rows: list[dict[str, Any]], metric: str, max_epochs: int) -> Figure:
    """metric vs epoch for every trial; trials stopped early end visibly sooner (dashed). A Figure of no
    pyplot state: nothing to close, and a notebook shows it inline."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    for i, row in enumerate(rows):
        if not row["curve"]:
            continue
        xs, ys = zip(*row["curve"], strict=True)
        stopped = row["epochs"] < max_epochs
        ax.plot(
            xs,
            ys,
            marker="o",
            ms=3,
            lw=1.2 if not stopped else 0.8,
            ls="--" if stopped else "-",
            alpha=0.95 if i == 0 else 0.6,
            label=f"best: {row['trial_id']}" if i == 0 else None,
            color="C3" if i == 0 else None,
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_xlim(0.5, max_epochs + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"{metric} per epoch, {len(rows)} trials (dashed: stopped early)")
    ax.grid(alpha=0.3)
    if any(row["curve"] for row in rows):
        ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def param_plots(rows: list[dict[str, Any]], metric: str, space_keys: list[str], path: Path) -> None:
    """One panel per searched parameter: its value against the trial's final metric."""
    n = max(1, len(space_keys))
    cols = min(3, n)
    fig, axes = plt.subplots(math.ceil(n / cols), cols, figsize=(4.2 * cols, 3.4 * math.ceil(n / cols)), squeeze=False)
    for ax, key in zip(axes.flat, space_keys, strict=False):
        values = [row.get(key) for row in rows]
        ys = [row[metric] for row in rows]
        numbers = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if len(numbers) == len(values):
            ax.scatter(numbers, ys, s=18, alpha=0.8)
            if numbers and min(numbers) > 0 and max(numbers) / min(numbers) > 20:
                ax.set_xscale("log")
        else:
            labels = sorted({str(v) for v in values})
            ax.scatter([labels.index(str(v)) for v in values], ys, s=18, alpha=0.8)
            ax.set_xticks(range(len(labels)), labels, rotation=20, fontsize=8)
        ax.set_xlabel(key)
        ax.set_ylabel(f"final {metric}")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(space_keys) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parallel_coordinates(rows: list[dict[str, Any]], metric: str, space_keys: list[str], path: Path) -> None:
    """One line per trial across the searched parameters and the metric (each axis scaled 0..1 over the
    trials, log for ranges wider than 20x), coloured by the metric: shows which region of the space won."""
    axes = [*space_keys, metric]
    columns = [_unit_axis([row.get(k) for row in rows]) for k in axes]
    fig, ax = plt.subplots(figsize=(max(6.0, 2.2 * len(axes)), 4.5))
    values = [row[metric] for row in rows]
    lo, hi = min(values), max(values)
    cmap = plt.get_cmap("viridis")
    for i in reversed(range(len(rows))):  # the best (row 0) drawn last, on top
        ys = [col[0][i] for col in columns]
        colour = "C3" if i == 0 else cmap((values[i] - lo) / (hi - lo) if hi > lo else 1.0)
        ax.plot(range(len(axes)), ys, color=colour, lw=2.2 if i == 0 else 1.0, alpha=1.0 if i == 0 else 0.7)
    for x, (_, labels) in enumerate(columns):
        ax.axvline(x, color="0.6", lw=0.8)
        ax.text(x, -0.08, labels[0], ha="center", va="top", fontsize=7)
        ax.text(x, 1.04, labels[1], ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(axes)), axes, fontsize=8)
    ax.set_yticks([])
    ax.set_ylim(-0.15, 1.12)
    ax.set_title(f"search space, {len(rows)} trials; colour: final {metric}, red: best", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _unit_axis(values: list[Any]) -> tuple[list[float], tuple[str, str]]:
    """Values mapped onto 0..1, and the labels of the axis' two ends."""
    numbers = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(numbers) != len(values):
        labels = sorted({str(v) for v in values})
        span = max(1, len(labels) - 1)
        return [labels.index(str(v)) / span for v in values], (labels[0], labels[-1])
    lo, hi = min(numbers), max(numbers)
    scale = math.log10 if lo > 0 and hi / lo > 20 else (lambda v: v)
    a, b = scale(lo), scale(hi)
    return [(scale(v) - a) / (b - a) if b > a else 0.5 for v in numbers], (f"{lo:.3g}", f"{hi:.3g}")
