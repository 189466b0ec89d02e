"""PostgreSQL for the tracking server: one cluster under <state>/pgdata holding two databases,
`mlflow` (runs, metrics, registry) and `mlflow_auth` (users, permissions), on 127.0.0.1 only."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

from raymlops.core.errors import UserError

HOST = "127.0.0.1"
TRACKING_DB = "mlflow"
AUTH_DB = "mlflow_auth"
PG_USER = "mlflow"


def pg_bin(name: str) -> str:
    """A PostgreSQL binary (Debian keeps them in /usr/lib/postgresql/<version>/bin)."""
    on_path = shutil.which(name)
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or ([on_path] if on_path else [])
    if not found:
        raise UserError(f"PostgreSQL's {name} was not found. Install Debian's package: apt-get install -y postgresql")
    return str(found[-1])


def as_postgres_cmd(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the postgres user when we are root."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def as_postgres(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL tool (see as_postgres_cmd); a failure is a UserError with its stderr."""
    tool = Path(cmd[0]).name
    cmd = as_postgres_cmd(cmd)
    try:
        return subprocess.run(cmd, check=True, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload, no-any-return]
    except subprocess.CalledProcessError as err:
        hint = (
            " (as root, PostgreSQL runs as the postgres user: every folder above --state must be world-executable)"
            if os.geteuid() == 0
            else ""
        )
        raise UserError(f"{tool} failed{hint}: {(err.stderr or err.stdout or '').strip()[-800:]}") from None


def give_to_postgres(path: Path) -> None:
    """As root, hand a folder PostgreSQL writes (data, socket, dump target) to the postgres user."""
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")


def start_postgres(state: Path, port: int) -> str:
    """initdb once into <state>/pgdata, start it on 127.0.0.1:port, create both databases; return the tracking URI."""
    data, sock = state / "pgdata", state / "pgsock"
    sock.mkdir(parents=True, exist_ok=True)
    give_to_postgres(sock)
    if not (data / "PG_VERSION").is_file():
        data.mkdir(parents=True, exist_ok=True)
        give_to_postgres(data)
        as_postgres([pg_bin("initdb"), "-D", str(data), "-U", PG_USER, "--auth=trust", "-E", "UTF8"])
    if not pg_running(data):
        opts = f"-c listen_addresses={HOST} -p {port} -k {sock}"
        as_postgres([pg_bin("pg_ctl"), "-D", str(data), "-l", str(data / "server.log"), "-w", "-t", "60", "start", "-o", opts])
    for db in (TRACKING_DB, AUTH_DB):
        ensure_database(port, db)
    return pg_uri(port)


def ensure_database(port: int, db: str) -> None:
    query = f"SELECT 1 FROM pg_database WHERE datname='{db}'"
    if psql(port, "postgres", query) != "1":
        as_postgres([pg_bin("createdb"), "-h", HOST, "-p", str(port), "-U", PG_USER, db])


def psql(port: int, db: str, query: str) -> str:
    """One query's unaligned result."""
    cmd = [pg_bin("psql"), "-h", HOST, "-p", str(port), "-U", PG_USER, "-d", db, "-tAc", query]
    return as_postgres(cmd).stdout.strip()


def pg_running(data: Path) -> bool:
    if not (data / "postmaster.pid").is_file():
        return False
    return subprocess.run(as_postgres_cmd([pg_bin("pg_ctl"), "-D", str(data), "status"]), capture_output=True).returncode == 0


def stop_postgres(state: Path) -> None:
    data = state / "pgdata"
    if pg_running(data):
        as_postgres([pg_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])


def pg_uri(port: int, db: str = TRACKING_DB) -> str:
    return f"postgresql+psycopg2://{PG_USER}@{HOST}:{port}/{db}"  # psycopg2-binary is a pinned dependency
