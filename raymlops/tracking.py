"""MLflow tracking: experiments, runs, lineage, and a rank-aware logger that never loses a point.

Writes are queued and sent in batches by a background thread (off the training hot path),
retried with exponential backoff (tenacity), and spooled to a local JSONL file when the tracker
stays unreachable; `python -m raymlops.tracking replay` sends the spool later. Non-zero ranks get
a logger whose methods do nothing, so the rank check lives here and nowhere else.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import platform
import queue
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from raymlops import schema
from raymlops.errors import UserError, cli
from raymlops.secrets import redact, redact_text

log = logging.getLogger(__name__)
MAX_METRICS, MAX_PARAMS, MAX_TAGS = 1000, 100, 100  # MLflow log_batch limits per request
MAX_PARAM_LEN = 6000
PROBE_SECONDS = 5.0  # while the tracker is down, an idle logger tries its spool this often
T = TypeVar("T")
_OUTAGE_WARNED: set[str] = set()  # tracking URIs this process has warned about (until they come back)
_RETRY_SAID: set[str] = set()  # kinds of transient failure this process has mentioned


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
    import requests

    auth = None
    if os.environ.get("MLFLOW_TRACKING_USERNAME"):
        auth = (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ.get("MLFLOW_TRACKING_PASSWORD", ""))
    url = tracking_uri.rstrip("/") + "/api/2.0/mlflow/experiments/search"
    try:
        reply = requests.post(url, json={"max_results": 1}, auth=auth, timeout=timeout_s)
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
        return str(exp.experiment_id)
    location = None
    if artifact_location and not tracking_uri.startswith(("http://", "https://", "databricks")):
        location = artifact_location if "://" in artifact_location else Path(artifact_location).resolve().as_uri()
    try:
        return str(c.create_experiment(name, artifact_location=location))
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
        [experiment_id], filter_string=f"tags.`{schema.TAG_RUN_KEY}` = '{run_key}'", max_results=1
    )
    return str(found[0].info.run_id) if found else None


def open_run(tracking_uri: str, experiment_id: str, run_key: str, run_name: str, tags: dict[str, str]) -> tuple[str, bool]:
    """find_or_create_run, also saying whether the run was created just now (so it has no points yet)."""
    return _find_or_create(client(tracking_uri), experiment_id, run_key, run_name, tags)


def _find_or_create(c: Any, experiment_id: str, run_key: str, run_name: str, tags: dict[str, str]) -> tuple[str, bool]:
    found = c.search_runs([experiment_id], filter_string=f"tags.`{schema.TAG_RUN_KEY}` = '{run_key}'", max_results=1)
    if found:
        return str(found[0].info.run_id), False
    run = c.create_run(experiment_id, run_name=run_name, tags={**tags, schema.TAG_RUN_KEY: run_key})
    return str(run.info.run_id), True


def logged_steps(tracking_uri: str, run_id: str, key: str) -> set[int]:
    return {m.step for m in client(tracking_uri).get_metric_history(run_id, key)}


# ------------------------------------------------------------------ lineage


def lineage(config: dict[str, Any], argv: list[str]) -> dict[str, str]:
    """Tags that say where a run came from; taken on the driver, where the working tree is."""
    import mlflow
    import ray
    import torch
    import torchvision

    from raymlops import __version__

    return {
        "raymlops.git_sha": _git("rev-parse", "HEAD") or "unknown",
        "raymlops.git_dirty": str(bool(_git("status", "--porcelain"))).lower(),
        "raymlops.version": __version__,
        "raymlops.versions": f"ray={ray.__version__} torch={torch.__version__} torchvision={torchvision.__version__} "
        f"mlflow={mlflow.__version__} python={platform.python_version()}",
        "raymlops.command": redact_text(" ".join(shlex.quote(a) for a in [Path(sys.argv[0]).name, *argv])),
        "raymlops.overrides": redact_text(" ".join(config.get("overrides", []))) or "(none)",
        "raymlops.seed": str(config["train"]["seed"]),
        "raymlops.host": platform.node(),
    }


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def config_params(config: dict[str, Any]) -> dict[str, str]:
    """The resolved config as flat dotted params, credentials redacted, bookkeeping keys left out."""
    from raymlops.config import flatten

    skip = ("search_space", "overrides", "lineage", "runtime")
    flat = flatten(redact({k: v for k, v in config.items() if k not in skip}))
    # tune.resume differs between a search and its resumption; MLflow refuses to change a logged param
    return {k: str(v)[:MAX_PARAM_LEN] for k, v in flat.items() if k != "tune.resume"}


# ------------------------------------------------------------------ the logger


class NullLogger:
    """What every rank but 0 gets: the same methods, no MLflow calls."""

    run_id: str | None = None

    def log_metrics(self, metrics: dict[str, float], step: int, timestamp_ms: int | None = None) -> None: ...
    def log_params(self, params: dict[str, Any]) -> None: ...
    def set_tags(self, tags: dict[str, Any]) -> None: ...
    def flush(self, timeout_s: float = 30.0) -> bool:
        return True

    def close(self, status: str = "FINISHED") -> None: ...


class RunLogger(NullLogger):
    """Batched, retried, spooled MLflow writes for one run, sent from a background thread."""

    def __init__(
        self,
        tracking_uri: str,
        run_id: str | None,
        spool_dir: str | None = None,
        retry_seconds: float = 60.0,
        create: dict[str, Any] | None = None,
    ):
        """run_id None: the tracker was down when the run was to be opened; `create` (find_or_create_run's
        arguments) says how to open it once the tracker is back, here or when the spool is replayed."""
        if not run_id and not create:
            raise ValueError("RunLogger needs a run_id or a create spec")
        self.tracking_uri, self.run_id, self._run_id = tracking_uri, run_id, run_id
        self._create = None if run_id else create
        self.retry_seconds = retry_seconds
        name = spool_name(run_id, (create or {}).get("run_key", ""))
        self.spool_path = Path(spool_dir or ".raymlops/spool") / f"{name}.jsonl"
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._pending = 0
        self._cv = threading.Condition()
        self._degraded = False
        self._client = client(tracking_uri)
        self._thread = threading.Thread(target=self._loop, name=f"mlflow-{name[:8]}", daemon=True)
        self._thread.start()

    # public API: cheap, never blocks on the network
    def log_metrics(self, metrics: dict[str, float], step: int, timestamp_ms: int | None = None) -> None:
        """timestamp_ms: the time the point was first logged, for a write-back; MLflow stores an identical
        (key, step, timestamp, value) point once, so writing a point back with its own timestamp is idempotent."""
        now = timestamp_ms or now_ms()
        self._put("metrics", [(k, float(v), now, int(step)) for k, v in metrics.items()])

    def log_params(self, params: dict[str, Any]) -> None:
        self._put("params", {k: str(v)[:MAX_PARAM_LEN] for k, v in redact(params).items()})

    def set_tags(self, tags: dict[str, Any]) -> None:
        self._put("tags", {k: str(v) for k, v in redact(tags).items()})

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until everything queued was sent or spooled; False if still busy at timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cv:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
        return True

    def close(self, status: str = "FINISHED") -> None:
        self._put("status", status)
        self.flush(timeout_s=self.retry_seconds + 30)

    # background side
    def _put(self, kind: str, payload: Any) -> None:
        with self._cv:
            self._pending += 1
        self._queue.put((kind, payload))

    def _loop(self) -> None:
        while True:
            try:  # while the tracker is down, wake up now and then to see whether it is back
                items = [self._queue.get(timeout=PROBE_SECONDS if self._degraded else None)]
            except queue.Empty:
                self._recover()
                continue
            while len(items) < 256:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            for batch in _coalesce(items):
                self._deliver(batch)
            with self._cv:
                self._pending -= len(items)
                self._cv.notify_all()

    def _recover(self) -> None:
        """Idle and degraded: one quick try to send the spool; success ends the degraded state."""
        try:
            sent = replay_file(self._client, self.spool_path)
        except Exception:
            return
        self._back(sent)

    def _back(self, sent: int) -> None:
        self._degraded = False
        _OUTAGE_WARNED.discard(self.tracking_uri)
        if sent:
            log.warning("MLflow tracker is back; replayed %d spooled batch(es) for run %s", sent, self.run_id)

    def _opened(self) -> str:
        """The run id, opening the run first if the tracker was down when it was to be opened."""
        if self._run_id is None:
            self._run_id = _find_or_create(self._client, **self._create)[0]  # type: ignore[arg-type]
            self.run_id = self._run_id
            log.warning("MLflow tracker is back; opened run %s for %s", self._run_id, self._create["run_key"])  # type: ignore[index]
        return self._run_id

    def _deliver(self, batch: dict[str, Any]) -> None:
        try:
            if self._degraded:
                _send(self._client, self._opened(), batch)  # one quick try while the tracker is down
                self._back(replay_file(self._client, self.spool_path))
            else:
                retrying(lambda: _send(self._client, self._opened(), batch), self.retry_seconds)
        except Exception as err:
            if batch.get("params") and not transient(err):
                # e.g. a param logged before with another value: MLflow keeps the first; the rest still goes
                log.warning(
                    "MLflow refused params for run %s (%s); sending the rest of the batch",
                    self.run_id,
                    redact_text(str(err))[:300],
                )
                self._deliver({**batch, "params": {}})
                return
            self._degraded = True
            self._spool(batch)
            if self.tracking_uri not in _OUTAGE_WARNED:  # once per process and outage, not per run or point
                _OUTAGE_WARNED.add(self.tracking_uri)
                log.warning(
                    "MLflow tracker unreachable for %.0fs (%s); training goes on and points are kept in %s. They are "
                    "sent when the tracker returns, or run: python -m raymlops.tracking replay --spool-dir %s --tracking-uri %s",
                    self.retry_seconds,
                    redact_text(str(err))[:200],
                    self.spool_path.parent,
                    self.spool_path.parent,
                    redact_text(self.tracking_uri),
                )

    def _spool(self, batch: dict[str, Any]) -> None:
        self.spool_path.parent.mkdir(parents=True, exist_ok=True)
        with _spool_lock(self.spool_path), open(self.spool_path, "a") as fh:
            opened = {"run_id": self._run_id} if self._run_id else {"run_id": None, "create": self._create}
            fh.write(json.dumps({"tracking_uri": redact_text(self.tracking_uri), **opened, **batch}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def now_ms() -> int:
    return int(time.time() * 1000)


def spool_name(run_id: str | None, run_key: str = "") -> str:
    """A run's spool file stem: its id, or pending-<run key> when it could not be opened yet."""
    return run_id or "pending-" + "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in run_key)


