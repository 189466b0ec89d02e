"""The shared tracking server for real: PostgreSQL + `mlflow server` as plain processes on 127.0.0.1,
a smoke search with concurrent trials logging to it, read back over HTTP; restart keeps the data;
basic auth; an S3-compatible artifact store (moto's standalone server)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import postgres_state_dir
from helpers import free_port, wait_until

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parent.parent


def _server(cmd: str, state: Path, port: int, pg_port: int, *extra: str, env: dict[str, str] | None = None) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "raymlops.server",
            cmd,
            "--state",
            str(state),
            "--port",
            str(port),
            "--pg-port",
            str(pg_port),
            *extra,
        ],
        check=True,
        cwd=REPO,
        env=env or os.environ.copy(),
        timeout=180,
        capture_output=True,
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    state = postgres_state_dir("server")
    port, pg_port = free_port(), free_port()
    _server("start", state, port, pg_port)
    try:
        yield {"state": state, "port": port, "pg_port": pg_port, "uri": f"http://127.0.0.1:{port}"}
    finally:
        _server("stop", state, port, pg_port)


def _env(uri: str, **extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
    }
    return {**env, "MLFLOW_TRACKING_URI": uri, **extra}


def test_search_logs_to_the_postgres_backed_server(server: dict[str, Any], tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    args = [
        sys.executable,
        "-m",
        "raymlops.tune",
        "+experiment=smoke",
        "mlflow=server",
        "tune.num_samples=3",
        "tune.max_concurrent_trials=2",
        f"storage_path={tmp_path}/results",
        f"mlflow.spool_dir={tmp_path}/spool",
        "ray.num_cpus=2",
    ]
    proc = subprocess.run(args, cwd=REPO, env=_env(server["uri"]), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    c = MlflowClient(server["uri"])
    exp = c.get_experiment_by_name("raymlops-smoke")
    parents = c.search_runs([exp.experiment_id], filter_string="tags.`raymlops.role` = 'search'")
    assert len(parents) == 1
    parent = parents[0]
    children = c.search_runs([exp.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(children) == 3 and all(ch.data.tags["raymlops.role"] == "trial" for ch in children)
    for ch in children:
        steps = sorted(m.step for m in c.get_metric_history(ch.info.run_id, "val_acc"))
        assert steps == list(range(1, len(steps) + 1)) and steps
    local = c.download_artifacts(parent.info.run_id, "search/top_trials.json", str(tmp_path))
    assert Path(local).read_text().startswith("[")
    version = c.get_model_version_by_alias("raymlops-smoke", "candidate")
    assert version.run_id in {ch.info.run_id for ch in children}
    assert not list((tmp_path / "spool").glob("*.jsonl")), "nothing had to be spooled"
    # data survives a restart of both processes
    _server("stop", server["state"], server["port"], server["pg_port"])
    _server("start", server["state"], server["port"], server["pg_port"])
    assert (
        MlflowClient(server["uri"]).get_run(parent.info.run_id).data.metrics["best_val_acc"]
        == parent.data.metrics["best_val_acc"]
    )


def test_basic_auth_and_s3_artifacts(tmp_path: Path) -> None:
    """A server with basic auth whose artifacts go to an S3-compatible store (moto)."""
    import boto3
    import requests

    s3_port, port, pg_port = free_port(), free_port(), free_port()
    moto = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    creds = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "MLFLOW_S3_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}",
    }
    admin = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": "s3cret-Pa55word-xyz"}
    state = postgres_state_dir("auth")
    try:
        wait_until(
            lambda: requests.get(f"http://127.0.0.1:{s3_port}", timeout=1) is not None,
            60,
            what="moto's S3 server",
            interval_s=0.2,
            proc=moto,
        )
        s3 = boto3.client(
            "s3",
            endpoint_url=creds["MLFLOW_S3_ENDPOINT_URL"],
            aws_access_key_id="testing",
            aws_secret_access_key="testing-secret",
            region_name="us-east-1",
        )
        s3.create_bucket(Bucket="mlflow")
        env = {**os.environ, **creds, **admin}
        _server("start", state, port, pg_port, "--auth", "--artifacts-destination", "s3://mlflow/artifacts", env=env)
        uri = f"http://127.0.0.1:{port}"
        assert requests.post(f"{uri}/api/2.0/mlflow/experiments/search", json={"max_results": 1}, timeout=10).status_code == 401
        # right credentials: log an artifact through the proxy; it lands in the bucket
        from mlflow.tracking import MlflowClient

        os.environ.update(admin)
        try:
            c = MlflowClient(uri)
            exp = c.create_experiment("auth-s3")
            run = c.create_run(exp)
            note = tmp_path / "note.txt"
            note.write_text("hello")
            c.log_artifact(run.info.run_id, str(note))
        finally:
            for key in admin:
                os.environ.pop(key, None)
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="mlflow").get("Contents", [])]
        assert any(k.endswith("note.txt") for k in keys), keys
        # wrong credentials: the CLI stops in seconds with a clear message and never prints the password
        bad = _env(uri, MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD="wrong-Pa55word-abc")
        proc = subprocess.run(
            [sys.executable, "-m", "raymlops.tune", "+experiment=smoke", "mlflow=server"],
            cwd=REPO,
            env=bad,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2 and "rejected the credentials" in proc.stderr
        assert "wrong-Pa55word-abc" not in proc.stdout + proc.stderr and "Traceback" not in proc.stderr
        assert admin["MLFLOW_TRACKING_PASSWORD"] not in (state / "mlflow.log").read_text()
    finally:
        if (state / "mlflow.pid").exists() or (state / "pgdata").exists():
            _server("stop", state, port, pg_port)
        moto.terminate()
