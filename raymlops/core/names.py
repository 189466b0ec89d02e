"""Names every layer shares: the metrics a trainer reports, MLflow tags, and registry aliases.

Defined once, used by the reporter (training), the scheduler and searcher (search), the tracker
(tracking) and the registry (post). Imports nothing.
"""

from __future__ import annotations

# Metrics reported once per epoch by every trainer, with `step` = epoch number (1-based).
EPOCH_METRICS = ("train_loss", "val_loss", "val_acc", "lr", "epoch_time_s", "samples_per_s")
DEFAULT_METRIC = "val_acc"
DEFAULT_MODE = "max"
LOGGED_AT = "logged_at_ms"  # reported with each epoch: when its point was logged (idempotent write-backs)
STEP_METRIC = "train_loss_step"  # logged every `train.log_every_n_steps` optimizer steps
# Measured once per trial when an objective or the registry's rule needs them: batch-1 inference time of the
# trained model on the trial's device (ms, warm, median) and its size (millions of parameters).
COST_METRICS = ("latency_ms", "params_m")
HP_METRIC_PREFIX = "hp/"  # PBT: a trial's searched hyperparameters as metrics, step = the epoch they took effect


# MLflow tags.
TAG_ROLE = "raymlops.role"  # train | search | trial | evaluate
TAG_RUN_KEY = "raymlops.run_key"  # stable identity of a run across restarts (trial id, job name)
TAG_STOPPED_EARLY = "raymlops.stopped_early"
TAG_RESTARTS = "raymlops.restarts"
TAG_WORKER_NODES = "raymlops.worker_nodes"  # nodes the run's DDP worker group spans (set again at each restart)
TAG_INCOMPLETE = "raymlops.incomplete"  # search parent: why not every trial finished (failed after retries, never ran)
TAG_PARENT = "mlflow.parentRunId"
TAG_DECISION = "raymlops.champion_decision"
TAG_PROJECT_RUN = "raymlops.mlflow_project_run"  # the `mlflow run` (MLproject) run that started this one
TAG_PIPELINE_RUN = "raymlops.pipeline_run"  # the scheduler task that started the run (from $RAYMLOPS_PIPELINE_RUN)
TAG_FAILURE = "raymlops.failure_reason"  # why a pipeline task failed, on the runs it left FAILED
TAG_REGRESSION = "raymlops.regression"  # model-version tag: accuracy fell below what was recorded at registration
TAG_SERVING_REFERENCE = (
    "raymlops.serving_reference"  # model-version tag: JSON test-set class shares + mean confidence (drift baseline)
)
PIPELINE_RUN_ENV = "RAYMLOPS_PIPELINE_RUN"
RESULT_PREFIX = "raymlops-result: "  # the last line of an entry point: its ids and URIs as one JSON object
# MLflow 3.17's UI opens an experiment by its kind; untagged, it guesses (and may land on the GenAI overview)
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
TAG_EXPLOITS = "raymlops.pbt.exploits"  # how many times PBT copied another trial into this one
TAG_EXPLOIT_PREFIX = "raymlops.pbt.exploit."  # + 1, 2, ...: JSON {epoch, donor_trial, old, donor, new}
TAG_SELECT_RULE = "raymlops.select_rule"  # the registry.select rule that chose the registered trial
TAG_WARM_START = "raymlops.warm_start"  # the search parent runs a warm-started search was seeded from

ALIAS_CANDIDATE = "candidate"
ALIAS_CHAMPION = "champion"
ALIAS_PREVIOUS = "previous_champion"
