"""`--report FILE`: the benchmark table the docs publish (figure, goal, verdict, date, commit, machine, command).

Rows are keyed by benchmark name: a run of some benchmarks replaces their rows and keeps the others', so
`python -m raymlops.bench ddp_search --report docs/benchmarks-latest.md` refreshes one row of the page.
"""

from __future__ import annotations

import math
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

COMPARED = {
    "overhead": "16 tiny 1-worker trials, 2 at a time: the raymlops search vs a bare Tune function trainable (wall)",
    "asha": "32 seeded fast-CNN configs on CIFAR-10, 9 epochs: ASHA vs FIFO (epochs trained)",
    "tracking": "the training loop with rank-0 MLflow logging on vs off (wall)",
    "throughput": "the raymlops loop (1 worker) vs a bare PyTorch loop, same model, data and batch (samples/s)",
    "ddp": "2-worker gloo DDP: Ray Train through raymlops vs the same loop under torchrun (training seconds)",
    "ddp_search": "6 two-worker DDP trials, one at a time: raymlops on a warm lane vs Ray's documented pattern (wall)",
    "gpu": "the fast CIFAR-10 recipe on one GPU, mean test accuracy over seeds",
}
HEADER = "| benchmark | compared | figure | goal | verdict | date | commit | machine | reproduce |"
RULE = "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
PREAMBLE = (
    "# Benchmarks: latest table\n\n"
    "Written by `python -m raymlops.bench NAME --report FILE`; each row is replaced when its benchmark runs again.\n"
    "The figure is the median ratio over rounds (raymlops / the bare tool, measured side by side in one run).\n"
    "A benchmark missing here has not been run with `--report` yet: [the benchmarks page](benchmarks.md) has its last\n"
    "figure.\n\n"
)


def verdict(ratio: float, goal: str) -> str:
    """'met' / 'not met' for a goal like '<=1.2' or '>=0.94 ...'; 'unmeasured' when the figure is NaN."""
    if math.isnan(ratio):
        return "unmeasured"
    found = re.match(r"\s*(<=|>=)\s*([0-9.]+)", goal)
    if not found:
        return "no numeric goal"
    limit = float(found.group(2))
    ok = ratio <= limit if found.group(1) == "<=" else ratio >= limit
    return "met" if ok else "not met"


def commit() -> str:
    """The short commit of the checkout the benchmark ran from, '+dirty' when the code or configs it runs
    (raymlops/, conf/, pyproject.toml) had uncommitted changes; docs and the report itself do not count."""
    cwd = Path(__file__).resolve().parents[2]
    status = ["git", "status", "--porcelain", "--untracked-files=no", "--", "raymlops", "conf", "pyproject.toml"]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(status, cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "not recorded (no git)"
    if head.returncode != 0:
        return "not recorded (not a git checkout)"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def machine() -> str:
    """Cores, memory, architecture and accelerator of this machine, e.g. '2 CPUs, 24 GiB, x86_64, no GPU'."""
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    gpu = "no GPU"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return f"{os.cpu_count()} CPUs, {mem:.0f} GiB, {platform.machine()}, {gpu}"


def row(record: dict[str, Any], sha: str, where: str) -> str:
    ratio = float(record["ratio"])
    figure = "—" if math.isnan(ratio) else f"**{ratio:.3f}**"
    command = f"`python -m raymlops.bench {record['name']}" + (
        f" --repeats {record['repeats']}" if record["repeats"] != 3 else ""
    )
    command += " --quick`" if record.get("quick") else "`"
    cells = [
        f"`{record['name']}`",
        COMPARED.get(record["name"], ""),
        figure + (" (quick sizes)" if record.get("quick") else ""),
        record["goal"],
        verdict(ratio, record["goal"]),
        record["time"][:10],
        f"`{sha}`",
        where + (f", load {record['load_before']:.1f} before it ran" if "load_before" in record else ""),
        command,
    ]
    return "| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |"


def kept_rows(path: Path, replaced: set[str]) -> dict[str, str]:
    """The rows already in the report, by benchmark name, less those being replaced."""
    if not path.exists():
        return {}
    rows = {}
    for line in path.read_text().splitlines():
        found = re.match(r"\| `([a-z_]+)` \|", line)
        if found and found.group(1) not in replaced:
            rows[found.group(1)] = line
    return rows


def write_report(path: Path, records: list[dict[str, Any]]) -> Path:
    """Write (or update) the markdown table at path with one row per benchmark record."""
    sha, where = commit(), machine()
    rows = kept_rows(path, {r["name"] for r in records})
    rows.update({r["name"]: row(r, sha, where) for r in records})
    order = [*COMPARED, *sorted(set(rows) - set(COMPARED))]
    lines = [HEADER, RULE, *(rows[name] for name in order if name in rows)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(PREAMBLE + "\n".join(lines) + "\n")
    return path