def logger_for(
    rank: int, tracking_uri: str, run_id: str | None, create: dict[str, Any] | None = None, **kwargs: Any
) -> NullLogger:
    """The only place that decides who talks to MLflow: rank 0, and only with a run id (or one to open later)."""
    if rank != 0 or not (run_id or create):
        return NullLogger()
    return RunLogger(tracking_uri, run_id, create=create, **kwargs)


def _coalesce(items: Iterable[tuple[str, Any]]) -> list[dict[str, Any]]:
    """Fold queued writes into log_batch-sized requests; a status change ends a batch."""
    batches: list[dict[str, Any]] = []
    cur: dict[str, Any] = {"metrics": [], "params": {}, "tags": {}}
    for kind, payload in items:
        if kind == "metrics":
            cur["metrics"].extend(payload)
        elif kind == "params":
            cur["params"].update(payload)
        elif kind == "tags":
            cur["tags"].update(payload)
        else:
            cur["status"] = payload
            batches.append(cur)
            cur = {"metrics": [], "params": {}, "tags": {}}
    if cur["metrics"] or cur["params"] or cur["tags"]:
        batches.append(cur)
    return batches


def _send(c: Any, run_id: str, batch: dict[str, Any]) -> None:
    from mlflow.entities import Metric, Param, RunTag

    metrics = [Metric(k, v, ts, step) for k, v, ts, step in batch.get("metrics", [])]
    params = [Param(k, v) for k, v in batch.get("params", {}).items()]
    tags = [RunTag(k, v) for k, v in batch.get("tags", {}).items()]
    for i in range(0, len(metrics), MAX_METRICS):
        c.log_batch(run_id, metrics=metrics[i : i + MAX_METRICS])
    for i in range(0, len(params), MAX_PARAMS):
        c.log_batch(run_id, params=params[i : i + MAX_PARAMS])
    for i in range(0, len(tags), MAX_TAGS):
        c.log_batch(run_id, tags=tags[i : i + MAX_TAGS])
    if batch.get("status"):
        c.set_terminated(run_id, status=batch["status"])


