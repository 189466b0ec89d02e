"""The process's MLflow clients, checks that a tracking URI is usable, and finding or opening runs by key."""

from __future__ import annotations

import functools
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import requests

from raymlops.core import names
from raymlops.core.errors import UserError
from raymlops.core.redact import redact_text

# MLflow's HTTP layer retries 7 times with exponential backoff (minutes) before raising; our own
# tenacity loop owns retrying, with a bound the user sets (mlflow.retry_seconds).
HTTP_RETRY_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


def client(tracking_uri: str) -> Any:
    """The process's MlflowClient for tracking_uri (one per URI: building one costs ~40 ms, more for SQLite)."""
    for name, value in HTTP_RETRY_ENV.items():
        os.environ.setdefault(name, value)
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)  # a "Retrying..." line per request in an outage
    return _client(tracking_uri)


@functools.lru_cache(maxsize=16)
def _client(tracking_uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


# Tracking URI schemes MLflow 3.17 accepts; a SQLAlchemy driver may follow a + (postgresql+psycopg2://).
STORE_SCHEMES = ("http", "https", "sqlite", "postgresql", "mysql", "mssql", "file", "databricks", "databricks-uc", "uc")


def check_reachable(tracking_uri: str, timeout_s: float = 10.0) -> None:
    """Fail fast on an unknown scheme, an unwritable SQLite store, an unreachable server or rejected
    credentials, before Ray starts."""
    _check_store_uri(tracking_uri)
    if not tracking_uri.startswith(("http://", "https://")):
        return

    auth = None
    if os.environ.get("MLFLOW_TRACKING_USERNAME"):
        auth = (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ.get("MLFLOW_TRACKING_PASSWORD", ""))
    url = tracking_uri.rstrip("/") + "/api/2.0/mlflow/experiments/search"
    try:
        reply = requests.post(url, json={"max_results": 1}, auth=auth, timeout=timeout_s, verify=_tls_verify())
    except requests.exceptions.SSLError:
        raise UserError(
            f"The MLflow server at {redact_text(tracking_uri)} presented a certificate this machine does not trust. Set "
            f"{CERT_ENV} to its CA bundle (for make mlflow-server TLS=1: .raymlops/tls/server.crt)."
        ) from None
    except requests.RequestException as err:
        raise UserError(
            f"mlflow.tracking_uri={redact_text(tracking_uri)} is unreachable ({type(err).__name__}). Start the server "
            "(make mlflow-server), fix the URI, or drop the override to use the embedded store (mlflow=local)."
        ) from None
    if reply.status_code in (401, 403):
        raise UserError(
            f"The MLflow server at {redact_text(tracking_uri)} rejected the credentials (HTTP {reply.status_code}). "
            "Set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD in the environment to a valid user."
        )
    if reply.status_code >= 400:
        raise UserError(f"The MLflow server at {redact_text(tracking_uri)} answered HTTP {reply.status_code}: {reply.text[:200]}")


CERT_ENV = "MLFLOW_TRACKING_SERVER_CERT_PATH"


def _tls_verify() -> bool | str:
    """What MLflow's own client verifies an https server against (its CA-bundle and insecure-TLS variables)."""
    if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() in ("1", "true"):
        return False
    return os.environ.get(CERT_ENV) or True


def check_can_write(tracking_uri: str, experiment_name: str) -> None:
    """On a basic-auth server, stop before Ray unless the user may write to the (existing) experiment.

    A missing experiment is fine: whoever creates it gets MANAGE on it."""
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    if not user or not tracking_uri.startswith(("http://", "https://")):
        return
    import warnings

    from mlflow.exceptions import MlflowException

    refused = UserError(
        f"user {user} may not write to experiment {experiment_name} on {redact_text(tracking_uri)}. "
        "Ask a user with MANAGE on it (or the admin) for EDIT: python -m raymlops.server grant "
        f"{user} --experiment {experiment_name} --permission EDIT"
    )
    try:
        exp = client(tracking_uri).get_experiment_by_name(experiment_name)
        if exp is None:
            return
        with warnings.catch_warnings():  # loading the auth client warns about Starlette's WSGI middleware
            warnings.simplefilter("ignore")
            from mlflow.server import get_app_client

            auth = get_app_client("basic-auth", tracking_uri=tracking_uri)
        if auth.get_user(user).is_admin:
            return
        permission = auth.get_user_permission(user, "experiment", str(exp.experiment_id)).permission
    except MlflowException as err:
        if err.get_http_status_code() in (401, 403):
            raise refused from None
        if err.get_http_status_code() == 404:  # no auth app on this server: every user may write
            return
        raise
    if permission not in ("EDIT", "MANAGE"):
        raise refused


def _check_store_uri(tracking_uri: str) -> None:
    scheme = tracking_uri.split("://", 1)[0].split("+", 1)[0].lower() if "://" in tracking_uri else ""
    if scheme and scheme not in STORE_SCHEMES:
        raise UserError(
            f"mlflow.tracking_uri={redact_text(tracking_uri)} has a scheme MLflow cannot use ({scheme}://). Use the embedded "
            "store (mlflow.tracking_uri=sqlite:///.raymlops/mlflow.db), a server (http://127.0.0.1:5000, see make mlflow-server) "
            "or a database (postgresql://...)."
        )
    if scheme != "sqlite":
        return
    db = tracking_uri.split("://", 1)[1]
    db = db[1:] if db.startswith("/") else db  # sqlite:///rel.db is relative, sqlite:////abs.db absolute
    if db in ("", ":memory:"):
        return
    try:  # MLflow would otherwise fail later, inside Ray, with a traceback
        Path(db).parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=Path(db).parent, prefix=".write-test-"):
            pass
    except OSError as err:
        raise UserError(
            f"mlflow.tracking_uri={redact_text(tracking_uri)}: cannot write the SQLite store's folder {Path(db).parent} "
            f"({err.strerror or err}). Point it at a writable path, e.g. mlflow.tracking_uri=sqlite:///.raymlops/mlflow.db."
        ) from None


