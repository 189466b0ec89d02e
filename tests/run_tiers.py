"""Run every test tier (always-on and slow) in one pass, then the `serial` tests alone; end with one line per
pass: its wall and CPU time.

    python tests/run_tiers.py [pytest args ...]       (what `make test` and .ci/run run)

Both tiers share one pool of two pytest-xdist workers, a test file each at a time (a module's tests share its Ray
cluster and fixtures), the longest files of either tier first (conftest.HEAVY_FIRST): while one test waits on Ray
or a node's heartbeat, the other computes, and no tier boundary leaves a worker idle. The `slow` mark still picks
a tier alone (`make test-slow`, `make test-fast`).

CPU is the whole machine's busy time during a pass (from /proc/stat: user + nice + system, all cores),
so Ray's daemons, actors and servers the tests start count too; on a machine with nothing else running
it is the pass's own. Wall much larger than CPU / cores is time the suite spends waiting.
The exit status is the first failing pass's; pytest's exit 5 ("no tests collected", e.g. a -k that picks no serial
test) counts as a failure only when both passes collected nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

TIERS = "always-on (-m 'not slow') and slow (-m slow)"
# Tests marked `serial` run after the rest, alone: their assertions measure trials logging at once.
# RAYMLOPS_TEST_WORKERS=0 runs the first pass in one process.
WORKERS = os.environ.get("RAYMLOPS_TEST_WORKERS", "2")


def busy_cpu_seconds() -> float:
    """Seconds of CPU the whole machine has spent busy since boot (user + nice + system, every core)."""
    with open("/proc/stat") as fh:
        fields = fh.readline().split()[1:]
    user, nice, system = (int(v) for v in fields[:3])
    return (user + nice + system) / os.sysconf("SC_CLK_TCK")


def run_pass(marker: str, extra: list[str], parallel: bool) -> tuple[int, float, float]:
    """pytest -m marker (on the xdist workers when parallel); its exit status, wall and the machine's busy CPU."""
    wall0, cpu0 = time.monotonic(), busy_cpu_seconds()
    workers = (
        ["-n", WORKERS, "--dist", "loadfile", "--no-loadscope-reorder"] if parallel and WORKERS not in ("", "0", "1") else []
    )
    rc = subprocess.call([sys.executable, "-m", "pytest", "-q", "-m", marker, *workers, *extra])
    return rc, time.monotonic() - wall0, busy_cpu_seconds() - cpu0


def main(extra: list[str]) -> int:
    lines, codes = [], []
    for name, marker, parallel in (("every tier", "not serial", True), ("serial", "serial", False)):
        rc, wall, cpu = run_pass(marker, extra, parallel)
        codes.append(rc)  # 5: pytest collected nothing (a -k that picks no serial test), a failure only if both did
        verdict = {0: "passed", 5: "no test selected"}.get(rc, f"FAILED (pytest exit {rc})")
        lines.append(
            f"{name:<10} (-m '{marker}'): {verdict}; wall {wall / 60:4.1f} min, CPU {cpu / 60:4.1f} min "
            f"({cpu / max(wall, 1e-9):.2f} of {os.cpu_count()} cores busy)"
        )
    print(f"\ntiers: {TIERS}\n" + "\n".join(lines), flush=True)
    ran = [rc for rc in codes if rc != 5]
    return next((rc for rc in ran if rc != 0), 0) if ran else 5


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
