"""The Tune function trainable of every search: one trial = the search's config with this trial's sampled
params, trained by the search's executor (Tune names each trial's folder after it: run_trial_<id>_...)."""

from __future__ import annotations

from typing import Any

from ray import tune

from raymlops.config.contract import RunContract
from raymlops.config.schema import Config
from raymlops.config.tree import with_overrides
from raymlops.launch.executors.base import TrialExecutor
from raymlops.launch.executors.choice import for_trial


def run_trial(params: dict[str, Any], base: Config, search: RunContract, parent_run_id: str, executor: TrialExecutor) -> None:
    """Tune function trainable: this trial's config and MLflow child run, handed to the executor."""
    ctx = tune.get_context()
    trial_id = ctx.get_trial_id()
    config = with_overrides(base, params)
    for_trial(executor, config).run(config, search.trial(trial_id, ctx.get_trial_name(), parent_run_id), trial_id)
