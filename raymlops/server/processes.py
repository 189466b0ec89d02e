"""The `mlflow server` process: start it (plain or basic auth, HTTP or HTTPS) beside PostgreSQL,
wait until /health answers, stop both. Settings that are not secret stay in <state>/server.json."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from raymlops.core.errors import UserError
from raymlops.core.redact import redact_text
from raymlops.server import tls
from raymlops.server.postgres import AUTH_DB, HOST, pg_running, pg_uri, stop_postgres

PERMISSIONS = ("READ", "EDIT", "MANAGE", "NO_PERMISSIONS")
WORKER_HEALTHCHECK_S = 120
ADMIN_ENV = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


@dataclasses.dataclass(frozen=True)
class Settings:
    """How the server under one state folder runs; written to <state>/server.json (no secrets)."""

    port: int = 5000
    pg_port: int = 5433
    artifacts: str | None = None  # None: <state>/mlartifacts, proxied by the server
    auth: bool = False
    default_permission: str = "READ"
    tls_cert: str | None = None
    tls_key: str | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls_cert else 'http'}://{HOST}:{self.port}"

    def save(self, state: Path) -> None:
        (state / "server.json").write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, state: Path) -> Settings | None:
        path = state / "server.json"
        return cls(**json.loads(path.read_text())) if path.is_file() else None


def artifact_destination(state: Path, settings: Settings) -> str:
    return settings.artifacts or str((state / "mlartifacts").resolve())


def start_mlflow(state: Path, settings: Settings, backend: str) -> None:
    """Start `mlflow server` detached (pid in <state>/mlflow.pid) and wait for /health."""
    pid_file = state / "mlflow.pid"
    if pid_file.is_file() and alive(int(pid_file.read_text())):
        return
    tls_files = (settings.tls_cert, settings.tls_key) if settings.tls_cert and settings.tls_key else None
    args = server_args(backend, artifact_destination(state, settings), settings.auth, tls_files)
    cmd = [str(Path(sys.executable).parent / "mlflow"), "server", *args, "--host", HOST, "--port", str(settings.port)]
    # MLflow 3's job execution (GenAI scorer and prompt-optimization jobs, which raymlops does not use) starts
    # eight huey consumer processes per server by default: ~1.6 GB and seconds of CPU on a 2-core machine.
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
    if settings.auth:
        env.update(auth_env(state, settings))
    log = open(state / "mlflow.log", "ab")  # noqa: SIM115 - handed to the detached server
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    pid_file.write_text(str(proc.pid))
    settings.save(state)
    wait_healthy(settings.url, state / "mlflow.log", proc, ca=settings.tls_cert)


def server_args(backend: str, destination: str, auth: bool, tls_files: tuple[str, str] | None = None) -> list[str]:
    """`mlflow server`'s options but host and port: the same for this machine and cluster/k8s/base/mlflow-server.yaml."""
    # A worker still importing the app on a busy machine misses uvicorn's 5 s health check and is
    # killed and restarted (measured: startup went from ~15 s to 80+ s at load 10 on 2 cores).
    opts = f"--timeout-worker-healthcheck {WORKER_HEALTHCHECK_S}"
    if tls_files:
        opts += " " + tls.uvicorn_opts(*tls_files)
    args = ["--backend-store-uri", backend, "--serve-artifacts", "--artifacts-destination", destination]
    args += ["--workers", "2", "--uvicorn-opts", opts]
    return [*args, "--app-name", "basic-auth"] if auth else args


def auth_env(state: Path, settings: Settings) -> dict[str, str]:
    """The basic-auth app's config: users and permissions in PostgreSQL beside the tracking data.

    The admin's password reaches MLflow only through the server's environment
    (MLFLOW_AUTH_ADMIN_PASSWORD): never argv, never the ini file; MLflow stores it hashed."""
    user, password = (os.environ.get(name) for name in ADMIN_ENV)
    if not user or not password:
        raise UserError("--auth needs the admin credentials in MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD.")
    if settings.default_permission not in PERMISSIONS:
        raise UserError(f"--default-permission {settings.default_permission}: use one of {', '.join(PERMISSIONS)}.")
    ini = state / "basic_auth.ini"
    ini.write_text(
        f"[mlflow]\ndefault_permission = {settings.default_permission}\ndatabase_uri = {pg_uri(settings.pg_port, AUTH_DB)}\n"
        f"admin_username = {user}\nauthorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    ini.chmod(0o600)
    return {
        "MLFLOW_AUTH_CONFIG_PATH": str(ini),
        "MLFLOW_AUTH_ADMIN_USERNAME": user,
        "MLFLOW_AUTH_ADMIN_PASSWORD": password,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": os.environ.get("MLFLOW_FLASK_SERVER_SECRET_KEY") or os.urandom(16).hex(),
    }


def wait_healthy(
    url: str, log_path: Path, proc: subprocess.Popen[bytes] | None = None, timeout_s: float = 180, ca: str | None = None
) -> None:
    import requests

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        try:
            if requests.get(f"{url}/health", timeout=2, verify=ca or True).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    tail = log_path.read_text(errors="replace")[-1500:] if log_path.is_file() else ""
    raise UserError(
        f"The MLflow server at {url} did not become healthy within {timeout_s:.0f}s. Log {log_path}:\n{redact_text(tail)}"
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def mlflow_running(state: Path) -> bool:
    pid_file = state / "mlflow.pid"
    return pid_file.is_file() and alive(int(pid_file.read_text()))


def stop(state: Path) -> None:
    """Stop `mlflow server` (its whole process group) and PostgreSQL; the data stays."""
    pid_file = state / "mlflow.pid"
    if pid_file.is_file():
        pid = int(pid_file.read_text())
        if alive(pid):
            os.killpg(pid, signal.SIGTERM)
            for _ in range(50):
                if not alive(pid):
                    break
                time.sleep(0.2)
            else:
                os.killpg(pid, signal.SIGKILL)
        pid_file.unlink()
    stop_postgres(state)


def status(state: Path) -> str:
    settings = Settings.load(state) or Settings()
    up = mlflow_running(state)
    return f"mlflow server: {'running at ' + settings.url if up else 'stopped'}; postgres: {'running' if pg_running(state / 'pgdata') else 'stopped'}"
