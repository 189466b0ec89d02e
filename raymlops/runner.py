"""A whole search: Tuner set-up, per-trial MLflow bookkeeping, resume, and what follows the search
(summary, plots, evaluation of the best trial, registration)."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ray.tune import Callback

from raymlops import report, schema, search, tracking
from raymlops.console import table
from raymlops.driver import in_process, run_trial, trial_resources
from raymlops.errors import UserError
from raymlops.secrets import redact_text
from raymlops.worker import DONE_MARKER

log = logging.getLogger(__name__)
T = TypeVar("T")
_TRACKER_DOWN: list[str] = []  # epilogue steps skipped because MLflow stayed down (this process)


# ------------------------------------------------------------------ naming and resume


def search_name(config: dict[str, Any]) -> str:
    """A new search's directory name, or the one to resume (tune.resume=true or =NAME)."""
    resume, storage = config["tune"]["resume"], config["storage_path"]
    if resume in (False, None, "false"):
        return f"{config['name']}-{time.strftime('%Y%m%d-%H%M%S')}"
    if isinstance(resume, str) and resume != "true":
        return resume
    if "://" in storage:
        raise UserError("tune.resume=true cannot list a remote storage_path; name the search: tune.resume=NAME-YYYYmmdd-HHMMSS.")
    found = sorted(p.name for p in Path(storage).glob(f"{config['name']}-*") if (p / "tuner.pkl").is_file())
    if not found:
        raise UserError(
            f"tune.resume=true but there is no interrupted '{config['name']}' search under storage_path={storage}. "
            "Start a new search without tune.resume, or pass the search's folder name: tune.resume=NAME-YYYYmmdd-HHMMSS."
        )
    return found[-1]


def check_resumable(config: dict[str, Any], name: str) -> None:
    from ray import tune

    path = os.path.join(config["storage_path"], name)
    if not tune.Tuner.can_restore(path):
        storage = config["storage_path"]
        found = sorted(p.name for p in Path(storage).glob("*") if (p / "tuner.pkl").is_file()) if "://" not in storage else []
        raise UserError(
            f"tune.resume={name}: nothing to resume at {path} (no tuner state). Searches under storage_path={storage}: "
            f"{', '.join(found) if found else 'none'}; pass one of them, or drop tune.resume to start a new search."
        )


# ------------------------------------------------------------------ per-trial MLflow bookkeeping


