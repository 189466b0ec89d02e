"""One cluster, several jobs (other teams' searches): what the others hold now, how many of a search's worker
groups fit beside them, and the line a search prints when its trials wait for resources.

Ray queues a placement group that does not fit and says nothing; a search planned on the whole cluster while
another job holds half of it would sit with trials PENDING and no word why.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from raymlops import ray_internals


@dataclass(frozen=True)
class Room:
    """The alive nodes' resources now: totals, what is free, and how many workers of one shape fit in each."""

    total: dict[str, float]
    free: dict[str, float]
    slots_total: int  # workers of the shape the nodes hold when idle
    slots_free: int  # ... and beside what is reserved now


def room_now(per_worker: dict[str, float]) -> Room:
    totals, available = ray_internals.resources_per_node()
    return Room(
        total=_summed(totals.values(), per_worker),
        free=_summed(available.values(), per_worker),
        slots_total=sum(worker_slots(node, per_worker) for node in totals.values()),
        slots_free=sum(worker_slots(available.get(node_id, {}), per_worker) for node_id in totals),
    )


def plan_beside_others(capacity: int, per_worker: dict[str, float], n_workers: int) -> int:
    """`capacity` worker groups of n_workers x per_worker, less those other jobs' reservations keep out now (at
    least 1: it waits for them); says so when they do. Called before this job reserves anything."""
    room = room_now(per_worker)
    held_slots = room.slots_total - room.slots_free
    if held_slots <= 0 or capacity <= 0:
        return capacity
    planned = max(1, capacity - math.ceil(held_slots / n_workers))
    waits = room.slots_free < n_workers
    if planned < capacity or waits:
        held = {k: room.total[k] - room.free[k] for k in room.total}
        plan = f": planning {planned} worker group(s) of {n_workers} x {shown(per_worker)} at a time, not {capacity}"
        print(
            f"Other jobs on this cluster hold {shown(held)} of its {shown(room.total)} now"
            + (plan if planned < capacity else "")
            + ("; this search's trials wait until they free some" if waits else ""),
            flush=True,
        )
    return planned


def wait_line(waiting: int, waited_s: float, per_worker: dict[str, float], n_workers: int, running: int) -> str:
    """What a search prints when `waiting` trials have waited waited_s for a worker group; `running` of its
    trials hold one each."""
    room = room_now(per_worker)
    group = {k: v * n_workers for k, v in per_worker.items()}
    others = {k: room.total[k] - room.free[k] - running * group.get(k, 0.0) for k in room.total}
    held = f"; other jobs hold about {shown(others)}" if any(v > 1e-9 for v in others.values()) else ""
    return (
        f"{waiting} trial(s) have waited {waited_s:.0f} s for resources: a worker group needs {shown(group)}, "
        f"free now {shown(room.free)} of {shown(room.total)}{held} (`ray status` shows the cluster's demand)"
    )


def shown(resources: dict[str, float]) -> str:
    return ", ".join(f"{v:g} {k}" for k, v in sorted(resources.items())) or "nothing"


def worker_slots(node: dict[str, float], per_worker: dict[str, float]) -> int:
    """How many workers of per_worker fit in one node's resources (a worker's bundle cannot span nodes)."""
    counts = [int(node.get(k, 0) // v + 1e-9) for k, v in per_worker.items() if v > 0]
    return min(counts) if counts else 0


def _summed(nodes: Iterable[dict[str, float]], per_worker: dict[str, float]) -> dict[str, float]:
    out = dict.fromkeys(per_worker, 0.0)
    for node in nodes:
        for k in per_worker:
            out[k] += float(node.get(k, 0))
    return out
