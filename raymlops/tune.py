"""`python -m raymlops.tune +experiment=NAME [overrides]`: a Ray Tune search, tracked in MLflow.

Composes and validates the config, joins or starts Ray, runs the search (ASHA / Hyperband /
FIFO with random or Optuna search), then evaluates and registers the best model.
"""

from __future__ import annotations

from typing import Any

from raymlops.config import compose
from raymlops.core.console import setup_logging
from raymlops.core.errors import cli


@cli
def main(argv: list[str]) -> dict[str, Any]:
    setup_logging()
    config = compose(argv)  # Hydra compose + validation, before Ray starts
    # only now: a config error costs ~1 s, not the ~3 s torch + Ray take to import
    from raymlops.launch.job import start
    from raymlops.search.resume import check_resumable, search_name
    from raymlops.search.tuner import run_search

    if config["tune"]["resume"] not in (False, None, "false"):  # nothing to resume: say so before Ray starts
        check_resumable(config, search_name(config))
    summary = run_search(config, start(config, argv))
    metric = config["tune"]["metric"]
    print(
        f"Done: best {metric}={summary['best_' + metric]:.4f} "
        f"(trial {summary['best_trial_id']}); MLflow parent run {summary['parent_run_id']}",
        flush=True,
    )
    return summary


if __name__ == "__main__":
    main()