class TrialBookkeeper(Callback):
    """A Tune callback on the search driver: progress lines, and each trial's MLflow child run
    closed correctly (FINISHED with raymlops.stopped_early, or FAILED), with any epoch point the
    trial reported to Tune but MLflow lacks written back. Never raises into Tune."""

    def __init__(self, tracking_uri: str, metric: str, mode: str, max_epochs: int, num_samples: int, mlflow_cfg: dict[str, Any]):
        self.uri, self.metric, self.mode, self.max_epochs, self.num_samples = tracking_uri, metric, mode, max_epochs, num_samples
        self.mlflow_cfg = mlflow_cfg
        self.points: dict[str, dict[int, dict[str, float]]] = defaultdict(dict)
        self.loggers: list[tracking.NullLogger] = []
        self.done = {"finished": 0, "stopped": 0, "errored": 0}
        self.best: tuple[float, str] | None = None
        self.started = time.monotonic()
        # MLflow work for an ended trial runs in this thread, off Tune's event loop, which would otherwise wait on it
        self._closer: ThreadPoolExecutor | None = None
        self._closing: list[Future[None]] = []

    def __getstate__(self) -> dict[str, Any]:
        """Tune pickles its callbacks into tuner.pkl: leave out the thread, its futures and the loggers."""
        return {**self.__dict__, "_closer": None, "_closing": [], "loggers": []}

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any) -> None:
        if "epoch" in result:
            self.points[trial.trial_id][int(result["epoch"])] = {
                k: result[k] for k in (*schema.EPOCH_METRICS, schema.LOGGED_AT) if k in result
            }
        value = result.get(self.metric)
        if isinstance(value, (int, float)) and (
            self.best is None or (value > self.best[0] if self.mode == "max" else value < self.best[0])
        ):
            self.best = (float(value), trial.trial_id)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        epochs = int((trial.last_result or {}).get("epoch", 0))
        stopped = epochs < self.max_epochs
        _mark_done(trial, epochs)
        self._close(trial, "FINISHED", {schema.TAG_STOPPED_EARLY: str(stopped).lower(), "raymlops.epochs_run": epochs})
        self._progress(
            trials, trial, f"trial {trial.trial_id} {'stopped at' if stopped else 'finished'} epoch {epochs}", "TERMINATED"
        )

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._close(trial, "FAILED", {"raymlops.error": str(getattr(trial, "error_file", "") or "see Ray logs")})
        self._progress(trials, trial, f"trial {trial.trial_id} FAILED (see {getattr(trial, 'path', '')})", "ERROR")

    def _close(self, trial: Any, status: str, tags: dict[str, Any]) -> None:
        run_id = (trial.last_result or {}).get("mlflow_run_id")
        if run_id:
            points = dict(self.points.get(trial.trial_id, {}))
            self._closer = self._closer or ThreadPoolExecutor(max_workers=1, thread_name_prefix="raymlops-close")
            self._closing.append(self._closer.submit(self._write_back, run_id, points, status, tags))

    def _write_back(self, run_id: str, points: dict[int, dict[str, float]], status: str, tags: dict[str, Any]) -> None:
        try:
            logged: set[int] | None = tracking.logged_steps(self.uri, run_id, "val_acc")
        except Exception:
            logged = None  # tracker down: what MLflow lacks is unknown, and the trial's own spool holds its points
        logger = tracking.RunLogger(
            self.uri, run_id, spool_dir=self.mlflow_cfg["spool_dir"], retry_seconds=self.mlflow_cfg["retry_seconds"]
        )
        for epoch, point in sorted(points.items()):
            if logged is not None and epoch not in logged:  # reported to Tune, not (yet) in MLflow: write it back
                at = point.get(schema.LOGGED_AT)  # the trial's own timestamp: a point still on its way is stored once
                values = {k: v for k, v in point.items() if k != schema.LOGGED_AT}
                logger.log_metrics(values, step=epoch, timestamp_ms=int(at) if at else None)
        logger.set_tags(tags)
        logger._put("status", status)
        self.loggers.append(logger)

    def _progress(self, trials: list[Any], ended: Any, event: str, ended_status: str) -> None:
        running = sum(1 for t in trials if t.status == "RUNNING" and t is not ended)
        best = f"best {self.metric}={self.best[0]:.4f} ({self.best[1]})" if self.best else "no result yet"
        # counted from Tune's trial states, so a resumed search counts the trials ended before the crash too
        d = {"finished": 0, "stopped": 0, "errored": 0}
        for t in trials:
            status = ended_status if t is ended else t.status
            if status in ("TERMINATED", "ERROR"):
                epochs = int((t.last_result or {}).get("epoch", 0))
                d["errored" if status == "ERROR" else "stopped" if epochs < self.max_epochs else "finished"] += 1
        self.done = d
        print(
            f"[{time.monotonic() - self.started:6.0f}s] {event} | {sum(d.values())}/{self.num_samples} done "
            f"({d['finished']} finished, {d['stopped']} stopped early, {d['errored']} failed), {running} running | {best}",
            flush=True,
        )

    def flush(self) -> None:
        for closing in self._closing:
            try:
                closing.result()
            except Exception as err:  # never raises into the search: the trial's spool still holds its points
                log.warning("closing a trial's MLflow run failed: %s", redact_text(str(err))[:200])
        for logger in self.loggers:
            logger.flush(timeout_s=self.mlflow_cfg["retry_seconds"] + 30)


def _mark_done(trial: Any, epoch: int) -> None:
    """Leave a marker in the trial's folder: after a driver crash Tune's last snapshot (taken every ~10 s)
    may still list this trial as running; the marker keeps a resumed search from training it further."""
    folder = Path(str(getattr(trial, "path", "") or ""))
    if "://" in str(folder) or not folder.is_dir():
        return
    marker = folder / DONE_MARKER
    try:
        if marker.is_file():  # ended again after a resume (e.g. stopped while re-reporting): keep the furthest epoch
            epoch = max(epoch, int(json.loads(marker.read_text()).get("epoch", 0)))
        marker.write_text(json.dumps({"epoch": epoch, "trial_id": trial.trial_id}))
    except (OSError, ValueError) as err:
        log.warning("could not write %s for trial %s: %s", DONE_MARKER, trial.trial_id, err)


