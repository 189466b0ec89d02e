"""Run the test tiers one after another (every tier, always) and end with one line per tier: wall and CPU time.

    python tests/run_tiers.py [pytest args ...]       (what `make test` and .ci/run run)

CPU is the whole machine's busy time during the tier (from /proc/stat: user + nice + system, all cores),
so Ray's daemons, actors and servers the tests start count too; on a machine with nothing else running
it is the tier's own. Wall much larger than CPU / cores is time the suite spends waiting.
The exit status is the first failing tier's (pytest's exit 5, "no tests collected", counts as a failure).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

TIERS = [("always-on", "not slow"), ("slow", "slow")]
# Two pytest-xdist workers, a test file each at a time (a module's tests share its Ray cluster and fixtures),
# the longest files first (conftest.HEAVY_FIRST): while one test waits on Ray, the other computes.
# Tests marked `serial` run after the rest of their tier, alone. RAYMLOPS_TEST_WORKERS=0 runs a tier in one process.
WORKERS = os.environ.get("RAYMLOPS_TEST_WORKERS", "2")


def busy_cpu_seconds() -> float:
    """Seconds of CPU the whole machine has spent busy since boot (user + nice + system, every core)."""
    with open("/proc/stat") as fh:
        fields = fh.readline().split()[1:]
    user, nice, system = (int(v) for v in fields[:3])
    return (user + nice + system) / os.sysconf("SC_CLK_TCK")


def run_tier(marker: str, extra: list[str]) -> tuple[int, float, float]:
    """The tier's tests on the xdist workers, then its `serial` ones in one process with the machine to
    themselves (their assertions measure concurrency: trials logging at once); exit 5 only if both are empty."""
    wall0, cpu0 = time.monotonic(), busy_cpu_seconds()
    parallel = ["-n", WORKERS, "--dist", "loadfile", "--no-loadscope-reorder"] if WORKERS not in ("", "0", "1") else []
    pytest = [sys.executable, "-m", "pytest", "-q"]
    codes = [
        subprocess.call([*pytest, "-m", f"({marker}) and not serial", *parallel, *extra]),
        subprocess.call([*pytest, "-m", f"({marker}) and serial", *extra]),
    ]
    ran = [rc for rc in codes if rc != 5]  # 5: pytest collected nothing
    rc = next((rc for rc in ran if rc != 0), 0) if ran else 5
    return rc, time.monotonic() - wall0, busy_cpu_seconds() - cpu0


def main(extra: list[str]) -> int:
    lines, first_failure = [], 0
    for name, marker in TIERS:
        rc, wall, cpu = run_tier(marker, extra)
        first_failure = first_failure or rc
        verdict = "passed" if rc == 0 else f"FAILED (pytest exit {rc})"
        lines.append(
            f"tier {name:<9} (-m '{marker}'): {verdict}; wall {wall / 60:4.1f} min, CPU {cpu / 60:4.1f} min "
            f"({cpu / max(wall, 1e-9):.2f} of {os.cpu_count()} cores busy)"
        )
    print("\n" + "\n".join(lines), flush=True)
    return first_failure


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
