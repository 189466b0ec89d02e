"""A whole search: the parent MLflow run, the Tuner (new or restored), its callbacks, then what follows it."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from ray import tune

from raymlops import ray_internals
from raymlops.config import choices
from raymlops.config.contract import Launch, RunContract
from raymlops.config.objectives import is_multi_objective
from raymlops.config.schema import Config, MlflowConfig, SchedulerConfig
from raymlops.config.tree import to_dict
from raymlops.core import names
from raymlops.core.redact import redact
from raymlops.launch.executors.base import TrialExecutor, search_storage
from raymlops.launch.executors.choice import choose_executor
from raymlops.launch.executors.trainable import run_trial
from raymlops.launch.room import plan_beside_others
from raymlops.post.finish import finish_search
from raymlops.search.callbacks import TrialRuns
from raymlops.search.live_progress import SearchProgress
from raymlops.search.param_space import param_space
from raymlops.search.resource_wait import ResourceWait
from raymlops.search.resume import check_resumable, search_name
from raymlops.search.schedulers import build_scheduler
from raymlops.search.searchers import build_search_alg
from raymlops.search.warm_start import WarmStart, load_warm_start
from raymlops.tracking import RunLogger, client, config_params, find_or_create_run, retrying, run_link, warm_model_logging

log = logging.getLogger(__name__)


def run_search(config: Config, launch: Launch) -> dict[str, Any]:
    """Run (or resume) the Tune search described by config; return the summary."""
    tcfg, mcfg = config.tune, config.mlflow
    name = search_name(config.name, tcfg.resume, config.storage_path)
    resuming = tcfg.resume not in (False, None, "false")
    if resuming:
        check_resumable(config.storage_path, name)
    search = launch.run("search", name, name, log_model=False)
    parent = _open_parent(mcfg, search, _search_params(config), to_dict(config))
    concurrency = _concurrency(config, launch)
    print(
        f"Search {name}: {tcfg.num_samples} trials, {config.scheduler.name} + {config.search_alg.name}, "
        f"{concurrency} at a time, {config.scaling.num_workers} worker(s) per trial; MLflow parent run {parent.run_id}\n"
        f"  {run_link(launch.tracking_uri, launch.experiment_id, parent.run_id or '')}",
        flush=True,
    )
    runs = TrialRuns(launch.tracking_uri, config.train.epochs, mcfg)
    if not config.console.verbose:  # Tune's traceback per failed try: SearchProgress says it in one line instead
        os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
    executor = choose_executor(config, search)
    executor.start(concurrency)
    callbacks = _callbacks(config, launch, runs, executor)
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, base=config, search=search, parent_run_id=parent.run_id, executor=executor),
        executor.resources(),
    )
    tuner = (
        _restored(search_storage(config.storage_path, search), config.search_space, trainable, callbacks)
        if resuming
        else _new_tuner(config, name, trainable, callbacks, executor, concurrency, _warm_start(config, search, parent))
    )
    if config.registry.register:
        warm_model_logging()  # while the trials run: the best one's model is logged after them
    try:
        results = tuner.fit()
    finally:
        executor.stop()
    runs.flush()
    return finish_search(config, search, results, parent)


def _concurrency(config: Config, launch: Launch) -> int:
    """tune.max_concurrent_trials, else the worker groups that fit beside what other jobs hold now."""
    tcfg = config.tune
    planned = tcfg.max_concurrent_trials or plan_beside_others(
        min(launch.groups, tcfg.num_samples), dict(launch.per_worker), config.scaling.num_workers
    )
    return min(planned, tcfg.num_samples)


def _callbacks(config: Config, launch: Launch, runs: TrialRuns, executor: TrialExecutor) -> list[Any]:
    """MLflow's runs, the console's progress, the executor's own, and the line for trials waiting on resources."""
    tcfg, console = config.tune, config.console
    progress = SearchProgress(
        tcfg.metric, tcfg.mode, config.train.epochs, tcfg.num_samples, console.progress, config.train.max_failures
    )
    waits = ResourceWait(dict(launch.per_worker), config.scaling.num_workers, console.wait_notice_s, executor.queued_trials)
    return [runs, progress, *executor.callbacks(), waits]


def _search_params(config: Config) -> dict[str, Any]:
    """The parent run's params: the resolved config (flat, redacted) and what the search is made of."""
    return {
        **config_params(config),
        "search.scheduler": config.scheduler.name,
        "search.algorithm": config.search_alg.name,
        "search.space": json.dumps(config.search_space),
    }


