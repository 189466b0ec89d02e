"""`python -m raymlops.tune +experiment=NAME [overrides]`: a Ray Tune search, tracked in MLflow.

Composes and validates the config, joins or starts Ray, runs the search (ASHA / Hyperband /
FIFO with random or Optuna search), then evaluates and registers the best model.
"""

from __future__ import annotations

from typing import Any

from raymlops import config as config_mod
from raymlops.console import setup_logging
from raymlops.errors import cli


@cli
def main(argv: list[str]) -> dict[str, Any]:
    setup_logging()
    config = config_mod.compose(argv)  # Hydra compose + validation, before Ray starts
    from raymlops import driver, runner  # only now: a config error costs ~1 s, not the ~3 s torch + Ray take to import

    if config["tune"]["resume"] not in (False, None, "false"):  # nothing to resume: say so before Ray starts
        runner.check_resumable(config, runner.search_name(config))
    config, groups = driver.start(config, argv, role="search")
    summary = runner.run_search(config, groups)
    metric = config["tune"]["metric"]
    print(
        f"Done: best {metric}={summary['best_' + metric]:.4f} "
        f"(trial {summary['best_trial_id']}); MLflow parent run {summary['parent_run_id']}",
        flush=True,
    )
    return summary


if __name__ == "__main__":
    main()
