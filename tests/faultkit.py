"""Helpers for the fault-injection tests: our own subprocesses and their process trees, a real
MLflow server we can stop and restart, and exact-once checks on what reached MLflow.

Every process these helpers kill was started by the calling test (a subprocess or one of its
descendants, found through /proc); nothing else on the machine is touched.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from helpers import log_tail, wait_until

REPO = Path(__file__).resolve().parent.parent
# This suite's port range (other suites run on the same machine), per xdist worker; below the kernel's ephemeral
# range, as raynodes.PORTS.
PORTS = range(26000, 27000)


# ------------------------------------------------------------------ processes


def _proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) for every live process."""
    table: dict[int, tuple[int, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] == "Z":  # a zombie is already dead
                continue
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        table[int(entry)] = (int(fields[1]), cmd)
    return table


def descendants(root: int) -> dict[int, str]:
    """pid -> command line of every live descendant of root (Ray actors included: they stay
    children of the raylet even though they run in their own sessions)."""
    table = _proc_table()
    kids: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        kids.setdefault(ppid, []).append(pid)
    out, stack = {}, [root]
    while stack:
        for pid in kids.get(stack.pop(), []):
            out[pid] = table[pid][1]
            stack.append(pid)
    return out


def alive(pids: dict[int, str]) -> dict[int, str]:
    """The processes of pids still running the same command (a reused pid does not count)."""
    table = _proc_table()
    return {pid: cmd for pid, cmd in pids.items() if pid in table and table[pid][1] == cmd}


def kill_tree(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL a subprocess we started and everything below it."""
    tree = descendants(proc.pid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    for pid in alive(tree):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def start_cli(module: str, args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[Any]:
    """`python -m module args` in its own session (so its process group can be killed whole)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_AUTH_MODE": "disabled", **(env or {})}
    full_env.pop("RAY_ADDRESS", None)
    fh = open(log, "ab")  # noqa: SIM115  # closed by the process's exit; the test reads the file
    return subprocess.Popen(
        [sys.executable, "-m", module, *args], cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, env=full_env, start_new_session=True
    )


def finish(proc: subprocess.Popen[Any], log: Path, timeout_s: float) -> str:
    """Wait for a subprocess to exit 0 (killing its tree on timeout); return its output."""
    try:
        rc = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        kill_tree(proc)
        raise AssertionError(f"still running after {timeout_s:.0f}s:\n{log_tail(log)}") from None
    text = log.read_text(errors="replace")
    assert rc == 0, f"exit {rc}:\n{log_tail(log)}"
    return text


# ------------------------------------------------------------------ an MLflow server we control


class MlflowServer:
    """`mlflow server` on 127.0.0.1:port over a SQLite backend; stop() and start() keep both."""

    def __init__(self, root: Path, port: int, backend_uri: str | None = None):
        self.root, self.port = root, port
        self.backend = backend_uri or f"sqlite:///{root}/server.db"
        self.uri = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[Any] | None = None
        self.log = root / "mlflow-server.log"

    def start(self, timeout_s: float = 90.0) -> None:
        import requests

        fh = open(self.log, "ab")  # noqa: SIM115
        cmd = [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--backend-store-uri",
            self.backend,
            "--artifacts-destination",
            str(self.root / "server-artifacts"),
            "--workers",
            "1",
        ]
        self.proc = subprocess.Popen(
            cmd,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        )

        def up() -> bool:
            try:
                return requests.get(f"{self.uri}/health", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_until(up, timeout_s, what=f"mlflow server on port {self.port}", proc=self.proc, log=self.log)

    def stop(self) -> None:
        """Kill the server (and its gunicorn/uvicorn workers) the hard way: an outage, not a shutdown."""
        if self.proc is not None:
            kill_tree(self.proc)
            self.proc = None

    @contextlib.contextmanager
    def running(self) -> Iterator[MlflowServer]:
        self.start()
        try:
            yield self
        finally:
            self.stop()


# ------------------------------------------------------------------ what reached MLflow


def epoch_steps(client: Any, run_id: str, key: str = "val_acc") -> list[int]:
    """Every step logged for key, duplicates kept (so a test can see them)."""
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def trial_runs(uri: str, experiment: str = "raymlops-smoke") -> list[Any]:
    """The trial runs (raymlops.role=trial) of an experiment in the store at uri."""
    from raymlops import tracking

    c = tracking.client(uri)
    exp = c.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return list(c.search_runs([exp.experiment_id], filter_string="tags.`raymlops.role` = 'trial'"))


def children(client: Any, experiment_id: str, parent_run_id: str) -> list[Any]:
    return list(
        client.search_runs([experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'", max_results=1000)
    )
