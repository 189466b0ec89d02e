"""Which executor runs a search's trials, decided once per search from its config; and, for a trial whose
sampled params change its own scaling, which one runs that trial (as it always has)."""

from __future__ import annotations

from raymlops.config.contract import RunContract
from raymlops.config.schema import Config, ScalingConfig
from raymlops.launch.executors.base import TrialExecutor, in_process, warm_lanes
from raymlops.launch.executors.in_actor import InActorExecutor
from raymlops.launch.executors.own_trainer import OwnTrainerExecutor
from raymlops.launch.executors.warm_lane import WarmLaneExecutor


def executor_class(scaling: ScalingConfig) -> type[TrialExecutor]:
    """1 worker trains in the Tune actor (unless scaling.in_process_single_worker=false), else on warm lanes
    (unless scaling.warm_workers=false), else in a TorchTrainer per trial."""
    if in_process(scaling):
        return InActorExecutor
    return WarmLaneExecutor if warm_lanes(scaling) else OwnTrainerExecutor


def choose_executor(config: Config, search: RunContract) -> TrialExecutor:
    """The executor of this search (the caller starts it once the search's concurrency is known)."""
    return executor_class(config.scaling)(config, search)


def for_trial(executor: TrialExecutor, config: Config) -> TrialExecutor:
    """The executor of one trial: the search's, unless the trial's own config is a 1-worker in-process one
    (it trains in its actor) or a DDP one in a search without lanes (its own TorchTrainer)."""
    if in_process(config.scaling):
        return executor if isinstance(executor, InActorExecutor) else InActorExecutor(executor.config, executor.search)
    if isinstance(executor, InActorExecutor):
        return OwnTrainerExecutor(executor.config, executor.search)
    return executor
