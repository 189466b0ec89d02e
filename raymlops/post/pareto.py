"""Multi-objective results: every trial's objective values, the Pareto front (CSV and a plot with the front
highlighted) and the registry.select rule that picks the trial to register."""

from __future__ import annotations

import csv
import operator
import os
from pathlib import Path
from typing import Any

import matplotlib

if "MPLBACKEND" not in os.environ:  # a notebook kernel sets its inline backend there: keep it
    matplotlib.use("Agg")
import matplotlib.pyplot as plt

from raymlops.config.objectives import CONSTRAINT_OPS, describe_rule

_OPS = {"le": operator.le, "lt": operator.lt, "ge": operator.ge, "gt": operator.gt}


def add_metrics(rows: list[dict[str, Any]], results: Any, keys: list[str]) -> None:
    """Each row gets its trial's last reported value of every key (None when the trial never reported it)."""
    last = {(r.metrics or {}).get("trial_id"): r.metrics or {} for r in results}
    for row in rows:
        metrics = last.get(row["trial_id"], {})
        row.update({k: float(metrics[k]) if isinstance(metrics.get(k), (int, float)) else None for k in keys})


def pareto_front(rows: list[dict[str, Any]], goals: dict[str, str]) -> list[dict[str, Any]]:
    """The rows no other row dominates (at least as good in every objective, better in one)."""
    scored = [r for r in rows if all(r.get(m) is not None for m in goals)]

    def better_or_equal(a: dict[str, Any], b: dict[str, Any], m: str) -> bool:
        return bool(a[m] >= b[m]) if goals[m] == "max" else bool(a[m] <= b[m])

    def dominates(a: dict[str, Any], b: dict[str, Any]) -> bool:
        return all(better_or_equal(a, b, m) for m in goals) and any(a[m] != b[m] for m in goals)

    return [r for r in scored if not any(dominates(o, r) for o in scored if o is not r)]


def missing_objectives(rows: list[dict[str, Any]], goals: dict[str, str]) -> list[str]:
    return [m for m in goals if all(r.get(m) is None for r in rows)]


def write_front(rows: list[dict[str, Any]], goals: dict[str, str], space_keys: list[str], out: Path) -> list[Path]:
    """pareto_front.csv (every trial, `on_front` marked) and pareto_front.png (the first two objectives)."""
    front = {r["trial_id"] for r in pareto_front(rows, goals)}
    csv_path = out / "pareto_front.csv"
    cols = ["trial_id", *goals, "on_front", *space_keys, "mlflow_run_id"]
    with open(csv_path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({**r, "on_front": r["trial_id"] in front} for r in rows)
    png = out / "pareto_front.png"
    _plot(rows, front, list(goals)[:2], goals, png)
    return [csv_path, png]


def _plot(rows: list[dict[str, Any]], front: set[str], axes: list[str], goals: dict[str, str], path: Path) -> None:
    y_key, x_key = axes[0], axes[-1]
    pts = [r for r in rows if r.get(x_key) is not None and r.get(y_key) is not None]
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    ax.scatter([r[x_key] for r in pts], [r[y_key] for r in pts], s=22, alpha=0.5, color="C0", label="trials")
    on = sorted((r for r in pts if r["trial_id"] in front), key=lambda r: r[x_key])
    ax.plot([r[x_key] for r in on], [r[y_key] for r in on], "o-", color="C3", ms=7, drawstyle="steps-post", label="Pareto front")
    for r in on:
        ax.annotate(r["trial_id"].rsplit("_", 1)[-1], (r[x_key], r[y_key]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(f"{x_key} ({goals[x_key]})")
    ax.set_ylabel(f"{y_key} ({goals[y_key]})")
    ax.set_title(f"{len(on)} of {len(pts)} trials on the Pareto front")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def select(rows: list[dict[str, Any]], rule: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The row the rule picks and the reason in words; (None, why not) when no trial reports or meets it."""
    needed = [rule["metric"], *rule["constraints"]]
    unreported = [m for m in needed if all(r.get(m) is None for r in rows)]
    if unreported:
        return None, f"no trial reported {', '.join(unreported)}, which registry.select ({describe_rule(rule)}) needs"
    ok = [
        r
        for r in rows
        if r.get(rule["metric"]) is not None
        and all(
            r.get(m) is not None and _OPS[op](r[m], bound)
            for m, spec in rule["constraints"].items()
            for op, bound in spec.items()
        )
    ]
    if not ok:
        seen = "; ".join(
            f"{m} from {min(v for v in vals):.4g} to {max(v for v in vals):.4g}"
            for m in rule["constraints"]
            if (vals := [r[m] for r in rows if r.get(m) is not None])
        )
        limits = ", ".join(f"{m} {CONSTRAINT_OPS[op]} {b}" for m, spec in rule["constraints"].items() for op, b in spec.items())
        return None, f"no trial meets {limits} (seen: {seen}); relax registry.select.constraints"
    best = (max if rule["mode"] == "max" else min)(ok, key=lambda r: r[rule["metric"]])
    return best, f"{describe_rule(rule)}: trial {best['trial_id']} of {len(ok)} meeting the rule"
