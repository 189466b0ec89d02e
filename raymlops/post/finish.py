"""What follows a search: the summary, plots and top-k tables on the parent run, the best trial evaluated and
registered, spooled points sent, and the final table."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from raymlops.config.contract import RunContract
from raymlops.config.schema import Config, MlflowConfig, TuneConfig
from raymlops.core import names
from raymlops.core.console import table
from raymlops.core.errors import UserError
from raymlops.core.redact import redact_text
from raymlops.post import summary as summary_mod
from raymlops.post.champion import evaluate_and_register
from raymlops.post.selection import choose_trial
from raymlops.post.steps import TrackerSteps
from raymlops.tracking import RunLogger, client, copy_datasets, replay_dir, spool_name

log = logging.getLogger(__name__)


def finish_search(config: Config, search: RunContract, results: Any, parent: RunLogger) -> dict[str, Any]:
    """Summary, plots and top-k on the parent; evaluate and register the best trial's model."""
    tcfg, name = config.tune, search.run_key
    metric, mode = tcfg.metric, tcfg.mode
    keys = list((config.search_space or {}).keys())
    rows = summary_mod.summarize(results, metric, mode, keys)
    errors = [r for r in results if r.error]
    if not rows:
        parent.close("FAILED")
        first = errors[0].error if errors else "no trial reported a metric"
        raise UserError(
            f"No trial of search {name} produced {metric}: {first}. See the Ray logs under {config.storage_path}/{name}."
        )
    best = rows[0]
    out = {"search": name, "parent_run_id": parent.run_id, f"best_{metric}": best[metric], "best_trial_id": best["trial_id"]}
    out.update(trials=len(rows), errored=len(errors), never_ran=never_ran(tcfg, results, rows, errors))
    out["trial_rows"] = rows  # best first, with each trial's curve: raymlops.api's table and plot (not printed)
    out["incomplete"] = incomplete_reason(config, out, results)
    parent.log_metrics({f"best_{metric}": best[metric], "trials_completed": len(rows), "trials_errored": len(errors)}, step=0)
    parent.set_tags({"best_trial_id": best["trial_id"], "best_run_id": best["mlflow_run_id"]})
    if out["incomplete"]:
        parent.set_tags({names.TAG_INCOMPLETE: out["incomplete"]})
    parent.flush()
    steps = TrackerSteps(config.mlflow.retry_seconds)
    if best["mlflow_run_id"] and parent.run_id:  # the parent's Dataset column and lineage: what its trials trained on
        steps("the data set input", lambda: copy_datasets(search.launch.tracking_uri, best["mlflow_run_id"], parent.run_id or ""))
    _upload_report(tcfg, config.train.epochs, search, rows, keys, parent.run_id or "", steps)
    chosen, version_tags = choose_trial(config, search, results, rows, keys, parent, steps)
    out.update(selected_trial_id=chosen["trial_id"] if chosen else None, **version_tags)
    if chosen is None:
        print(f"Nothing registered: {version_tags[names.TAG_SELECT_RULE]}", flush=True)
    elif config.evaluate.enabled:
        chosen_result = next(r for r in results if (r.metrics or {}).get("trial_id") == chosen["trial_id"])
        out.update(evaluate_and_register(config, search, chosen_result, chosen, parent.run_id or "", steps, version_tags))
        parent.set_tags({k: v for k, v in out.items() if k in ("registered_version", "champion_decision")})
    parent.close("FINISHED")
    _replay_leftovers(config.mlflow, name, [parent.run_id or "", *(str(r.get("mlflow_run_id") or "") for r in rows)])
    cols = ["trial_id", metric, "epochs", *keys, "mlflow_run_id"]
    print(f"\nTop trials of {name}:\n" + table(rows[: tcfg.top_k], cols), flush=True)
    return out


def never_ran(tune: TuneConfig, results: Any, rows: list[dict[str, Any]], errors: list[Any]) -> int:
    """Trials that neither reported nor failed, and samples Tune never created (a grid search makes more
    trials than num_samples, never fewer)."""
    silent = len(results) - len(rows) - len(errors)
    return max(0, silent) + max(0, tune.num_samples - len(results))


def incomplete_reason(config: Config, summary: dict[str, Any], results: Any) -> str | None:
    """Why a search that produced a best trial still did not do all it was asked; None when it did."""
    failed, missing = summary["errored"], summary["never_ran"]
    if not failed and not missing:
        return None
    parts = []
    if failed:
        first = next(r.error for r in results if r.error)
        why = str(first).strip().splitlines()[-1].strip()[:300] if str(first).strip() else type(first).__name__
        parts.append(f"{failed} trial(s) failed after {config.train.max_failures} retries each (first: {why})")
    if missing:
        parts.append(f"{missing} trial(s) never ran")
    done = sum(1 for r in results if not r.error and r.metrics)
    return (
        f"{' and '.join(parts)}; {done} finished, and everything they logged is in MLflow (parent run "
        f"{summary['parent_run_id']}). Rerun with tune.resume=true to run the rest."
    )


def _upload_report(
    tune: TuneConfig,
    epochs: int,
    search: RunContract,
    rows: list[dict[str, Any]],
    keys: list[str],
    parent_id: str,
    steps: TrackerSteps,
) -> None:
    metric = tune.metric
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        files = summary_mod.write_top_k(rows, tune.top_k, out)
        summary_mod.learning_curves(rows, metric, epochs, out / "learning_curves.png")
        if keys:
            summary_mod.param_plots(rows, metric, keys, out / "params_vs_metric.png")
            summary_mod.parallel_coordinates(rows, metric, keys, out / "parallel_coordinates.png")
        uploads = [*files, *sorted(out.glob("*.png"))]
        c = client(search.launch.tracking_uri)
        steps("the search plots and top-k tables", lambda: [c.log_artifact(parent_id, str(f), "search") for f in uploads])


def _replay_leftovers(mlflow: MlflowConfig, name: str, run_ids: list[str]) -> None:
    """Points spooled by this search's runs that no logger could send yet: one more try, else say how."""
    spool, uri = mlflow.spool_dir, mlflow.tracking_uri
    prefixes = [r for r in run_ids if r] + [spool_name(None, f"{name}/")]
    try:
        sent, files = replay_dir(uri, spool, prefixes)
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
