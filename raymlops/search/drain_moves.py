"""Trials that train inside their Tune actor move off a node that Ray is draining (a spot preemption notice).

A DDP trial's worker group belongs to Ray Train, which polls Ray's draining nodes and restarts the group on the
nodes left at the deadline (training.loop waits for it at the epoch boundary). A 1-worker trial trains inside
its Tune actor: nothing in Ray tells it. So its search's scheduler asks Ray, at each epoch a trial reports (with
its checkpoint): when the node the epoch was trained on is being drained and epochs are left, the trial is
PAUSED (Tune keeps that epoch's checkpoint; the trial's function waits in report, so nothing more is trained
there) and resumed first, with a bundle label selector that keeps it off the draining nodes, so Tune reuses
no cached actor there either. A pause is not a failure: `train.max_failures` is not spent. The epoch in
progress when the notice comes is finished first; a deadline shorter than that epoch loses the node with it,
and Tune retries the trial from its previous checkpoint (a failure, as for a node lost without notice).

The scheduler keeps its own kind (FIFO, ASHA, Hyperband, PBT ...): its class is extended with this mixin,
which acts only on results the scheduler itself would let CONTINUE.
"""

from __future__ import annotations

import logging
from typing import Any

from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from raymlops import ray_internals
from raymlops.launch.executors.own_trainer import NODE_ID_LABEL
from raymlops.training.notices import preemption_line

log = logging.getLogger(__name__)


class MovesOffDrainingNodes:
    """Mixin for a Tune TrialScheduler: a trial whose epoch was trained on a draining node is paused and
    resumed elsewhere (see the module docstring)."""

    last_epoch: int
    moving: dict[str, list[str]]  # trial id -> the draining nodes it must keep off

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> str:
        decision = super().on_trial_result(tune_controller, trial, result)  # type: ignore[misc]
        if decision != TrialScheduler.CONTINUE or int(result.get("epoch", 0)) >= self.last_epoch:
            return decision
        node = str(result.get("node_id") or "")
        draining = _draining_nodes()
        if node not in draining:
            return decision
        self.moving[trial.trial_id] = sorted(draining)
        log.warning("%s", move_notice(node, draining[node], trial, result))
        return TrialScheduler.PAUSE

    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        for trial in tune_controller.get_trials():  # a moved trial first: it has epochs to keep, and its slot
            if trial.trial_id in self.moving and trial.status == Trial.PAUSED:
                trial.update_resources(keeping_off(trial.placement_group_factory, self.moving[trial.trial_id]))
                return trial
        return super().choose_trial_to_run(tune_controller)  # type: ignore[misc, no-any-return]

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> None:
        self.moving.pop(trial.trial_id, None)
        super().on_trial_complete(tune_controller, trial, result)  # type: ignore[misc]

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        self.moving.pop(trial.trial_id, None)
        super().on_trial_error(tune_controller, trial)  # type: ignore[misc]

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        self.moving.pop(trial.trial_id, None)
        super().on_trial_remove(tune_controller, trial)  # type: ignore[misc]

    def debug_string(self) -> str:
        moving = f"; {len(self.moving)} trial(s) moved off draining nodes" if self.moving else ""
        return f"{super().debug_string()}{moving}"  # type: ignore[misc]


def moving_off_draining_nodes(scheduler: Any, last_epoch: int) -> Any:
    """`scheduler`, its class extended with MovesOffDrainingNodes (isinstance checks on its kind still hold)."""
    base = type(scheduler)
    scheduler.__class__ = type(f"{base.__name__}MovingOffDrainingNodes", (MovesOffDrainingNodes, base), {})
    scheduler.last_epoch, scheduler.moving = last_epoch, {}
    return scheduler


def keeping_off(resources: Any, nodes: list[str]) -> Any:
    """The trial's PlacementGroupFactory with every bundle kept off `nodes` (Ray's `ray.io/node-id` label)."""
    bundles = ([{}] if resources.head_bundle_is_empty else []) + resources.bundles
    away = [{NODE_ID_LABEL: f"!in({','.join(nodes)})"}] * len(bundles)
    return tune.PlacementGroupFactory(bundles, strategy=resources.strategy, bundle_label_selector=away)


def move_notice(node: str, deadline_ms: int, trial: Trial, result: dict[str, Any], now_s: float | None = None) -> str:
    """The console line for a 1-worker trial moved off a draining node, at the epoch it just reported."""
    run_id = result.get("mlflow_run_id") or None
    return preemption_line([node], deadline_ms, int(result.get("epoch", 0)), run_id, trial=trial.trial_id, now_s=now_s)


def _draining_nodes() -> dict[str, int]:
    try:
        return ray_internals.draining_nodes()
    except Exception as exc:  # the GCS unreachable for a moment: no move this epoch, the next result asks again
        log.debug("could not read Ray's draining nodes: %s", exc)
        return {}
