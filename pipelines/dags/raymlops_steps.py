"""How the pipelines' tasks run raymlops: a subprocess of the raymlops venv's python, or `ray job submit` to
$RAY_ADDRESS, whose last line (`raymlops-result: {json}`) gives the ids and URIs the task hands on via XCom.

Runs in the Airflow venv, which does not have raymlops (`make airflow-install`). Settings, all optional:
  RAYMLOPS_REPO      the raymlops checkout (default: the folder above pipelines/); commands run there
  RAYMLOPS_PYTHON    the raymlops venv's python (default: $RAYMLOPS_REPO/.venv/bin/python)
  RAY_ADDRESS        a Ray cluster's dashboard (http://HEAD:8265): training, search and evaluation go there as
                     Ray jobs with the repo as working_dir; registry steps (MLflow only) stay local
  RAYMLOPS_JOB_PYTHON  the python a Ray job runs (default: python, the cluster's)
  MLFLOW_TRACKING_URI, RAYMLOPS_*: passed to the commands (and to Ray jobs as runtime_env env_vars)
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import uuid
from collections import deque
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RESULT_PREFIX = "raymlops-result: "  # raymlops.core.names.RESULT_PREFIX
PIPELINE_RUN_ENV = "RAYMLOPS_PIPELINE_RUN"  # raymlops.core.names.PIPELINE_RUN_ENV: tags every run the task opens
JOB_ENV_PREFIXES = ("MLFLOW_", "RAYMLOPS_")  # what a Ray job inherits from the Airflow worker


class RaymlopsStepFailed(RuntimeError):
    """A raymlops command exited non-zero; the message carries its last error line."""


def dag_settings(schedule: str) -> dict[str, Any]:
    """The @dag arguments every raymlops pipeline shares (retries and their delay: Airflow's own
    [core] default_task_retries / default_task_retry_delay)."""
    return {
        "schedule": schedule,
        "start_date": datetime(2026, 12, 1, tzinfo=UTC),
        "catchup": False,
        "max_active_runs": 1,
        "tags": ["raymlops"],
        "default_args": {"execution_timeout": timedelta(minutes=30)},
    }


def shared_cifar10(env_var: str) -> str:
    """A data folder from env_var, else the CIFAR-10 copy in ../shared beside the checkout."""
    return os.environ.get(env_var, str(repo().parent / "shared" / "data" / "cifar10"))


def repo() -> Path:
    return Path(os.environ.get("RAYMLOPS_REPO") or Path(__file__).resolve().parents[2])


def raymlops_python() -> str:
    return os.environ.get("RAYMLOPS_PYTHON") or str(repo() / ".venv" / "bin" / "python")


def newest_data(root: str) -> str:
    """root itself when it holds train/ and test/, else its newest (by name: 2026-12-01, ...) subfolder that does;
    "" (use the experiment's own data set) when root is empty."""
    if not root:
        return ""
    path = Path(root).expanduser().resolve()
    if (path / "train").is_dir():
        return str(path)
    dated = sorted(d for d in path.iterdir() if (d / "train").is_dir() and (d / "test").is_dir()) if path.is_dir() else []
    if not dated:
        raise ValueError(
            f"data_root={root} holds no train/ and test/ image folders, nor dated subfolders with them; "
            "point it at an image-folder tree (train/<class>/*.jpg, test/<class>/*) or pass data_root='' for the experiment's data."
        )
    return str(dated[-1])


def data_overrides(data_root: str) -> list[str]:
    return ["data.name=imagefolder", f"data.root={data_root}"] if data_root else []


def run_raymlops(module: str, args: list[str], context: dict[str, Any], on_cluster: bool = True) -> dict[str, Any]:
    """Run `python -m raymlops.<module> args` and return its result line. On any failure (non-zero exit, Airflow's
    execution_timeout, a kill) the runs it opened are closed FAILED with the reason, then the error is raised."""
    ti = context["ti"]
    pipeline_run = f"{ti.dag_id}/{ti.run_id}/{ti.task_id}/try{ti.try_number}"
    env = {**os.environ, PIPELINE_RUN_ENV: pipeline_run, "PYTHONUNBUFFERED": "1"}
    address = os.environ.get("RAY_ADDRESS", "") if on_cluster else ""
    submission_id = f"raymlops-{ti.task_id}-{uuid.uuid4().hex[:8]}".replace("_", "-")
    cmd = (
        _job_command(module, args, env, submission_id, address)
        if address
        else [raymlops_python(), "-m", f"raymlops.{module}", *args]
    )
    log.info(
        "running %s (%s)",
        " ".join(cmd[:8]) + (" ..." if len(cmd) > 8 else ""),
        f"Ray job {submission_id}" if address else "local",
    )
    try:
        return _stream(cmd, env)
    except BaseException as err:
        reason = f"{ti.task_id} failed: {type(err).__name__}: {err}"[:2000]
        if address:
            _quiet([str(Path(raymlops_python()).parent / "ray"), "job", "stop", "--address", address, submission_id], env)
        _quiet([raymlops_python(), "-m", "raymlops.tracking", "fail", "--pipeline-run", pipeline_run, "--reason", reason], env)
        raise


def _job_command(module: str, args: list[str], env: dict[str, str], submission_id: str, address: str) -> list[str]:
    job_env = {k: v for k, v in env.items() if k.startswith(JOB_ENV_PREFIXES)}
    return [
        str(Path(raymlops_python()).parent / "ray"),
        "job",
        "submit",
        "--address",
        address,
        "--submission-id",
        submission_id,
        "--working-dir",
        str(repo()),  # uploaded without what .gitignore names (.venv, .raymlops)
        "--runtime-env-json",
        json.dumps({"env_vars": job_env}),
        "--",
        os.environ.get("RAYMLOPS_JOB_PYTHON", "python"),
        "-m",
        f"raymlops.{module}",
        *args,
    ]


def _stream(cmd: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Echo the command's output into the task log; its result line, or RaymlopsStepFailed."""
    result: dict[str, Any] | None = None
    tail: deque[str] = deque(maxlen=20)
    proc = subprocess.Popen(cmd, cwd=repo(), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            log.info("%s", line)
            tail.append(line)
            if RESULT_PREFIX in line:
                result = json.loads(line.split(RESULT_PREFIX, 1)[1])
        code = proc.wait()
    finally:
        if proc.poll() is None:  # Airflow's timeout or a kill interrupted us: do not leave the command running
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    if code != 0 or result is None:
        errors = [t for t in tail if "error" in t.lower()] or list(tail)[-3:] or ["(no output)"]
        raise RaymlopsStepFailed(f"{' '.join(cmd[:4])} ... exited {code}: {errors[-1].strip()}")
    return result


def _quiet(cmd: list[str], env: dict[str, str]) -> None:
    """A clean-up command: its output goes to the log, its failure only warns (the task fails anyway)."""
    try:
        out = subprocess.run(cmd, cwd=repo(), env=env, capture_output=True, text=True, timeout=120)
        log.warning("%s: %s", " ".join(cmd[:4]), (out.stdout + out.stderr).strip()[-500:])
    except Exception as err:
        log.warning("clean-up %s failed: %s", " ".join(cmd[:4]), err)
