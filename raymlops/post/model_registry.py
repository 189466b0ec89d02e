"""Model Registry: register a model as `candidate`, promote `champion` by test metrics, roll back, list versions."""

from __future__ import annotations

from typing import Any

from raymlops.core import names
from raymlops.core.errors import UserError
from raymlops.core.redact import redact_text
from raymlops.tracking import client, retrying, transient
from raymlops.tracking.model_store import create_version

HISTORY_TAG = "raymlops.champion_history"  # registered-model tag: champion versions, oldest first


def register(tracking_uri: str, model_uri: str, name: str, run_id: str, metrics: dict[str, Any]) -> str:
    """Register model_uri under name, tag it with its test metrics, point `candidate` at it."""
    tags = {**{k: str(v) for k, v in metrics.items()}, "raymlops.run_id": run_id}
    version = create_version(tracking_uri, model_uri, name, tags)
    client(tracking_uri).set_registered_model_alias(name, names.ALIAS_CANDIDATE, version.version)
    return str(version.version)


def decide_champion(
    tracking_uri: str, name: str, version: str, policy: str, metric: str = "test_acc", min_improvement: float = 0.0
) -> str:
    """Move `champion` to version per policy (if_better | always | never); return the decision text."""
    c = client(tracking_uri)
    new = float(c.get_model_version(name, version).tags.get(metric, "nan"))
    current = _alias_version(c, name, names.ALIAS_CHAMPION)
    if policy == "never":
        decision = f"kept champion v{current}: promotion disabled (registry.promote=never)"
    elif current is None:
        promote(tracking_uri, name, version)
        decision = f"promoted v{version} to champion: first champion ({metric}={new:.4f})"
    else:
        old = float(c.get_model_version(name, current).tags.get(metric, "nan"))
        if policy == "always" or (new == new and (old != old or new > old + min_improvement)):
            promote(tracking_uri, name, version)
            decision = f"promoted v{version} to champion: {metric} {new:.4f} vs v{current} {old:.4f}"
        else:
            decision = f"kept champion v{current}: candidate v{version} {metric} {new:.4f} is not better than {old:.4f} (+{min_improvement})"
    c.set_model_version_tag(name, version, names.TAG_DECISION, decision)
    return decision


def promote(tracking_uri: str, name: str, version: str) -> None:
    c = client(tracking_uri)
    current = _alias_version(c, name, names.ALIAS_CHAMPION)
    if current == str(version):
        return
    c.get_model_version(name, version)  # raises if missing
    history = _history(c, name)
    if current is not None:
        c.set_registered_model_alias(name, names.ALIAS_PREVIOUS, current)
    c.set_registered_model_alias(name, names.ALIAS_CHAMPION, str(version))
    c.set_registered_model_tag(name, HISTORY_TAG, ",".join([*history, str(version)]))


def set_alias(tracking_uri: str, name: str, alias: str, version: str) -> None:
    """Point any alias (e.g. `challenger` for an A/B split in raymlops.serve) at version; champion goes through promote."""
    if alias == names.ALIAS_CHAMPION:
        promote(tracking_uri, name, version)
        return
    c = client(tracking_uri)
    c.get_model_version(name, version)  # raises if missing
    c.set_registered_model_alias(name, alias, str(version))


def alias_version(tracking_uri: str, name: str, alias: str, retry_seconds: float = 30.0) -> str | None:
    """The version an alias points at, or None when the model or the alias does not exist. An outage is
    retried for retry_seconds, then it and a refused login are UserErrors that say so."""
    try:
        return retrying(lambda: _alias_version(client(tracking_uri), name, alias), retry_seconds)
    except Exception as err:
        if transient(err):
            raise UserError(
                f"MLflow at {redact_text(tracking_uri)} stayed unreachable for {retry_seconds:g}s looking up {name}@{alias} "
                f"({type(err).__name__}: {redact_text(str(err))[:200]}). Start the server or fix mlflow.tracking_uri."
            ) from err
        if _status(err) in (401, 403):
            raise UserError(
                f"The MLflow server at {redact_text(tracking_uri)} refused to show {name}@{alias} (HTTP {_status(err)}). "
                "Set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to a user with READ on the model."
            ) from err
        raise