def transient(err: BaseException) -> bool:
    """Worth retrying: the tracker is down, busy or locked (5xx, 429, connection errors), not a refused request."""
    from mlflow.exceptions import MlflowException

    if isinstance(err, MlflowException):
        status = err.get_http_status_code()
        return status >= 500 or status == 429
    return True


def retrying(fn: Callable[[], T], retry_seconds: float) -> T:
    """fn() retried with exponential backoff and jitter while it fails transiently, for at most retry_seconds."""
    from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential_jitter

    for attempt in Retrying(
        stop=stop_after_delay(retry_seconds),
        wait=wait_exponential_jitter(initial=0.5, max=10),
        retry=retry_if_exception(transient),
        reraise=True,
        before_sleep=_say_retrying,
    ):
        with attempt:
            return fn()
    raise AssertionError("unreachable: tenacity re-raises the last error")


def _say_retrying(state: Any) -> None:
    """Each kind of transient failure is worth one line per process (e.g. "database is locked"), not one per retry."""
    err = state.outcome.exception() if state.outcome else None
    kind = f"{type(err).__name__}: {redact_text(str(err))[:80]}"
    if kind not in _RETRY_SAID:
        _RETRY_SAID.add(kind)
        log.warning("MLflow call failed (%s); retrying with backoff", kind)


