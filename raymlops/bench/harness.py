"""The benchmark harness: a throwaway store per run, a local Ray cluster, sides run in alternating order, ratios."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

OUT = Path(".raymlops/bench")
CIFAR = Path(__file__).resolve().parents[3] / "shared" / "data" / "cifar10"


def store(tmp: str) -> list[str]:
    return [
        f"mlflow.tracking_uri=sqlite:///{tmp}/mlflow.db",
        f"mlflow.artifact_location={tmp}/art",
        f"mlflow.spool_dir={tmp}/spool",
        f"storage_path={tmp}/results",
        "evaluate.enabled=false",
    ]


def local_ray(num_cpus: int = 2) -> None:
    import ray

    from raymlops.launch.cluster import start_local_cluster

    if not ray.is_initialized():
        start_local_cluster(
            num_cpus=num_cpus,
            include_dashboard=True,
            logging_level=logging.ERROR,
            env_vars={"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5", "TUNE_FUNCTION_THREAD_TIMEOUT_S": "60"},
        )


def alternate(sides: dict[str, Callable[[], dict[str, float]]], repeats: int) -> list[dict[str, Any]]:
    """Run each side once per round, in alternating order, `repeats` rounds."""
    rows = []
    for r in range(repeats):
        for name in list(sides) if r % 2 == 0 else list(reversed(sides)):
            t0 = time.perf_counter()
            extra = sides[name]()
            rows.append({"round": r, "side": name, "wall_s": time.perf_counter() - t0, **extra})
    return rows


def ratios(rows: list[dict[str, Any]], key: str, a: str, b: str) -> list[float]:
    by = {(row["round"], row["side"]): row[key] for row in rows}
    return [by[(r, a)] / by[(r, b)] for r in sorted({row["round"] for row in rows})]