# ------------------------------------------------------------------ the search


def run_search(config: dict[str, Any], groups: int) -> dict[str, Any]:
    """Run (or resume) the Tune search described by config; return the summary."""
    from ray import tune

    name = search_name(config)
    _TRACKER_DOWN.clear()
    if config["tune"]["resume"] not in (False, None, "false"):
        check_resumable(config, name)
    tcfg, rt, mcfg = config["tune"], config["runtime"], config["mlflow"]
    parent_id = tracking.find_or_create_run(
        rt["tracking_uri"], rt["experiment_id"], name, name, {schema.TAG_ROLE: "search", **rt["lineage"]}
    )
    parent = tracking.RunLogger(rt["tracking_uri"], parent_id, spool_dir=mcfg["spool_dir"], retry_seconds=mcfg["retry_seconds"])
    _log_search_config(parent, config, rt["tracking_uri"], parent_id)
    concurrency = min(tcfg["max_concurrent_trials"] or groups, tcfg["num_samples"])
    print(
        f"Search {name}: {tcfg['num_samples']} trials, {config['scheduler']['name']} + {config['search_alg']['name']}, "
        f"{concurrency} at a time, {config['scaling']['num_workers']} worker(s) per trial; MLflow parent run {parent_id}\n"
        f"  Browse: mlflow ui --backend-store-uri {_ui_uri(rt['tracking_uri'])} --host 127.0.0.1",
        flush=True,
    )

    base = {
        **config,
        "runtime": {
            **rt,
            "search_key": name,
            "parent_run_id": parent_id,
            "search_storage": os.path.join(config["storage_path"], name),
        },
    }
    keeper = TrialBookkeeper(
        rt["tracking_uri"], tcfg["metric"], tcfg["mode"], config["train"]["epochs"], tcfg["num_samples"], mcfg
    )
    trainable = tune.with_resources(tune.with_parameters(run_trial, base=base), trial_resources(config))
    run_config = tune.RunConfig(
        name=name,
        storage_path=config["storage_path"],
        callbacks=[keeper],
        verbose=0,
        checkpoint_config=tune.CheckpointConfig(num_to_keep=config["checkpoint"]["num_to_keep"]),
        failure_config=tune.FailureConfig(max_failures=config["train"]["max_failures"]),
    )
    path = os.path.join(config["storage_path"], name)
    if config["tune"]["resume"] not in (False, None, "false"):
        tuner = tune.Tuner.restore(
            path, trainable=trainable, resume_unfinished=True, resume_errored=True, param_space=search.param_space(config)
        )
        _use_fresh_callbacks(tuner, keeper)
        print(f"Resuming search {name} from {path}", flush=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=search.param_space(config),
            run_config=run_config,
            tune_config=tune.TuneConfig(
                metric=tcfg["metric"],
                mode=tcfg["mode"],
                num_samples=tcfg["num_samples"],
                max_concurrent_trials=concurrency,
                scheduler=search.build_scheduler(config),
                search_alg=search.build_search_alg(config, concurrency),
                reuse_actors=tcfg["reuse_actors"] and in_process(config),
            ),
        )
    results = tuner.fit()
    keeper.flush()
    return finish(config, base["runtime"], results, parent, name)


def _use_fresh_callbacks(tuner: Any, keeper: TrialBookkeeper) -> None:
    """Tuner.restore takes the RunConfig, callbacks included, from the tuner.pkl written when the search
    began: swap in this run's bookkeeper (this run's tracking URI and spool, and the one we flush)."""
    run_config = tuner._local_tuner.get_run_config() if getattr(tuner, "_local_tuner", None) else None
    if run_config is None:
        log.warning("could not replace the restored search's callbacks; MLflow child runs may close late")
        return
    run_config.callbacks = [keeper if isinstance(cb, TrialBookkeeper) else cb for cb in (run_config.callbacks or [])]


def _ui_uri(uri: str) -> str:
    return uri if not uri.startswith("http") else f"(server) {uri}"


