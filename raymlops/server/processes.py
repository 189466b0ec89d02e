"""A shared MLflow tracking server as plain processes: PostgreSQL (backend store) + `mlflow server`.

    python -m raymlops.server start [--state .raymlops] [--port 5000] [--pg-port 5433] [--auth]
                                    [--artifacts-destination s3://bucket/prefix]
    python -m raymlops.server stop  [--state .raymlops]
    python -m raymlops.server status [--state .raymlops]

Both bind 127.0.0.1. Data lives under <state>/pgdata and <state>/mlartifacts and survives
restarts. Credentials (basic auth) come only from MLFLOW_TRACKING_USERNAME/PASSWORD.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from raymlops.core.errors import UserError, cli
from raymlops.core.redact import redact_text

HOST = "127.0.0.1"


def pg_bin(name: str) -> str:
    """A PostgreSQL server binary (Debian keeps them in /usr/lib/postgresql/<version>/bin)."""
    on_path = shutil.which(name)
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or ([on_path] if on_path else [])
    if not found:
        raise UserError(f"PostgreSQL's {name} was not found. Install Debian's package: apt-get install -y postgresql")
    return str(found[-1])


def _as_postgres(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """PostgreSQL refuses to run as root: run its tools as the postgres user when we are root."""
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    try:
        return subprocess.run(cmd, check=True, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload, no-any-return]
    except subprocess.CalledProcessError as err:
        hint = (
            " (as root, PostgreSQL runs as the postgres user: every folder above --state must be world-executable)"
            if os.geteuid() == 0
            else ""
        )
        raise UserError(
            f"{Path(cmd[-1] if os.geteuid() else cmd[4]).name} failed{hint}: {(err.stderr or err.stdout or '').strip()[-800:]}"
        ) from None


def start_postgres(state: Path, port: int) -> str:
    """initdb once into <state>/pgdata, start it on 127.0.0.1:port, create database mlflow; return the URI."""
    data, sock = state / "pgdata", state / "pgsock"
    sock.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(sock, "postgres", "postgres")
    if not (data / "PG_VERSION").is_file():
        data.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(data, "postgres", "postgres")
        _as_postgres([pg_bin("initdb"), "-D", str(data), "-U", "mlflow", "--auth=trust", "-E", "UTF8"])
    if _pg_running(data):
        return _pg_uri(port)
    _as_postgres(
        [
            pg_bin("pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(data / "server.log"),
            "-w",
            "-t",
            "60",
            "start",
            "-o",
            f"-c listen_addresses={HOST} -p {port} -k {sock}",
        ]
    )
    exists = _as_postgres(
        [
            pg_bin("psql"),
            "-h",
            HOST,
            "-p",
            str(port),
            "-U",
            "mlflow",
            "-d",
            "postgres",
            "-tAc",
            "SELECT 1 FROM pg_database WHERE datname='mlflow'",
        ]
    ).stdout.strip()
    if exists != "1":
        _as_postgres([pg_bin("createdb"), "-h", HOST, "-p", str(port), "-U", "mlflow", "mlflow"])
    return _pg_uri(port)


def _pg_running(data: Path) -> bool:
    if not (data / "postmaster.pid").is_file():
        return False
    cmd = [pg_bin("pg_ctl"), "-D", str(data), "status"]
    return (
        subprocess.run(["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd, capture_output=True).returncode
        == 0
    )


def _pg_uri(port: int) -> str:
    return f"postgresql+psycopg2://mlflow@{HOST}:{port}/mlflow"  # psycopg2-binary is a pinned dependency


def start_mlflow(state: Path, port: int, backend: str, artifacts: str | None, auth: bool) -> None:
    pid_file = state / "mlflow.pid"
    if pid_file.is_file() and _alive(int(pid_file.read_text())):
        return
    destination = artifacts or str((state / "mlartifacts").resolve())
    cmd = [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        "--backend-store-uri",
        backend,
        "--serve-artifacts",
        "--artifacts-destination",
        destination,
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "2",
    ]
    env = dict(os.environ)
    if auth:
        user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
        if not user or not password:
            raise UserError("--auth needs the admin credentials in MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD.")
        ini = state / "basic_auth.ini"
        ini.write_text(
            f"[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{(state / 'basic_auth.db').resolve()}\n"
            f"admin_username = {user}\nadmin_password = {password}\nauthorization_function = "
            "mlflow.server.auth:authenticate_request_basic_auth\n"
        )
        ini.chmod(0o600)
        env["MLFLOW_AUTH_CONFIG_PATH"] = str(ini)
        env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = env.get("MLFLOW_FLASK_SERVER_SECRET_KEY") or os.urandom(16).hex()
        cmd += ["--app-name", "basic-auth"]
    log = open(state / "mlflow.log", "ab")  # noqa: SIM115 - handed to the detached server
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    pid_file.write_text(str(proc.pid))
    wait_healthy(f"http://{HOST}:{port}", state / "mlflow.log", proc)


def wait_healthy(url: str, log_path: Path, proc: subprocess.Popen[bytes] | None = None, timeout_s: float = 90) -> None:

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        try:
            if requests.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    tail = log_path.read_text(errors="replace")[-1500:] if log_path.is_file() else ""
    raise UserError(
        f"The MLflow server at {url} did not become healthy within {timeout_s:.0f}s. Log {log_path}:\n{redact_text(tail)}"
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def stop(state: Path) -> None:
    pid_file = state / "mlflow.pid"
    if pid_file.is_file():
        pid = int(pid_file.read_text())
        if _alive(pid):
            os.killpg(pid, signal.SIGTERM)
            for _ in range(50):
                if not _alive(pid):
                    break
                time.sleep(0.2)
            else:
                os.killpg(pid, signal.SIGKILL)
        pid_file.unlink()
    data = state / "pgdata"
    if _pg_running(data):
        _as_postgres([pg_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])


@cli
def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m raymlops.server", description="PostgreSQL + MLflow tracking server on 127.0.0.1."
    )
    parser.add_argument("cmd", choices=["start", "stop", "status"])
    parser.add_argument("--state", default=".raymlops", help="folder for pgdata, artifacts, logs and pid files")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--pg-port", type=int, default=5433)
    parser.add_argument("--auth", action="store_true", help="MLflow basic auth; admin from MLFLOW_TRACKING_USERNAME/PASSWORD")
    parser.add_argument(
        "--artifacts-destination", default=None, help="e.g. s3://bucket/mlflow (MLFLOW_S3_ENDPOINT_URL for MinIO/S3-compatible)"
    )
    args = parser.parse_args(argv)
    state = Path(args.state).resolve()
    state.mkdir(parents=True, exist_ok=True)
    url = f"http://{HOST}:{args.port}"
    if args.cmd == "stop":
        stop(state)
        print(f"stopped the MLflow server and PostgreSQL under {state} (data kept)")
    elif args.cmd == "status":
        pid_file = state / "mlflow.pid"
        up = pid_file.is_file() and _alive(int(pid_file.read_text()))
        print(
            f"mlflow server: {'running at ' + url if up else 'stopped'}; postgres: {'running' if _pg_running(state / 'pgdata') else 'stopped'}"
        )
    else:
        backend = start_postgres(state, args.pg_port)
        start_mlflow(state, args.port, backend, args.artifacts_destination, args.auth)
        print(f"MLflow server at {url} (backend {redact_text(backend)}, artifacts proxied)\n  export MLFLOW_TRACKING_URI={url}")
