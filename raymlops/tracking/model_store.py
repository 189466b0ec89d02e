"""Models logged, registered and downloaded through one tracking URI's client, never MLflow's process-global URI.

MLflow's fluent calls (`Model.log`, `mlflow.register_model`, `mlflow.pyfunc.load_model("models:/...")`)
read the global set by `mlflow.set_tracking_uri`; even `mlflow.artifacts.download_artifacts(tracking_uri=...)`
resolves a `models:/NAME@alias` with the global registry URI (ModelsArtifactRepository._get_model_uri_infos,
MLflow 3.17). So a models:/ or runs:/ URI is resolved here with the URI's own MlflowClient to the underlying
artifact location, and only that location is downloaded.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

from raymlops.tracking.client import client

log = logging.getLogger(__name__)
_WARMING: threading.Thread | None = None  # warm_model_logging's thread: log_model waits for it, not builds twice


def warm_model_logging() -> threading.Thread:
    """Build, in a background thread at the lowest CPU priority, what logging a model first spends 1.9 s on:
    MLflow's map of installed packages, which `save_model` reads to check the model's pip requirements against
    this environment (importlib_metadata.packages_distributions over every installed distribution, once per
    process). A search's driver starts it while the trials run, so the model logged after them does not wait.
    A warm-up only: if MLflow renames its private helper, the model logging after it builds the map itself."""

    def warm() -> None:
        if sys.platform == "linux":  # a thread's own nice value (elsewhere the id would name a process)
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        try:
            from mlflow.utils import requirements_utils

            requirements_utils._init_modules_to_packages_map()
        except Exception as e:  # an optimization: never worth failing a search over
            log.debug("MLflow's package map not built ahead: %s", e)

    global _WARMING
    _WARMING = threading.Thread(target=warm, name="warm-model-logging", daemon=True)
    _WARMING.start()
    return _WARMING


def download_model(tracking_uri: str, model_uri: str, path: str = "") -> str:
    """A local copy of model_uri (models:/NAME/VERSION, models:/NAME@ALIAS, models:/MODEL_ID, runs:/RUN/PATH,
    or any artifact URI), or of the file `path` inside it (e.g. MLmodel); returns the local path."""
    import mlflow.artifacts

    location = artifact_location(tracking_uri, model_uri)
    source = f"{location.rstrip('/')}/{path}" if path else location
    return str(mlflow.artifacts.download_artifacts(artifact_uri=source, tracking_uri=tracking_uri, registry_uri=tracking_uri))


def artifact_location(tracking_uri: str, model_uri: str) -> str:
    """Where model_uri's files are, resolved with tracking_uri's client (a local path is returned as is)."""
    from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository
    from mlflow.store.artifact.runs_artifact_repo import RunsArtifactRepository
    from mlflow.store.artifact.utils.models import get_model_name_and_version

    c = client(tracking_uri)
    if RunsArtifactRepository.is_runs_uri(model_uri):  # MLflow 3 keeps a logged model's files with the model
        run_id, path = RunsArtifactRepository.parse_runs_uri(model_uri)
        model_id = _logged_model_of_run(c, run_id, path)
        if model_id:
            return str(c.get_logged_model(model_id).artifact_location)
        return str(RunsArtifactRepository.get_underlying_uri(model_uri, tracking_uri))
    if not ModelsArtifactRepository.is_models_uri(model_uri):
        return model_uri
    base, inner = ModelsArtifactRepository.split_models_uri(model_uri)
    found = get_model_name_and_version(c, base)  # (model_id,) or (name, version); an alias is looked up
    location = c.get_logged_model(found[0]).artifact_location if len(found) == 1 else c.get_model_version_download_uri(*found)
    return f"{str(location).rstrip('/')}/{inner}" if inner else str(location)


def log_model(tracking_uri: str, run_id: str, name: str, save: Callable[[str, Any], None], metadata: dict[str, Any]) -> str:
    """What `Model.log` does under an active run, with explicit client calls: a LoggedModel linked to run_id,
    `save(local_dir, mlflow_model)` writes its files (a flavor's save_model), they are uploaded, and the model
    is marked READY (FAILED if anything raised). Returns models:/MODEL_ID."""
    import tempfile
    from pathlib import Path

    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import Model

    if _WARMING is not None:
        _WARMING.join(timeout=60)  # one build of the package map, not a second beside a first
    c = client(tracking_uri)
    run = c.get_run(run_id)
    params = {k: str(v) for k, v in run.data.params.items()}
    logged = c.create_logged_model(run.info.experiment_id, name=name, source_run_id=run_id, params=params)
    try:
        c.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
        mlflow_model = Model(
            artifact_path=logged.artifact_location,
            model_uuid=logged.model_id,
            run_id=run_id,
            metadata=metadata,
            model_id=logged.model_id,
        )
        with tempfile.TemporaryDirectory() as tmp:
            local = str(Path(tmp) / "model")
            save(local, mlflow_model)
            c.log_model_artifacts(logged.model_id, local)
    except Exception:
        c.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
        raise
    c.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    return f"models:/{logged.model_id}"


def create_version(tracking_uri: str, model_uri: str, name: str, tags: dict[str, str]) -> Any:
    """What `mlflow.register_model` does, against tracking_uri's registry: the registered model (made once)
    and a new version of it from model_uri (models:/MODEL_ID, runs:/RUN/PATH or an artifact URI)."""
    from mlflow.exceptions import MlflowException
    from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository
    from mlflow.store.artifact.runs_artifact_repo import RunsArtifactRepository
    from mlflow.store.artifact.utils.models import get_model_name_and_version

    c = client(tracking_uri)
    try:
        c.create_registered_model(name)
    except MlflowException as err:
        if err.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise
    source, run_id, model_id = model_uri, None, None
    if RunsArtifactRepository.is_runs_uri(model_uri):
        run_id, path = RunsArtifactRepository.parse_runs_uri(model_uri)
        model_id = _logged_model_of_run(c, run_id, path)
        source = model_uri if model_id else artifact_location(tracking_uri, model_uri)
    elif ModelsArtifactRepository.is_models_uri(model_uri):
        found = get_model_name_and_version(c, ModelsArtifactRepository.split_models_uri(model_uri)[0])
        if len(found) == 1:  # models:/m-...: MLflow 3's logged-model id
            model_id = found[0]
        else:  # another registered version: register the same files
            source = artifact_location(tracking_uri, model_uri)
    if model_id:  # the SQL registry resolves a models:/ source (and a model's run) with the global URI: done here
        logged = c.get_logged_model(model_id)
        source, run_id = str(logged.artifact_location), run_id or logged.source_run_id
    return c.create_model_version(name, source, run_id=run_id, tags=tags, model_id=model_id)


def _logged_model_of_run(c: Any, run_id: str, path: str) -> str | None:
    """The id of the LoggedModel named path that run_id logged last (MLflow 3 keeps a model's files with
    the model, not under the run's artifacts), or None when the run's artifacts hold it."""
    outputs = c.get_run(run_id).outputs
    for out in sorted(outputs.model_outputs if outputs else [], key=lambda o: o.step, reverse=True):
        if c.get_logged_model(out.model_id).name == path:
            return str(out.model_id)
    return None
