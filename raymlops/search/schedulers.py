"""Trial schedulers: FIFO, Hyperband, ASHA as Ray Tune's (stop) or promotion-based (pause and resume), and the
population schedulers PBT / PB2 (search.population)."""

from __future__ import annotations

from typing import Any

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, HyperBandScheduler

from raymlops.config import choices
from raymlops.config.objectives import is_multi_objective
from raymlops.config.schema import Config, ScalingConfig, SchedulerConfig
from raymlops.launch.executors.choice import executor_class
from raymlops.search.drain_moves import moving_off_draining_nodes
from raymlops.search.population import build_population
from raymlops.search.promotion_asha import PromotionASHA


def build_scheduler(config: Config) -> Any:
    """The search's Tune scheduler; trials that train in their Tune actor also move off a draining node."""
    scheduler = _scheduler_of_its_kind(config)
    if executor_class(config.scaling).cheap_pause:  # DDP lanes: Ray Train moves their worker groups itself
        return moving_off_draining_nodes(scheduler, last_epoch=config.train.epochs)
    return scheduler


def _scheduler_of_its_kind(config: Config) -> Any:
    sched = config.scheduler
    max_t = config.train.epochs
    common: dict[str, Any] = {"time_attr": "training_iteration"}  # metric and mode come from TuneConfig, set once
    if is_multi_objective(config.tune):  # TuneConfig then has none (OptunaSearch takes the lists): the primary, here
        common.update(metric=config.tune.metric, mode=config.tune.mode)
    if sched.name in choices.POPULATION_SCHEDULERS:
        return build_population(sched, config.search_space)
    if sched.name == "asha":
        asha = PromotionASHA if asha_mode(sched, config.scaling) == "promote" else ASHAScheduler
        grace = min(int(sched.grace_period), max_t)
        return asha(max_t=max_t, grace_period=grace, reduction_factor=sched.reduction_factor, **common)
    if sched.name == "hyperband":
        return HyperBandScheduler(max_t=max_t, reduction_factor=sched.reduction_factor, **common)
    return FIFOScheduler()  # no metric of its own to set


def asha_mode(sched: SchedulerConfig, scaling: ScalingConfig) -> str:
    """scheduler.mode for ASHA: `promote` pauses a trial below its rung's top 1/rf and resumes it if it
    rises (raymlops.schedulers.PromotionASHA); `stop` is Ray Tune's ASHAScheduler; `auto` promotes
    trials that train inside their Tune actor (a pause costs a checkpoint) and stops DDP trials (a
    resume would cost a new worker group)."""
    mode = str(sched.mode)
    if mode == "auto":
        return "promote" if executor_class(scaling).cheap_pause else "stop"
    return mode
