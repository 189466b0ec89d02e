"""Where a run came from (git, versions, command, seed) and the resolved config as flat MLflow params."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import re
import shlex
import subprocess
import sys
from pathlib import Path

from raymlops._version import __version__
from raymlops.config.dotted import flatten
from raymlops.config.schema import Config
from raymlops.config.tree import to_dict
from raymlops.core import names
from raymlops.core.origin import current_command
from raymlops.core.redact import redact, redact_text
from raymlops.tracking.log_batch import MAX_PARAM_LEN


def lineage(config: Config, argv: list[str]) -> dict[str, str]:
    """Tags that say where a run came from; taken on the driver, where the working tree is."""
    import mlflow  # here, not at the top: only the driver takes lineage, and it has imported both by now
    import ray

    torch, torchvision = package_version("torch"), package_version("torchvision")
    return {
        "raymlops.git_sha": _git("rev-parse", "HEAD") or "unknown",
        "raymlops.git_dirty": str(bool(_git("status", "--porcelain"))).lower(),
        "raymlops.version": __version__,
        "raymlops.versions": f"ray={ray.__version__} torch={torch} torchvision={torchvision} "
        f"mlflow={mlflow.__version__} python={platform.python_version()}",
        "raymlops.command": redact_text(" ".join(shlex.quote(a) for a in [Path(sys.argv[0]).name, *argv])),
        "raymlops.overrides": redact_text(" ".join(config.overrides)) or "(none)",
        "raymlops.seed": str(config.train.seed),
        "raymlops.host": platform.node(),
        **origin_tags(),
    }


def package_version(name: str) -> str:
    """An installed package's version as its own `__version__` says it (torch's '2.14.1+cu130' names its CUDA
    build; the wheel's metadata says only '2.14.1'), read from its version.py without importing the package: the
    search driver trains nothing, and importing torchvision costs it ~2 s (torch._dynamo, via torchvision.ops)."""
    module = sys.modules.get(name)
    if module is not None:
        return str(module.__version__)
    spec = importlib.util.find_spec(name)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        version_py = Path(folder) / "version.py"
        found = (
            re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", version_py.read_text(), re.M) if version_py.is_file() else None
        )
        if found:
            return found.group(1)
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def origin_tags() -> dict[str, str]:
    """What every raymlops run carries about its origin: the MLflow UI's "Source" and "Created by" (the
    `mlflow.source.*` / `mlflow.user` tags MLflow's fluent API sets and MlflowClient.create_run does not), and
    `raymlops.pipeline_run` when a scheduler (pipelines/) started this process, so a failed task finds its runs,
    and `raymlops.mlflow_project_run` when `mlflow run` (the MLproject file) did."""
    tags = source_tags()
    project_run = os.environ.get("MLFLOW_RUN_ID", "").strip()  # set by `mlflow run` (MLproject) for its command
    if project_run:
        tags[names.TAG_PROJECT_RUN] = project_run
    value = os.environ.get(names.PIPELINE_RUN_ENV, "").strip()
    return {**tags, names.TAG_PIPELINE_RUN: value[:MAX_PARAM_LEN]} if value else tags


def source_tags() -> dict[str, str]:
    """mlflow.source.name (the raymlops command, e.g. raymlops.tune, or the calling script), .type LOCAL, .git.commit
    when in a git checkout, and mlflow.user (MLflow's own rule: $LOGNAME/$USER, else the login name)."""
    from mlflow.tracking.context.default_context import DefaultRunContext
    from mlflow.utils import mlflow_tags

    argv0 = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    source = current_command() or argv0
    tags = {**DefaultRunContext().tags(), mlflow_tags.MLFLOW_SOURCE_NAME: source}
    sha = _git("rev-parse", "HEAD")
    return {**tags, mlflow_tags.MLFLOW_GIT_COMMIT: sha} if sha else tags


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def config_params(config: Config) -> dict[str, str]:
    """The resolved config as flat dotted params, credentials redacted, bookkeeping keys left out."""
    skip = ("search_space", "overrides", "lineage", "runtime", "serve", "predict")  # serve/predict: not training inputs
    flat = flatten(redact({k: v for k, v in to_dict(config).items() if k not in skip}))
    # tune.resume differs between a search and its resumption; MLflow refuses to change a logged param
    return {k: str(v)[:MAX_PARAM_LEN] for k, v in flat.items() if k != "tune.resume"}
