"""The rank-aware MLflow logger: rank 0 gets a RunLogger, every other rank a NullLogger, decided in `logger_for`.

A RunLogger queues writes and sends them in batches from a background thread (off the training
hot path), retried with backoff, and spooled to a local JSONL file when the tracker stays
unreachable; `python -m raymlops.tracking replay` sends the spool later.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any

from raymlops.core.redact import redact, redact_text
from raymlops.tracking.client import client, find_or_create, open_run
from raymlops.tracking.log_batch import MAX_PARAM_LEN, coalesce, send_lenient
from raymlops.tracking.retry import retry_or_none, retrying, transient
from raymlops.tracking.spool import replay_file, spool_lock, spool_name
from raymlops.tracking.workspace import start_system_metrics

log = logging.getLogger(__name__)
PROBE_SECONDS = 5.0  # while the tracker is down, an idle logger tries its spool this often
_OUTAGE_WARNED: set[str] = set()  # tracking URIs this process has warned about (until they come back)


class NullLogger:
    """What every rank but 0 gets: the same methods, no MLflow calls."""

    run_id: str | None = None
    tracking_uri = ""
    fresh = False  # the run was created just now, so it has no points yet

    def log_metrics(self, metrics: dict[str, float], step: int, timestamp_ms: int | None = None) -> None: ...
    def log_params(self, params: dict[str, Any]) -> None: ...
    def set_tags(self, tags: dict[str, Any]) -> None: ...
    def flush(self, timeout_s: float = 30.0) -> bool:
        return True

    def end(self, status: str = "FINISHED") -> None: ...
    def close(self, status: str = "FINISHED") -> None: ...
    def start_system_metrics(self, interval_s: float) -> None: ...
    def detach(self, timeout_s: float = 30.0) -> None:
        """This process is done with the run for now (a trial paused or stopped on a warm lane): stop its
        system metrics, send what is queued, leave the run open for whoever ends or resumes it."""


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
        self._monitor: Any = None
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

    def end(self, status: str = "FINISHED") -> None:
        """Queue the run's end without waiting for it to be sent (flush waits)."""
        self._put("status", status)

    def detach(self, timeout_s: float = 30.0) -> None:
        self._stop_monitor()
        self.flush(timeout_s=timeout_s)

    def _stop_monitor(self) -> None:
        if self._monitor is not None:  # its last samples go out before the run ends
            self._monitor.finish()
            self._monitor = None

    def close(self, status: str = "FINISHED") -> None:
        self._stop_monitor()
        self.end(status)
        self.flush(timeout_s=self.retry_seconds + 30)

    def start_system_metrics(self, interval_s: float) -> None:
        """MLflow's system metrics (CPU, memory, disk, network; GPU where pynvml sees one) of this node, every
        interval_s, until close; nothing while the run is not open yet (tracker down)."""
        if self._monitor is None and self._run_id:
            self._monitor = start_system_metrics(self.tracking_uri, self._run_id, interval_s)

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
            for batch in coalesce(items):
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
            self._run_id = find_or_create(self._client, **self._create)[0]  # type: ignore[arg-type]
            self.run_id = self._run_id
            log.warning("MLflow tracker is back; opened run %s for %s", self._run_id, self._create["run_key"])  # type: ignore[index]
        return self._run_id

    def _deliver(self, batch: dict[str, Any]) -> None:
        try:
            if self._degraded:
                send_lenient(self._client, self._opened(), batch)  # one quick try while the tracker is down
                self._back(replay_file(self._client, self.spool_path))
            else:
                retrying(lambda: send_lenient(self._client, self._opened(), batch), self.retry_seconds)
        except Exception as err:
            self._spool(batch)  # outage or not, what the user logged is kept
            if not transient(err):  # refused (e.g. 403) or a bug: say so, with its traceback, once per kind
                kind = f"{self.tracking_uri} {type(err).__name__}"
                if kind not in _OUTAGE_WARNED:
                    _OUTAGE_WARNED.add(kind)
                    log.error("MLflow write for run %s failed; points kept in %s", self.run_id, self.spool_path, exc_info=True)
                return
            self._degraded = True
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
        with spool_lock(self.spool_path), open(self.spool_path, "a") as fh:
            opened = {"run_id": self._run_id} if self._run_id else {"run_id": None, "create": self._create}
            fh.write(json.dumps({"tracking_uri": redact_text(self.tracking_uri), **opened, **batch}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def now_ms() -> int:
    return int(time.time() * 1000)


def logger_for(
    is_rank_zero: bool,
    tracking_uri: str,
    run_id: str | None,
    create: dict[str, Any] | None = None,
    spool_dir: str | None = None,
    retry_seconds: float = 60.0,
) -> NullLogger:
    """The only place that decides who talks to MLflow: rank 0, and only with a run id or one to open.

    Without run_id, the run described by `create` (open_run's arguments) is found or created now; when
    the tracker stays down past retry_seconds, the logger opens it once the tracker is back, and its
    points wait in the spool meanwhile.
    """
    if not is_rank_zero or not (run_id or create):
        return NullLogger()
    fresh = False
    if not run_id and create:
        opened = retry_or_none(
            lambda: open_run(tracking_uri, **create),
            retry_seconds,
            f"run {create['run_key']} is opened when the tracker returns; points wait in the spool",
        )
        run_id, fresh = opened if opened else (None, False)
    logger = RunLogger(tracking_uri, run_id, spool_dir=spool_dir, retry_seconds=retry_seconds, create=create)
    logger.fresh = fresh
    return logger
