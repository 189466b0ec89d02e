"""Warm start: seed a new Optuna search with earlier searches of the same MLflow experiment. Their trials'
configs (the child runs' params) and final metrics become evaluated points for the searcher; a key the new
search space lacks, or a value outside its range, is skipped with one warning line each."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from raymlops.config.objectives import objectives
from raymlops.config.schema import SearchAlgConfig, TuneConfig
from raymlops.core import names
from raymlops.core.errors import UserError
from raymlops.tracking.client import client

log = logging.getLogger(__name__)


@dataclass
class WarmStart:
    """What an earlier search tells the new one: points (dotted key -> value), their rewards, the source runs."""

    points: list[dict[str, Any]] = field(default_factory=list)
    rewards: list[Any] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)


def load_warm_start(
    alg: SearchAlgConfig, space: dict[str, Any], tune: TuneConfig, uri: str, experiment_id: str, this_run_id: str
) -> WarmStart:
    """The trials of the searches named by search_alg.warm_start (latest, a parent run id, or a list of them)."""
    wanted = alg.warm_start
    if not wanted:
        return WarmStart()
    c = client(uri)
    warm = WarmStart()
    for parent_id in _source_runs(c, experiment_id, wanted, this_run_id):
        parent = c.get_run(parent_id)
        _warn_dropped_keys(parent, space, parent_id)
        children = c.search_runs([experiment_id], filter_string=f"tags.`{names.TAG_PARENT}` = '{parent_id}'")
        for child in children:
            point, reward = _point(child, space, tune)
            if point is not None and reward is not None:
                warm.points.append(point)
                warm.rewards.append(reward)
        warm.sources.append(parent_id)
    print(f"Warm start: {len(warm.points)} trial(s) of search run(s) {', '.join(warm.sources)} seed the searcher", flush=True)
    return warm


def _source_runs(c: Any, experiment_id: str, wanted: Any, this_run_id: str) -> list[str]:
    if wanted != "latest":
        ids = [str(w) for w in (wanted if isinstance(wanted, list) else [wanted])]
        for run_id in ids:
            try:
                c.get_run(run_id)
            except Exception as err:
                raise UserError(
                    f"search_alg.warm_start={run_id}: no such MLflow run ({str(err)[:120]}). Give a search's parent run "
                    "id (its `raymlops.role` tag is search), or search_alg.warm_start=latest."
                ) from err
        return ids
    found = c.search_runs(
        [experiment_id],
        filter_string=f"tags.`{names.TAG_ROLE}` = 'search' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=5,
    )
    found = [r.info.run_id for r in found if r.info.run_id != this_run_id]
    if not found:
        raise UserError(
            "search_alg.warm_start=latest: this experiment has no finished search to start from. Run one first, "
            "or drop search_alg.warm_start."
        )
    return found[:1]


def _warn_dropped_keys(parent: Any, space: dict[str, Any], parent_id: str) -> None:
    try:
        old_space = json.loads(parent.data.params.get("search.space", "{}"))
    except ValueError:
        old_space = {}
    for key in old_space:
        if key not in space:
            log.warning("warm start: '%s' of search run %s is not in this search space; skipped", key, parent_id)


def _point(child: Any, space: dict[str, Any], tune: TuneConfig) -> tuple[dict[str, Any] | None, Any]:
    """One earlier trial as (point, reward); (None, None) when a value is missing or outside the new space."""
    point = {}
    for key, spec in space.items():
        raw = child.data.params.get(key)
        value = None if raw is None else _convert(raw, spec)
        if value is None:
            log.warning(
                "warm start: trial run %s has %s=%s, outside this search space (%s); skipped",
                child.info.run_id,
                key,
                raw,
                _describe(spec),
            )
            return None, None
        point[key] = value
    goals = objectives(tune)
    values = [child.data.metrics.get(m) for m in goals]
    if any(v is None for v in values):
        return None, None  # a failed trial or one that never reported: nothing to tell the searcher
    return point, values if len(values) > 1 else values[0]


def _convert(raw: str, spec: dict[str, Any]) -> Any:
    """A logged param (a string) as a value of the sampler spec, or None when it is not one."""
    if spec["type"] == "choice":
        return next((v for v in spec["values"] if str(v) == raw), None)
    try:
        number = float(raw)
    except ValueError:
        return None
    upper_ok = number < spec["upper"] if spec["type"] == "randint" else number <= spec["upper"]
    if not (spec["lower"] <= number and upper_ok):
        return None
    if spec["type"] == "quniform" and abs(number / spec["q"] - round(number / spec["q"])) > 1e-6:
        return None  # off this space's grid
    return int(number) if spec["type"] == "randint" else number


def _describe(spec: dict[str, Any]) -> str:
    if spec["type"] == "choice":
        return f"choice of {spec['values']}"
    return f"{spec['type']} [{spec['lower']}, {spec['upper']}]"
