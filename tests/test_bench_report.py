"""`python -m raymlops.bench NAME --report FILE`: the table the docs publish, written from what ran, rows kept per benchmark."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from raymlops.bench.report import verdict, write_report


def _record(name: str, ratio: float, goal: str, repeats: int = 3) -> dict[str, object]:
    return {"name": name, "ratio": ratio, "goal": goal, "repeats": repeats, "quick": False, "time": "2026-12-04T18:00:00"}


def test_verdicts() -> None:
    assert verdict(0.29, "<=0.30") == "met" and verdict(0.31, "<=0.30") == "not met"
    assert verdict(0.95, ">=0.94 test acc in <=10 s (train_s)") == "met"
    assert verdict(float("nan"), "<=1.2") == "unmeasured"


def test_report_rows_are_replaced_per_benchmark_and_others_kept(tmp_path: Path) -> None:
    path = tmp_path / "bench.md"
    write_report(path, [_record("ddp_search", 0.373, "<=0.35", repeats=1), _record("overhead", 1.42, "<=1.2")])
    write_report(path, [_record("ddp_search", 0.29, "<=0.35")])
    rows = [line for line in path.read_text().splitlines() if line.startswith("| `")]
    assert [r.split("|")[1].strip() for r in rows] == ["`overhead`", "`ddp_search`"], "one row each, in the page's order"
    overhead, ddp_search = rows
    assert "**1.420**" in overhead and "not met" in overhead
    assert "**0.290**" in ddp_search and "| met |" in ddp_search and "0.373" not in path.read_text()
    assert "`python -m raymlops.bench ddp_search`" in ddp_search and "2026-12-04" in ddp_search
    assert f"{os.cpu_count()} CPUs" in ddp_search and "before it ran" not in ddp_search  # no load recorded here


def test_bench_cli_writes_the_report_from_a_real_run(tmp_path: Path) -> None:
    """The CLI end to end on the one benchmark that is quick here: `gpu` has no device to run on, so its
    row says 'unmeasured' with the commit and machine it was tried on."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the gpu benchmark would train for real")
    report = tmp_path / "latest.md"
    done = subprocess.run(
        [sys.executable, "-m", "raymlops.bench", "gpu", "--repeats", "1", "--report", str(report)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"Benchmark table written to {report}" in done.stdout
    (gpu_row,) = [line for line in report.read_text().splitlines() if line.startswith("| `gpu`")]
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    assert "unmeasured" in gpu_row and sha in gpu_row and "no GPU" in gpu_row and "before it ran" in gpu_row