def _open_parent(mcfg: MlflowConfig, search: RunContract, params: dict[str, Any], plain: dict[str, Any]) -> RunLogger:
    uri = search.launch.tracking_uri
    tags = {names.TAG_ROLE: "search", **search.launch.lineage}
    parent_id = retrying(
        lambda: find_or_create_run(uri, search.launch.experiment_id, search.run_key, search.run_name, tags), mcfg.retry_seconds
    )
    parent = RunLogger(uri, parent_id, spool_dir=mcfg.spool_dir, retry_seconds=mcfg.retry_seconds)
    _log_search_config(parent, params, plain, uri, parent_id)
    return parent


def _warm_start(config: Config, search: RunContract, parent: RunLogger) -> WarmStart:
    """search_alg.warm_start's earlier trials, and the parent run naming the runs they came from."""
    launch = search.launch
    warm = load_warm_start(
        config.search_alg,
        config.search_space,
        config.tune,
        launch.tracking_uri,
        launch.experiment_id,
        parent.run_id or "",
    )
    if warm.sources:
        parent.set_tags({names.TAG_WARM_START: ",".join(warm.sources), f"{names.TAG_WARM_START}.points": len(warm.points)})
    return warm


def _new_tuner(
    config: Config,
    name: str,
    trainable: Any,
    callbacks: list[Any],
    executor: TrialExecutor,
    concurrency: int,
    warm: WarmStart,
) -> Any:
    tcfg = config.tune
    # several objectives: OptunaSearch and the scheduler carry the metrics (TuneConfig's would overwrite the lists)
    goal: dict[str, Any] = {} if is_multi_objective(tcfg) else {"metric": tcfg.metric, "mode": str(tcfg.mode)}
    run_config = tune.RunConfig(
        name=name,
        storage_path=config.storage_path,
        callbacks=callbacks,
        verbose=0,
        checkpoint_config=tune.CheckpointConfig(num_to_keep=config.checkpoint.num_to_keep),
        failure_config=tune.FailureConfig(max_failures=config.train.max_failures),
        stop=_population_stop(config.scheduler, config.train.epochs),
    )
    return tune.Tuner(
        trainable,
        param_space=param_space(config.search_space),
        run_config=run_config,
        tune_config=tune.TuneConfig(
            **goal,
            num_samples=tcfg.num_samples,
            # the search algorithm limits concurrency (build_search_alg); given here too, Tune warns it ignores it
            max_concurrent_trials=None,
            scheduler=build_scheduler(config),
            search_alg=build_search_alg(config, concurrency, warm),
            reuse_actors=tcfg.reuse_actors and executor.reuses_actors,
        ),
    )


def _population_stop(sched: SchedulerConfig, epochs: int) -> dict[str, Any] | None:
    """PBT would also perturb at the last epoch, restarting a trial with nothing left to train (its last result
    then the donor's): Tune stops a trial that reports its last epoch before the scheduler sees the result."""
    if sched.name in choices.POPULATION_SCHEDULERS:
        return {"epoch": epochs}
    return None


def _restored(path: str, space: dict[str, Any], trainable: Any, callbacks: list[Any]) -> Any:
    """Tuner.restore takes the RunConfig, callbacks included, from the tuner.pkl written when the search
    began (at path): swap in this run's callbacks (this run's tracking URI and spool, and the ones we flush)."""
    tuner = tune.Tuner.restore(
        path, trainable=trainable, resume_unfinished=True, resume_errored=True, param_space=param_space(space)
    )
    run_config = ray_internals.restored_run_config(tuner)
    if run_config is None:
        log.warning("could not replace the restored search's callbacks; MLflow child runs may close late")
    else:
        fresh = {type(cb): cb for cb in callbacks}
        old = run_config.callbacks or []
        run_config.callbacks = [fresh.get(type(cb), cb) for cb in old] + [
            cb for cb in callbacks if type(cb) not in {type(o) for o in old}
        ]
    print(f"Resuming search {os.path.basename(path)} from {path}", flush=True)
    return tuner


def _log_search_config(parent: RunLogger, params: dict[str, Any], plain: dict[str, Any], uri: str, parent_id: str) -> None:
    parent.log_params(params)
    parent.flush()
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "search_config.json"
        p.write_text(json.dumps(redact(plain), indent=2, default=str))
        try:
            client(uri).log_artifact(parent_id, str(p))
        except Exception as err:
            log.warning("could not upload search_config.json to the parent run: %s", err)
