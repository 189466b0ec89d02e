"""The best trial after a search: its final checkpoint evaluated on the test split, its model logged and
registered as `candidate`, and the champion decision."""

from __future__ import annotations

import logging
from typing import Any

from torch import nn

from raymlops.config.contract import RunContract
from raymlops.config.schema import Config, RegistryConfig
from raymlops.config.tree import from_dict
from raymlops.core import names
from raymlops.data import Splits, load_splits
from raymlops.models.device import choose_device
from raymlops.models.small_images import build_model
from raymlops.post import model_registry
from raymlops.post.evaluation import evaluate_model, log_evaluation, serving_reference
from raymlops.post.steps import TrackerSteps
from raymlops.tracking import RunLogger, find_run
from raymlops.training.checkpoints import load_any
from raymlops.training.model_io import log_model

log = logging.getLogger(__name__)


def evaluate_and_register(
    config: Config,
    search: RunContract,
    result: Any,
    best: dict[str, Any],
    parent_id: str,
    steps: TrackerSteps,
    version_tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Test-set evaluation of the best trial's final checkpoint, logged model, registry alias (version_tags: what
    chose the trial and the schedule it followed, kept on the registered version)."""
    ckpt_path = result.checkpoint.path if result.checkpoint else (result.metrics or {}).get("checkpoint_path")
    if not ckpt_path:
        log.warning("best trial %s left no checkpoint; skipping evaluation and registration", best["trial_id"])
        return {}
    model, splits = _load_trained(ckpt_path)
    device = choose_device(config.train.device, gpu_allowed=search.launch.use_gpu)
    evaluation = evaluate_model(model, splits, device, batch_size=config.train.eval_batch_size)
    # the run id is empty when the trial's run was opened late (the tracker was down when the trial began)
    uri, key = search.launch.tracking_uri, f"{search.run_key}/{best['trial_id']}"
    child = (
        best["mlflow_run_id"]
        or steps("finding the best trial's run", lambda: find_run(uri, search.launch.experiment_id, key))
        or ""
    )
    out: dict[str, Any] = {"test_acc": evaluation["test_acc"], "test_loss": evaluation["test_loss"]}
    _log_test_metrics(config.mlflow.spool_dir, uri, [r for r in dict.fromkeys([parent_id, child]) if r], evaluation, out, steps)
    metric = config.tune.metric
    print(
        f"Best trial {best['trial_id']}: {metric}={best[metric]:.4f}, "
        f"test_acc={evaluation['test_acc']:.4f} on {evaluation['n_test']} test images",
        flush=True,
    )
    if not config.registry.register or not child:
        return out
    registered = _register(
        config.registry, uri, child, parent_id, model, splits, evaluation, steps, ckpt_path, version_tags or {}
    )
    return {**out, **registered}


def _load_trained(ckpt_path: str) -> tuple[nn.Module, Splits]:
    """The trial's model with its final weights, and its data, from the checkpoint's own config."""
    state = load_any(ckpt_path)
    trial_cfg = from_dict(Config, state["config"])
    splits = load_splits(trial_cfg.data, seed=trial_cfg.train.seed)  # decoded in preflight: no reload
    model = build_model(trial_cfg.model, splits.channels, splits.num_classes)
    model.load_state_dict(state["model"])
    return model, splits


def _log_test_metrics(
    spool_dir: str, uri: str, runs: list[str], evaluation: dict[str, Any], out: dict[str, Any], steps: TrackerSteps
) -> None:
    def log_eval() -> bool:
        log_evaluation(uri, runs, evaluation)
        return True

    if not steps("the test-set evaluation", log_eval):
        for run_id in runs:  # the test metrics at least wait in the spool
            spool = RunLogger(uri, run_id, spool_dir=spool_dir, retry_seconds=1)
            spool.log_metrics(out, step=0)
            spool.flush(timeout_s=30)


def _register(
    rcfg: RegistryConfig,
    uri: str,
    child: str,
    parent_id: str,
    model: nn.Module,
    splits: Splits,
    evaluation: dict[str, Any],
    steps: TrackerSteps,
    ckpt_path: str,
    version_tags: dict[str, str],
) -> dict[str, Any]:
    """Log the model to the best trial's run, register it as candidate, decide the champion."""
    name = rcfg.model_name
    metrics = {
        "test_acc": evaluation["test_acc"],
        "test_loss": evaluation["test_loss"],
        "search_run_id": parent_id,
        names.TAG_SERVING_REFERENCE: serving_reference(evaluation),  # the drift baseline of raymlops.serving
        **version_tags,
    }
    model_uri = steps("logging the best model", lambda: log_model(uri, child, model, splits))
    version = model_uri and steps(
        "registering the best model", lambda: model_registry.register(uri, model_uri, name, child, metrics)
    )
    decision = version and steps(
        "the champion decision",
        lambda: model_registry.decide_champion(uri, name, version, rcfg.promote, min_improvement=rcfg.min_improvement),
    )
    if not decision:
        print(f"Best trial's model not registered (MLflow unreachable); its checkpoint is {ckpt_path}", flush=True)
        return {}
    print(f"Registered {name} v{version} as @{names.ALIAS_CANDIDATE}; {decision}", flush=True)
    return {"registered_version": version, "champion_decision": decision, "model_uri": f"models:/{name}@{names.ALIAS_CANDIDATE}"}