def _log_search_config(parent: tracking.RunLogger, config: dict[str, Any], uri: str, parent_id: str) -> None:
    parent.log_params(
        {
            **tracking.config_params(config),
            "search.scheduler": config["scheduler"]["name"],
            "search.algorithm": config["search_alg"]["name"],
            "search.space": json.dumps(config.get("search_space") or {}),
        }
    )
    parent.flush()
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "search_config.json"
        from raymlops.secrets import redact

        p.write_text(json.dumps(redact({k: v for k, v in config.items() if k != "runtime"}), indent=2, default=str))
        try:
            tracking.client(uri).log_artifact(parent_id, str(p))
        except Exception as err:
            log.warning("could not upload search_config.json to the parent run: %s", err)


def finish(config: dict[str, Any], rt: dict[str, Any], results: Any, parent: tracking.RunLogger, name: str) -> dict[str, Any]:
    """Summary, plots and top-k on the parent; evaluate and register the best trial's model."""
    tcfg = config["tune"]
    metric, mode = tcfg["metric"], tcfg["mode"]
    keys = list((config.get("search_space") or {}).keys())
    rows = report.summarize(results, metric, mode, keys)
    errors = [r for r in results if r.error]
    if not rows:
        parent.close("FAILED")
        first = errors[0].error if errors else "no trial reported a metric"
        raise UserError(
            f"No trial of search {name} produced {metric}: {first}. See the Ray logs under {config['storage_path']}/{name}."
        )
    best = rows[0]
    summary = {
        "search": name,
        "parent_run_id": parent.run_id,
        f"best_{metric}": best[metric],
        "best_trial_id": best["trial_id"],
        "trials": len(rows),
        "errored": len(errors),
    }
    parent.log_metrics({f"best_{metric}": best[metric], "trials_completed": len(rows), "trials_errored": len(errors)}, step=0)
    parent.set_tags({"best_trial_id": best["trial_id"], "best_run_id": best["mlflow_run_id"]})
    parent.flush()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        files = report.write_top_k(rows, tcfg["top_k"], out)
        report.learning_curves(rows, metric, config["train"]["epochs"], out / "learning_curves.png")
        report.param_plots(rows, metric, keys, out / "params_vs_metric.png") if keys else None
        uploads = [*files, *sorted(out.glob("*.png"))]
        tracker_step(
            config,
            "the search plots and top-k tables",
            lambda: [tracking.client(rt["tracking_uri"]).log_artifact(parent.run_id, str(f), "search") for f in uploads],
        )
    best_result = next(r for r in results if (r.metrics or {}).get("trial_id") == best["trial_id"])
    if config["evaluate"]["enabled"]:
        summary.update(evaluate_and_register(config, rt, best_result, best, parent.run_id or ""))
        parent.set_tags({k: v for k, v in summary.items() if k in ("registered_version", "champion_decision")})
    parent.close("FINISHED")
    _replay_leftovers(config, name, [parent.run_id or "", *(str(r.get("mlflow_run_id") or "") for r in rows)])
    cols = ["trial_id", metric, "epochs", *keys, "mlflow_run_id"]
    print(f"\nTop trials of {name}:\n" + table(rows[: tcfg["top_k"]], cols), flush=True)
    return summary


def tracker_step(config: dict[str, Any], what: str, fn: Callable[[], T]) -> T | None:
    """One MLflow step after the search, retried for mlflow.retry_seconds; if the tracker stays down, warn
    and skip it (and, without more waiting, every later step of this process): a search never crashes
    because the tracker is down."""
    if _TRACKER_DOWN:
        log.warning("MLflow still unreachable: skipped %s", what)
        return None
    try:
        return tracking.retrying(fn, config["mlflow"]["retry_seconds"])
    except Exception as err:
        if not tracking.transient(err):
            raise
        _TRACKER_DOWN.append(what)
        log.warning(
            "MLflow unreachable for %ss (%s): skipped %s", config["mlflow"]["retry_seconds"], redact_text(str(err))[:200], what
        )
        return None


def _replay_leftovers(config: dict[str, Any], name: str, run_ids: list[str]) -> None:
    """Points spooled by this search's runs that no logger could send yet: one more try, else say how."""
    spool, uri = config["mlflow"]["spool_dir"], config["mlflow"]["tracking_uri"]
    prefixes = [r for r in run_ids if r] + [tracking.spool_name(None, f"{name}/")]
    try:
        sent, files = tracking.replay_dir(uri, spool, prefixes)
    except Exception as err:
        left = [f.name for f in Path(spool).glob("*.jsonl") if f.stem.startswith(tuple(prefixes))]
        log.warning(
            "%d spool file(s) of this search wait in %s (%s). Send them later: python -m raymlops.tracking replay "
            "--spool-dir %s --tracking-uri %s",
            len(left),
            spool,
            redact_text(str(err))[:200],
            spool,
            redact_text(uri),
        )
        return
    if files:
        print(f"Replayed {sent} spooled batch(es) from {files} file(s) to MLflow", flush=True)


