"""`python -m raymlops.bench NAME [--repeats N] [--quick] [--report FILE]`: run benchmarks, print their table and
ratio, save JSON; with --report, write (or update) the markdown table of figures the docs publish."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from raymlops.bench.harness import OUT
from raymlops.bench.report import write_report
from raymlops.bench.suites import BENCHES
from raymlops.core.console import setup_logging, table
from raymlops.core.errors import cli


def run_bench(name: str, repeats: int, quick: bool) -> dict[str, Any]:
    load_before = os.getloadavg()[0]  # 1-minute load average: other work beside the benchmark shows here
    rows, ratio, goal = BENCHES[name](repeats, quick)
    columns = sorted({k for row in rows for k in row}, key=lambda k: (k not in ("round", "side"), k))
    if rows:
        print(table(rows, columns))
    OUT.mkdir(parents=True, exist_ok=True)
    record = {
        "name": name,
        "ratio": ratio,
        "goal": goal,
        "repeats": repeats,
        "quick": quick,
        "rows": rows,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "host_cpus": os.cpu_count(),
        "load_before": load_before,
    }
    path = OUT / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(record, indent=2, default=str))
    print(f"{name} ratio={ratio:.3f} goal={goal}", flush=True)
    return record


@cli
def main(argv: list[str]) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(
        prog="python -m raymlops.bench",
        description="Side-by-side benchmarks: raymlops against the bare tools it wraps, measured in one run.",
    )
    parser.add_argument("name", choices=[*BENCHES, "all"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small sizes (for tests)")
    parser.add_argument(
        "--report",
        type=Path,
        metavar="FILE",
        help="write the markdown table (figure, goal, verdict, date, commit, machine, command) to FILE; "
        "rows of benchmarks not run now are kept",
    )
    args = parser.parse_args(argv)
    setup_logging()
    chosen = [n for n in BENCHES if n != "gpu"] + ["gpu"] if args.name == "all" else [args.name]
    records = [run_bench(n, args.repeats, args.quick) for n in chosen]
    if args.report:
        print(f"Benchmark table written to {write_report(args.report, records)}")
    return records


if __name__ == "__main__":
    main()
