"""MLflow tracking: experiments, runs, lineage, and a rank-aware logger that never loses a point.

Writes are queued and sent in batches by a background thread (off the training hot path),
retried with exponential backoff (tenacity), and spooled to a local JSONL file when the tracker
stays unreachable; `python -m raymlops.tracking replay` sends the spool later. Non-zero ranks get
a logger whose methods do nothing, so the rank check lives here and nowhere else.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import queue
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from raymlops import schema
from raymlops.errors import UserError, cli
from raymlops.secrets import redact, redact_text

log = logging.getLogger(__name__)
MAX_METRICS, MAX_PARAMS, MAX_TAGS = 1000, 100, 100  # MLflow log_batch limits per request
MAX_PARAM_LEN = 6000


# MLflow's HTTP layer retries 7 times with exponential backoff (minutes) before raising; our own
# tenacity loop owns retrying, with a bound the user sets (mlflow.retry_seconds).
HTTP_RETRY_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


def client(tracking_uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    for name, value in HTTP_RETRY_ENV.items():
        os.environ.setdefault(name, value)
    return MlflowClient(tracking_uri=tracking_uri)


def check_reachable(tracking_uri: str, timeout_s: float = 10.0) -> None:
    """Fail fast on an unreachable server or rejected credentials, before Ray starts."""
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
    c = client(tracking_uri)
    found = c.search_runs([experiment_id], filter_string=f"tags.`{schema.TAG_RUN_KEY}` = '{run_key}'", max_results=1)
    if found:
        return str(found[0].info.run_id)
    run = c.create_run(experiment_id, run_name=run_name, tags={**tags, schema.TAG_RUN_KEY: run_key})
    return str(run.info.run_id)


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
    return {k: str(v)[:MAX_PARAM_LEN] for k, v in flat.items()}


# ------------------------------------------------------------------ the logger


class NullLogger:
    """What every rank but 0 gets: the same methods, no MLflow calls."""

    run_id: str | None = None

    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...
    def log_params(self, params: dict[str, Any]) -> None: ...
    def set_tags(self, tags: dict[str, Any]) -> None: ...
    def flush(self, timeout_s: float = 30.0) -> bool:
        return True

    def close(self, status: str = "FINISHED") -> None: ...


class RunLogger(NullLogger):
    """Batched, retried, spooled MLflow writes for one run, sent from a background thread."""

    def __init__(self, tracking_uri: str, run_id: str, spool_dir: str | None = None, retry_seconds: float = 60.0):
        self.tracking_uri, self.run_id, self._run_id = tracking_uri, run_id, run_id
        self.retry_seconds = retry_seconds
        self.spool_path = Path(spool_dir or ".raymlops/spool") / f"{run_id}.jsonl"
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._pending = 0
        self._cv = threading.Condition()
        self._degraded = False
        self._warned = False
        self._client = client(tracking_uri)
        self._thread = threading.Thread(target=self._loop, name=f"mlflow-{run_id[:8]}", daemon=True)
        self._thread.start()

    # public API: cheap, never blocks on the network
    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
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
            items = [self._queue.get()]
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

    def _deliver(self, batch: dict[str, Any]) -> None:
        try:
            if self._degraded:
                _send(self._client, self._run_id, batch)  # one quick try while the tracker is down
                self._degraded = False
                log.warning("MLflow tracker is back; replaying spooled points for run %s", self.run_id)
                replay_file(self._client, self.spool_path)
            else:
                _send_with_retry(self._client, self._run_id, batch, self.retry_seconds)
        except Exception as err:
            self._degraded = True
            self._spool(batch)
            if not self._warned:
                self._warned = True
                log.warning(
                    "MLflow tracker unreachable for %.0fs (%s); training goes on and points are kept in %s. "
                    "They are sent when the tracker returns, or run: python -m raymlops.tracking replay",
                    self.retry_seconds,
                    redact_text(str(err))[:200],
                    self.spool_path,
                )

    def _spool(self, batch: dict[str, Any]) -> None:
        self.spool_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.spool_path, "a") as fh:
            fh.write(json.dumps({"tracking_uri": redact_text(self.tracking_uri), "run_id": self.run_id, **batch}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def logger_for(rank: int, tracking_uri: str, run_id: str | None, **kwargs: Any) -> NullLogger:
    """The only place that decides who talks to MLflow: rank 0, and only with a run id."""
    if rank != 0 or not run_id:
        return NullLogger()
    return RunLogger(tracking_uri, run_id, **kwargs)


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


def _send_with_retry(c: Any, run_id: str, batch: dict[str, Any], retry_seconds: float) -> None:
    from tenacity import Retrying, stop_after_delay, wait_exponential_jitter

    for attempt in Retrying(
        stop=stop_after_delay(retry_seconds), wait=wait_exponential_jitter(initial=0.5, max=10), reraise=True
    ):
        with attempt:
            _send(c, run_id, batch)


def replay_file(c: Any, path: Path) -> int:
    """Send every spooled batch in path (in order); the file is removed once all went through."""
    if not path.is_file():
        return 0
    lines = path.read_text().splitlines()
    for line in lines:
        record = json.loads(line)
        record["metrics"] = [tuple(m) for m in record.get("metrics", [])]
        _send(c, record["run_id"], record)
    path.unlink()
    return len(lines)


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
    c = client(args.tracking_uri)
    files = sorted(Path(args.spool_dir).glob("*.jsonl"))
    sent = sum(replay_file(c, f) for f in files)
    print(f"replayed {sent} spooled batch(es) from {len(files)} file(s) in {args.spool_dir} to {redact_text(args.tracking_uri)}")


if __name__ == "__main__":
    main()