def evaluate_and_register(
    config: dict[str, Any], rt: dict[str, Any], result: Any, best: dict[str, Any], parent_id: str
) -> dict[str, Any]:
    """Test-set evaluation of the best trial's final checkpoint, logged model, registry alias."""
    import torch

    from raymlops import registry
    from raymlops.config import apply_overrides
    from raymlops.data import load_splits
    from raymlops.evaluate import evaluate_model, log_evaluation
    from raymlops.models import build_model
    from raymlops.worker import _load_any, log_model

    ckpt_path = result.checkpoint.path if result.checkpoint else (result.metrics or {}).get("checkpoint_path")
    if not ckpt_path:
        log.warning("best trial %s left no checkpoint; skipping evaluation and registration", best["trial_id"])
        return {}
    state = _load_any(ckpt_path)
    trial_cfg = apply_overrides(config, {k: v for k, v in result.config.items()})
    splits = load_splits(trial_cfg["data"], seed=trial_cfg["train"]["seed"])
    model = build_model(state["model_config"], splits.channels, splits.num_classes)
    model.load_state_dict(state["model"])
    device = torch.device("cuda" if rt["use_gpu"] and torch.cuda.is_available() else "cpu")
    evaluation = evaluate_model(model, splits, device, batch_size=config["train"]["eval_batch_size"])
    # the run id is empty when the trial's run was opened late (the tracker was down when the trial began)
    child = (
        best["mlflow_run_id"]
        or tracker_step(
            config,
            "finding the best trial's run",
            lambda: tracking.find_run(rt["tracking_uri"], rt["experiment_id"], f"{rt['search_key']}/{best['trial_id']}"),
        )
        or ""
    )
    out: dict[str, Any] = {"test_acc": evaluation["test_acc"], "test_loss": evaluation["test_loss"]}
    runs = [r for r in dict.fromkeys([parent_id, child]) if r]

    def log_eval() -> bool:
        log_evaluation(rt["tracking_uri"], runs, evaluation)
        return True

    if not tracker_step(config, "the test-set evaluation", log_eval):
        for run_id in runs:  # the test metrics at least wait in the spool
            spool = tracking.RunLogger(rt["tracking_uri"], run_id, spool_dir=config["mlflow"]["spool_dir"], retry_seconds=1)
            spool.log_metrics(out, step=0)
            spool.flush(timeout_s=30)
    print(
        f"Best trial {best['trial_id']}: {config['tune']['metric']}={best[config['tune']['metric']]:.4f}, "
        f"test_acc={evaluation['test_acc']:.4f} on {evaluation['n_test']} test images",
        flush=True,
    )
    if not config["registry"]["register"] or not child:
        return out
    name = config["registry"]["model_name"]
    model_uri = tracker_step(config, "logging the best model", lambda: log_model(rt["tracking_uri"], child, model, splits))
    version = model_uri and tracker_step(
        config,
        "registering the best model",
        lambda: registry.register(
            rt["tracking_uri"],
            model_uri,
            name,
            child,
            {"test_acc": evaluation["test_acc"], "test_loss": evaluation["test_loss"], "search_run_id": parent_id},
        ),
    )
    decision = version and tracker_step(
        config,
        "the champion decision",
        lambda: registry.decide_champion(
            rt["tracking_uri"],
            name,
            version,
            config["registry"]["promote"],
            min_improvement=config["registry"]["min_improvement"],
        ),
    )
    if not decision:
        print(f"Best trial's model not registered (MLflow unreachable); its checkpoint is {ckpt_path}", flush=True)
        return out
    print(f"Registered {name} v{version} as @{schema.ALIAS_CANDIDATE}; {decision}", flush=True)
    return {
        **out,
        "registered_version": version,
        "champion_decision": decision,
        "model_uri": f"models:/{name}@{schema.ALIAS_CANDIDATE}",
    }