def _spool_lock(path: Path) -> Any:
    """One writer or replayer at a time per spool file, across processes (a replay must not drop an append)."""
    from filelock import FileLock

    return FileLock(str(path) + ".lock")


def replay_file(c: Any, path: Path) -> int:
    """Send every spooled batch in path (in order); the file is removed once all went through.

    Sending a batch twice is harmless: a point keeps the timestamp it was logged with, and MLflow
    stores a (key, step, timestamp, value) point once. A failure keeps the unsent batches.
    """
    if not path.is_file():
        return 0
    with _spool_lock(path):
        if not path.is_file():
            return 0
        lines = path.read_text().splitlines()
        opened: dict[str, str] = {}  # run key -> id, for batches spooled before their run could be opened
        for i, line in enumerate(lines):
            record = json.loads(line)
            record["metrics"] = [tuple(m) for m in record.get("metrics", [])]
            try:
                run_id = record.get("run_id")
                if not run_id:
                    key = record["create"]["run_key"]
                    run_id = opened[key] = opened.get(key) or _find_or_create(c, **record["create"])[0]
                _send_lenient(c, run_id, record)
            except Exception:
                path.write_text("".join(f"{rest}\n" for rest in lines[i:]))
                raise
        path.unlink()
    return len(lines)


def _send_lenient(c: Any, run_id: str, batch: dict[str, Any]) -> None:
    """_send, but params MLflow refuses (already logged with another value) are dropped with a warning."""
    try:
        _send(c, run_id, batch)
    except Exception as err:
        if transient(err) or not batch.get("params"):
            raise
        log.warning("MLflow refused params for run %s (%s); sending the rest", run_id, redact_text(str(err))[:300])
        _send(c, run_id, {**batch, "params": {}})


def replay_dir(tracking_uri: str, spool_dir: str | Path, prefixes: Iterable[str] | None = None) -> tuple[int, int]:
    """Replay the spool files in spool_dir (only those whose name starts with one of prefixes, if given:
    run ids, or spool_name(None, key prefix) for runs not opened yet); return (batches, files)."""
    wanted = tuple(prefixes) if prefixes is not None else ("",)
    files = [f for f in sorted(Path(spool_dir).glob("*.jsonl")) if f.stem.startswith(wanted)]
    c = client(tracking_uri)
    return sum(replay_file(c, f) for f in files), len(files)


@cli
def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m raymlops.tracking", description="Replay MLflow points spooled during a tracker outage."
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    rp = sub.add_parser("replay", help="send spooled points to the tracking server, then delete the spool files")
    rp.add_argument("--spool-dir", default=".raymlops/spool")
    rp.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///.raymlops/mlflow.db"))
    args = parser.parse_args(argv)
    check_reachable(args.tracking_uri)
    sent, files = replay_dir(args.tracking_uri, args.spool_dir)
    print(f"replayed {sent} spooled batch(es) from {files} file(s) in {args.spool_dir} to {redact_text(args.tracking_uri)}")


if __name__ == "__main__":
    main()
