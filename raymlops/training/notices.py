"""The console line a preemption notice gets, whoever acts on it: a DDP lane's rank 0 (training.loop, from Ray
Train's PreemptionInfo) or a search's scheduler moving a 1-worker trial (search.drain_moves, from Ray's draining nodes)."""

from __future__ import annotations

import time
from collections.abc import Sequence


def preemption_line(
    nodes: Sequence[str], deadline_ms: int | None, epoch: int, run_id: str | None, trial: str = "", now_s: float | None = None
) -> str:
    """Which nodes go, when, the epoch the trial was checkpointed at (and its MLflow run), where it goes on from."""
    names = ", ".join(node[:12] for node in nodes) or "a node"
    left = f"in {max(0.0, deadline_ms / 1000 - (now_s or time.time())):.0f} s" if deadline_ms else "soon"
    who = f"trial {trial}" if trial else "trial"
    run = f" (MLflow run {run_id})" if run_id else ""
    return (
        f"node {names} is being preempted (gone {left}): {who} checkpointed at epoch {epoch}{run}; "
        f"it trains no further there and resumes from epoch {epoch + 1} on the nodes left"
    )
