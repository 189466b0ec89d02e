"""`python -m raymlops.tune +experiment=NAME [overrides]`: a Ray Tune search, tracked in MLflow.

Composes and validates the config, joins or starts Ray, runs the search (ASHA / Hyperband /
FIFO with random or Optuna search), then evaluates and registers the best model.
"""

from __future__ import annotations

from typing import Any

from raymlops.config import compose
from raymlops.config.schema import Config
from raymlops.core.console import print_result, set_verbose, setup_logging
from raymlops.core.errors import Incomplete, cli


@cli
def main(argv: list[str]) -> dict[str, Any]:
    summary = run(argv)[1]
    print_result(summary)  # parent_run_id, best_trial_id, registered_version, champion_decision, model_uri
    if summary.get("incomplete"):
        raise Incomplete(summary["incomplete"])
    return summary


def run(argv: list[str]) -> tuple[Config, dict[str, Any]]:
    """The search of `argv` (Hydra overrides): its config and summary; raises UserError (what to fix) before
    Ray starts where it can. raymlops.api.search calls this too."""
    setup_logging()
    config = compose(argv)  # Hydra compose + validation, before Ray starts
    set_verbose(config.console.verbose)
    # imported only now, each after the check before it passed: a config error costs ~1 s, a preflight
    # error a few (torch, MLflow's client), and only a search that will run pays Ray's import (~3 s)
    from raymlops.launch.preflight import preflight

    preflight(config)  # tracker, storage, data
    from raymlops.search.resume import check_resumable, search_name

    if config.tune.resume not in (False, None, "false"):  # nothing to resume: say so before Ray starts
        check_resumable(config.storage_path, search_name(config.name, config.tune.resume, config.storage_path))
    from raymlops.launch.executors.base import in_process
    from raymlops.launch.job import start
    from raymlops.search.tuner import run_search

    summary = run_search(config, start(config, argv, torch_trainer_runs=not in_process(config.scaling)))
    metric = config.tune.metric
    print(
        f"Done: best {metric}={summary['best_' + metric]:.4f} "
        f"(trial {summary['best_trial_id']}); MLflow parent run {summary['parent_run_id']}",
        flush=True,
    )
    return config, summary


if __name__ == "__main__":
    main()