def rollback(tracking_uri: str, name: str) -> str:
    """Point `champion` back at the champion before it; return that version."""
    c = client(tracking_uri)
    history = _history(c, name)
    if len(history) < 2:
        raise UserError(f"Model {name!r} has no earlier champion to roll back to (history: {history or 'empty'}).")
    history.pop()
    previous = history[-1]
    c.set_registered_model_alias(name, names.ALIAS_CHAMPION, previous)
    if len(history) >= 2:
        c.set_registered_model_alias(name, names.ALIAS_PREVIOUS, history[-2])
    else:
        c.delete_registered_model_alias(name, names.ALIAS_PREVIOUS)
    c.set_registered_model_tag(name, HISTORY_TAG, ",".join(history))
    return previous


def _history(c: Any, name: str) -> list[str]:
    raw = c.get_registered_model(name).tags.get(HISTORY_TAG, "")
    return [v for v in raw.split(",") if v]


def _alias_version(c: Any, name: str, alias: str) -> str | None:
    """None only when MLflow says the model or alias does not exist; an outage or a refusal raises."""
    from mlflow.exceptions import MlflowException

    try:
        return str(c.get_model_version_by_alias(name, alias).version)
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":  # no such model
            return None
        # no such alias: MLflow 3.17's SQL registry (and a server on it) says INVALID_PARAMETER_VALUE
        if err.error_code == "INVALID_PARAMETER_VALUE" and f"alias {alias} not found" in str(err):
            return None
        raise


def _status(err: BaseException) -> int | None:
    from mlflow.exceptions import MlflowException

    return err.get_http_status_code() if isinstance(err, MlflowException) else None


def versions(tracking_uri: str, name: str) -> list[dict[str, Any]]:
    c = client(tracking_uri)
    from mlflow.exceptions import MlflowException

    try:
        model = c.get_registered_model(name)
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise UserError(
            f"No registered model named {name!r} at {tracking_uri}; run a search first (registry.model_name)."
        ) from None
    aliases: dict[str, list[str]] = {}
    for alias, ver in (model.aliases or {}).items():
        aliases.setdefault(str(ver), []).append(alias)
    rows = []
    for mv in sorted(c.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version)):
        rows.append(
            {
                "version": mv.version,
                "aliases": ",".join(sorted(aliases.get(str(mv.version), []))) or "-",
                "test_acc": mv.tags.get("test_acc", "-"),
                "run_id": mv.run_id,
                "decision": mv.tags.get(names.TAG_DECISION, "-"),
            }
        )
    return rows


def check_regression(
    tracking_uri: str, name: str, alias: str, measured: float, max_drop: float, metric: str = "test_acc"
) -> tuple[str, str | None]:
    """Compare a fresh measurement of name@alias with the metric recorded when it was registered.

    Returns (version, None) when it holds, or (version, reason) when it fell more than max_drop below;
    then the version is tagged `raymlops.regression` with the reason."""
    c = client(tracking_uri)
    version = _alias_version(c, name, alias)
    if version is None:
        raise UserError(
            f"Model {name!r} has no @{alias} at {tracking_uri}; register one first (python -m raymlops.registry list {name})."
        )
    recorded = c.get_model_version(name, version).tags.get(metric)
    if recorded is None:
        raise UserError(f"{name} v{version} has no {metric} tag from its registration: nothing to compare {measured:.4f} with.")
    if measured >= float(recorded) - max_drop:
        return version, None
    reason = f"{metric} {measured:.4f} is {float(recorded) - measured:.4f} below the {float(recorded):.4f} recorded at registration (allowed drop {max_drop})"
    c.set_model_version_tag(name, version, names.TAG_REGRESSION, reason)
    return version, reason
