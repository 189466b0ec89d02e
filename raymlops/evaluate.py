"""`python -m raymlops.evaluate model_uri=models:/NAME@champion [data overrides]`: evaluate any registered or
logged model on a data set's test split and log the same artifacts as a search does to a new run."""

from __future__ import annotations

from typing import Any

from raymlops.config import compose
from raymlops.core import names
from raymlops.core.console import print_result, setup_logging
from raymlops.core.errors import UserError, cli


@cli
def main(argv: list[str]) -> dict[str, Any]:
    """Evaluate model_uri on the configured dataset's test split and log a role=evaluate run."""
    result = run(argv)
    print_result(result)
    return result


def run(argv: list[str]) -> dict[str, Any]:
    """What `main` does, raising UserError instead of exiting (raymlops.api.evaluate calls it)."""
    setup_logging()
    argv = [f"evaluate.{a}" if a.startswith("model_uri=") else a for a in argv]
    config = compose(argv)
    uri = config.evaluate.model_uri
    if not uri:
        raise UserError("No model to evaluate: pass model_uri=models:/NAME@champion (or runs:/RUN_ID/model).")
    # only now: a config error costs ~1 s, not the seconds torch and MLflow take to import
    from raymlops import tracking
    from raymlops.data import load_splits
    from raymlops.models.device import choose_device
    from raymlops.post.evaluation import evaluate_model, load_logged_model, log_evaluation
    from raymlops.tracking.lineage import origin_tags

    mcfg = config.mlflow
    tracking.check_reachable(mcfg.tracking_uri)
    model = load_logged_model(mcfg.tracking_uri, uri)
    splits = load_splits(config.data, seed=config.train.seed)
    device = choose_device(config.train.device, gpu_allowed=config.scaling.use_gpu is not False)
    result = evaluate_model(model, splits, device, batch_size=config.train.eval_batch_size)
    exp_id = tracking.ensure_experiment(mcfg.tracking_uri, mcfg.experiment_name, mcfg.artifact_location)
    run = tracking.client(mcfg.tracking_uri).create_run(
        exp_id,
        run_name=f"evaluate {uri}",
        tags={names.TAG_ROLE: "evaluate", "raymlops.model_uri": uri, "raymlops.data": config.data.name, **origin_tags()},
    )
    log_evaluation(mcfg.tracking_uri, [run.info.run_id], result, uri)
    tracking.client(mcfg.tracking_uri).set_terminated(run.info.run_id)
    print(
        f"{uri} on {config.data.name} test ({result['n_test']} images): test_acc={result['test_acc']:.4f} "
        f"test_loss={result['test_loss']:.4f}; MLflow run {run.info.run_id}"
    )
    return {"mlflow_run_id": run.info.run_id, "model_uri": uri, **result}


if __name__ == "__main__":
    main()
