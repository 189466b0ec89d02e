"""Ray nodes of our own for the cluster tests: start them, watch them, stop exactly them.

Each `ray start --block` runs in a new session (setsid), so stopping kills that session's
processes and nothing else on the machine (`ray stop` would end every Ray here, other people's
included). Every fixed port comes from PORTS (helpers.free_ports(n, PORTS)); the fake autoscaler's nodes pick free ones.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from helpers import wait_until

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
# This suite's fixed ports, per xdist worker: below the kernel's ephemeral range (32768-60999 by default), so no
# socket of another process (a Ray worker's gRPC server, a client connection) takes one between free_ports()
# and the `ray start` that binds it minutes later (a replacement node's raylet never registered, once in CI).
PORTS = range(24000, 24999)


_TOKEN_FILE: list[Path] = []


def cluster_token_file() -> Path:
    """This test process's cluster token, in a file of its own (never ~/.ray/auth_token): what
    `ray get-auth-token --generate` gives a user, and what every node of our clusters runs with."""
    if not _TOKEN_FILE:
        path = Path(tempfile.mkdtemp(prefix="rmo-token-")) / "auth_token"
        path.write_text(uuid.uuid4().hex)
        path.chmod(0o600)
        _TOKEN_FILE.append(path)
    return _TOKEN_FILE[0]


def node_env(**extra: str) -> dict[str, str]:
    """The environment of our Ray nodes: token auth on, as on a user's cluster, and the venv first on PATH,
    because a job's `python` entrypoint is looked up on the PATH that `ray start` had."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "MLFLOW_TRACKING_URI")}
    return {
        **env,
        "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(cluster_token_file()),
        "RAY_USAGE_STATS_ENABLED": "0",
        "PYTHONWARNINGS": "ignore::DeprecationWarning",
        **extra,
    }


def client_env(**extra: str) -> dict[str, str]:
    """A user's shell that joins the cluster: the token where Ray looks for it, and no RAY_AUTH_MODE (a user
    who joins a cluster by address should not need to know about it)."""
    env = node_env(**extra)
    env.pop("RAY_AUTH_MODE")
    return env


WORKER_PORTS = 24  # worker processes one node may run at once (Tune actors, job supervisor, drivers)
PORTS_PER_NODE = 6 + WORKER_PORTS


def node_ports(ports: list[int]) -> list[str]:
    """Flags that pin every per-node port (a second raylet on this host needs its own) to PORTS_PER_NODE ports."""
    names = [
        "node-manager-port",
        "object-manager-port",
        "metrics-export-port",
        "dashboard-agent-listen-port",
        "dashboard-agent-grpc-port",
        "runtime-env-agent-port",
    ]
    assert len(ports) == PORTS_PER_NODE, len(ports)
    flags = [f"--{name}={port}" for name, port in zip(names, ports, strict=False)]
    return [*flags, "--worker-port-list=" + ",".join(str(p) for p in ports[6:])]


def head_args(gcs_port: int, dashboard_port: int, client_port: int, ports: list[int], tmp: Path, cpus: int) -> list[str]:
    """`ray start --head` on 127.0.0.1 with every port pinned, its temp dir under tmp."""
    return [
        "--head",
        "--node-ip-address=127.0.0.1",
        f"--port={gcs_port}",
        f"--num-cpus={cpus}",
        "--num-gpus=0",
        f"--temp-dir={tmp}",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard_port}",
        f"--ray-client-server-port={client_port}",
        "--object-store-memory=100000000",
        *node_ports(ports),
    ]


def worker_args(gcs: str, ports: list[int], tmp: Path, cpus: int) -> list[str]:
    """Another raylet on this host: same IP, its own ports and its own temp dir (tmp, created here). Sharing
    the head's would share runtime_resources/: this node's agent replaces the job's unpacked working dir."""
    tmp.mkdir()
    return [
        f"--address={gcs}",
        "--node-ip-address=127.0.0.1",
        f"--num-cpus={cpus}",
        "--num-gpus=0",
        f"--temp-dir={tmp}",
        "--object-store-memory=100000000",
        *node_ports(ports),
    ]


