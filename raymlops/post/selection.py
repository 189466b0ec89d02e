"""Which trial a search registers, and the reports that explain it: the Pareto front of a multi-objective search,
the lineage of a PBT search, the registry.select rule that chose the trial and (PBT) the schedule it followed."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from raymlops.config import choices
from raymlops.config.contract import RunContract
from raymlops.config.objectives import describe_rule, objectives, select_rule
from raymlops.config.schema import Config
from raymlops.core import names
from raymlops.post import pareto, population
from raymlops.post.steps import TrackerSteps
from raymlops.tracking import RunLogger, client

MAX_TAG_CHARS = 5000  # MLflow model-version tag values


def choose_trial(
    config: Config,
    search: RunContract,
    results: Any,
    rows: list[dict[str, Any]],
    keys: list[str],
    parent: RunLogger,
    steps: TrackerSteps,
) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """(the row to evaluate and register or None, the tags saying why) after the reports are on the parent run."""
    goals, rule = objectives(config.tune), select_rule(config.registry, config.tune)
    wanted = [m for m in dict.fromkeys([*goals, rule["metric"], *rule["constraints"]]) if m != config.tune.metric]
    pareto.add_metrics(rows, results, wanted)
    chosen, reason = _apply_rule(config.registry.select is not None, rows, goals, rule)
    tags = {names.TAG_SELECT_RULE: reason}
    uri, parent_id = search.launch.tracking_uri, parent.run_id or ""
    with tempfile.TemporaryDirectory() as tmp:
        out, files = Path(tmp), []
        if len(goals) > 1:
            files += pareto.write_front(rows, goals, keys, out)
        if config.scheduler.name in choices.POPULATION_SCHEDULERS:
            events = steps("reading the PBT lineage", lambda: population.lineage(uri, rows)) or []
            files += population.write_lineage(events, rows, config.train.epochs, out)
            parent.log_metrics({"pbt_exploits": len(events)}, step=0)
            if chosen and chosen.get("mlflow_run_id"):
                plan = steps("reading the best trial's schedule", lambda: population.schedule(uri, chosen["mlflow_run_id"]))
                (out / "best_trial_schedule.json").write_text(json.dumps(plan or [], indent=2))
                files.append(out / "best_trial_schedule.json")
                tags["raymlops.hp_schedule"] = json.dumps(plan or [])[:MAX_TAG_CHARS]
        if files:
            c = client(uri)
            steps("the Pareto front / PBT lineage", lambda: [c.log_artifact(parent_id, str(f), "search") for f in files])
    parent.set_tags({names.TAG_SELECT_RULE: reason, "selected_trial_id": chosen["trial_id"] if chosen else "none"})
    return chosen, tags


def _apply_rule(
    has_select: bool, rows: list[dict[str, Any]], goals: dict[str, str], rule: dict[str, Any]
) -> tuple[dict[str, Any] | None, str]:
    missing = pareto.missing_objectives(rows, goals)
    if missing:
        return None, f"no trial reported {', '.join(missing)} of tune.objectives; check the trials' logs"
    if has_select:  # registry.select given: the rule (constraints, a Pareto pick) chooses
        return pareto.select(rows, rule)
    return rows[0], f"{describe_rule(rule)}: trial {rows[0]['trial_id']}"
