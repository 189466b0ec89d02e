"""A warm DDP lane's per-worker loop: one Ray Train worker group runs one Tune trial after another.

Rank 0 asks the search's lane broker (launch.executors.lane_broker) for the next trial and broadcasts it
to the other ranks; every rank trains it with the same Recipe as any other launcher, on a Session whose
`report` hands each epoch to the broker and waits until the trial's Tune driver has relayed it
(the go-ahead for the next epoch) or Tune has released the trial (an ASHA stop, a pause).
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import replace
from typing import Any

import torch
import torch.distributed as dist

from raymlops.training.loop import Recipe
from raymlops.training.session import Session, ray_train_session

log = logging.getLogger(__name__)


class TrialReleased(Exception):
    """Tune stopped or paused the lane's current trial: drop it at this epoch boundary."""


def lane_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train V2 entry point of a lane: {"broker": LaneBroker handle, "lane_id": str}."""
    import ray

    broker, lane_id = loop_config["broker"], loop_config["lane_id"]
    base = replace(ray_train_session(), restore_dirs=[], after_restore=None)
    if base.device.type == "cuda":  # NCCL's object broadcast uses the current device: this worker's GPU
        torch.cuda.set_device(base.device)
    while True:
        request = _share(ray.get(broker.next_trial.remote(lane_id)) if base.is_rank_zero else None, base)
        if request is None:
            return
        message = _run_trial(request, broker, lane_id, base)
        if base.is_rank_zero:
            ray.get(broker.trial_ended.remote(lane_id, request["key"], message))


def _run_trial(request: dict[str, Any], broker: Any, lane_id: str, base: Session) -> dict[str, Any] | None:
    """Train one trial on this lane; the message for its driver (None: Tune released it)."""
    import ray

    key = request["key"]
    session = replace(
        base,
        report=_relay(broker, key, base),
        restore_dirs=list(request["restore_dirs"]),
        known_epoch=request["known_epoch"],
        stop_epoch=request["stop_epoch"],
    )
    recipe: Recipe | None = None
    try:
        recipe = Recipe(request["config"], request["run"], session)
        for epoch in range(recipe.progress.epoch + 1, recipe.last_epoch + 1):
            recipe.save_and_report(recipe.train_epoch(epoch))
        return {"kind": "done", "metrics": recipe.finish()}
    except TrialReleased:
        if recipe is not None:
            recipe.tracker.detach()  # the run stays open: Tune's callback (or the resumed trial) ends it
        return None
    except Exception:
        # The lane's collectives may be out of step now: fail the trial, then the worker group (Train restarts it)
        ray.get(broker.trial_ended.remote(lane_id, key, {"kind": "error", "error": traceback.format_exc()}))
        raise


def _relay(broker: Any, key: str, base: Session) -> Any:
    """The lane Session's report: rank 0 posts the epoch and waits for Tune's go-ahead; all ranks learn it."""
    import ray

    def report(metrics: dict[str, Any], ckpt_dir: str | None) -> None:
        decision = None
        if base.is_rank_zero:
            ray.get(broker.post.remote(key, {"kind": "result", "metrics": metrics, "checkpoint": ckpt_dir}))
            decision = ray.get(broker.wait_ack.remote(key))
        if _share(decision, base) == "release":
            raise TrialReleased(key)

    return report


def _share(value: Any, base: Session) -> Any:
    """Rank 0's value on every rank of the lane."""
    if base.world_size > 1 and dist.is_available() and dist.is_initialized():
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]
    return value