def ensure_experiment(tracking_uri: str, name: str, artifact_location: str | None) -> str:
    """The experiment's id, creating it (artifacts under artifact_location for local stores)."""
    c = client(tracking_uri)
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        if names.TAG_EXPERIMENT_KIND not in (exp.tags or {}):  # made before raymlops tagged it; a kind set in the UI stays
            c.set_experiment_tag(exp.experiment_id, names.TAG_EXPERIMENT_KIND, names.EXPERIMENT_KIND)
        return str(exp.experiment_id)
    location = None
    if artifact_location and not tracking_uri.startswith(("http://", "https://", "databricks")):
        location = artifact_location if "://" in artifact_location else Path(artifact_location).resolve().as_uri()
    try:
        kind = {names.TAG_EXPERIMENT_KIND: names.EXPERIMENT_KIND}
        return str(c.create_experiment(name, artifact_location=location, tags=kind))
    except Exception:  # created concurrently by another process
        exp = c.get_experiment_by_name(name)
        if exp is None:
            raise
        return str(exp.experiment_id)


def find_or_create_run(tracking_uri: str, experiment_id: str, run_key: str, run_name: str, tags: dict[str, str]) -> str:
    """The run tagged with run_key (a trial id or job name), created once; restarts reuse it."""
    return open_run(tracking_uri, experiment_id, run_key, run_name, tags)[0]


def find_run(tracking_uri: str, experiment_id: str, run_key: str) -> str | None:
    """The id of the run tagged with run_key, if there is one."""
    found = client(tracking_uri).search_runs(
        [experiment_id], filter_string=f"tags.`{names.TAG_RUN_KEY}` = '{run_key}'", max_results=1
    )
    return str(found[0].info.run_id) if found else None


def open_run(tracking_uri: str, experiment_id: str, run_key: str, run_name: str, tags: dict[str, str]) -> tuple[str, bool]:
    """find_or_create_run, also saying whether the run was created just now (so it has no points yet)."""
    return find_or_create(client(tracking_uri), experiment_id, run_key, run_name, tags)


def find_or_create(c: Any, experiment_id: str, run_key: str, run_name: str, tags: dict[str, str]) -> tuple[str, bool]:
    found = c.search_runs([experiment_id], filter_string=f"tags.`{names.TAG_RUN_KEY}` = '{run_key}'", max_results=1)
    if found:
        return str(found[0].info.run_id), False
    run = c.create_run(experiment_id, run_name=run_name, tags={**tags, names.TAG_RUN_KEY: run_key})
    return str(run.info.run_id), True


def logged_steps(tracking_uri: str, run_id: str, key: str) -> set[int]:
    return {m.step for m in client(tracking_uri).get_metric_history(run_id, key)}


def logged_values(tracking_uri: str, run_id: str, key: str) -> list[float]:
    return [m.value for m in client(tracking_uri).get_metric_history(run_id, key)]


def fail_pipeline_runs(tracking_uri: str, pipeline_run: str, reason: str) -> list[str]:
    """Close as FAILED, with `raymlops.failure_reason`, the runs a failed pipeline task started (tag
    `raymlops.pipeline_run`): its top-level run whatever its state, and any child still open (a search's
    finished trials keep FINISHED). Returns the run ids it changed."""
    c = client(tracking_uri)
    experiments = [e.experiment_id for e in c.search_experiments()]
    query = f"tags.`{names.TAG_PIPELINE_RUN}` = '{pipeline_run.replace(chr(39), '')}'"
    changed = []
    for run in c.search_runs(experiments, filter_string=query, max_results=1000) if experiments else []:
        top = names.TAG_PARENT not in run.data.tags
        if top or run.info.status in ("RUNNING", "SCHEDULED"):
            c.set_tag(run.info.run_id, names.TAG_FAILURE, redact_text(reason)[:5000])
            c.set_terminated(run.info.run_id, "FAILED")
            changed.append(run.info.run_id)
    return changed