class RayNode:
    """One `ray start --block` (head or worker) in its own session; stop() ends that session."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path):
        self.log = log
        with log.open("w") as out:
            self.proc = subprocess.Popen(
                [str(VENV_BIN / "ray"), "start", "--block", "--disable-usage-stats", *args],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=REPO,
            )

    def stop(self) -> None:
        kill_session(self.proc.pid)
        self.proc.wait(timeout=30)

    def lose(self) -> None:
        """What a spot reclaim does: SIGKILL every process of the node's session at once, no goodbye."""
        kill_session(self.proc.pid, grace_s=10.0, signals=(signal.SIGKILL,))
        self.proc.wait(timeout=30)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text()[-chars:] if self.log.exists() else ""


def kill_session(sid: int, grace_s: float = 5.0, signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGKILL)) -> None:
    """SIGTERM, then SIGKILL, every process of session `sid` (raylets, GCS, agents, workers)."""
    for sig in signals:
        pids = _session_pids(sid)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        try:
            wait_until(lambda: not _session_pids(sid), grace_s, what=f"session {sid} to exit on {sig.name}", interval_s=0.2)
            return
        except AssertionError:
            continue  # still running after grace_s: SIGKILL next (after SIGKILL, give up as before)


def _session_pids(sid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) == sid and _is_running(int(entry)):
                    pids.append(int(entry))
            except (ProcessLookupError, PermissionError):
                pass
    return pids


def _is_running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def alive_nodes(gcs_address: str) -> dict[str, dict[str, float]]:
    """node id (hex) -> total resources of every alive node, read from the GCS without ray.init (one gRPC
    call with the cluster's token: this process's Ray runs with auth off)."""
    import grpc
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc
    from ray.core.generated.gcs_pb2 import GcsNodeInfo

    token = cluster_token_file().read_text()
    with grpc.insecure_channel(gcs_address) as channel:
        reply = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel).GetAllNodeInfo(
            gcs_service_pb2.GetAllNodeInfoRequest(), timeout=10, metadata=[("authorization", f"Bearer {token}")]
        )
    return {n.node_id.hex(): dict(n.resources_total) for n in reply.node_info_list if n.state == GcsNodeInfo.ALIVE}


class NodeWatcher(threading.Thread):
    """Samples the alive nodes carrying `resource` every 0.5 s: the 0 -> N -> 0 curve."""

    def __init__(self, gcs_address: str, resource: str):
        super().__init__(daemon=True)
        self.gcs_address, self.resource = gcs_address, resource
        self.samples: list[tuple[float, frozenset[str]]] = []
        self.seen: set[str] = set()
        self._stop_event = threading.Event()

    def current(self) -> frozenset[str]:
        nodes = alive_nodes(self.gcs_address)
        return frozenset(nid for nid, res in nodes.items() if res.get(self.resource, 0) > 0)

    def run(self) -> None:
        t0 = time.monotonic()
        while not self._stop_event.is_set():
            try:
                now = self.current()
                self.samples.append((time.monotonic() - t0, now))
                self.seen |= now
            except Exception:
                pass
            self._stop_event.wait(0.5)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=15)

    @property
    def peak(self) -> int:
        return max((len(nodes) for _, nodes in self.samples), default=0)


def short_temp_dir() -> Path:
    """Ray's socket paths must stay under 107 characters: pytest's tmp_path is too deep."""
    return Path(tempfile.mkdtemp(prefix="rmo", dir="/tmp"))


def run_module(module: str, args: list[str], env: dict[str, str], cwd: Path, timeout_s: float) -> tuple[int, str]:
    """`python -m module args` as a user would type it; returns (exit code, output). The output goes
    to a file under cwd first, so a run that hangs still shows how far it got."""
    log = cwd / f"{module}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, *args], env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            kill_session(proc.pid)
            code = -9
    text = log.read_text()
    if code == -9:
        raise AssertionError(f"python -m {module} did not finish in {timeout_s:.0f} s:\n{text[-6000:]}")
    return code, text


def trial_nodes(storage_path: Path) -> dict[str, set[str]]:
    """trial id -> node ids its reports came from, read from Tune's result.json files."""
    out: dict[str, set[str]] = {}
    for result in storage_path.glob("*/*/result.json"):
        for line in result.read_text().splitlines():
            row = json.loads(line)
            if row.get("node_id"):
                out.setdefault(row["trial_id"], set()).add(row["node_id"])
    return out
