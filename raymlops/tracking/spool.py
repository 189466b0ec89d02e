"""The spool: batches the tracker could not take, kept in a local JSONL file per run and replayed later."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from filelock import FileLock

from raymlops.tracking.client import client, find_or_create
from raymlops.tracking.log_batch import send_lenient


def spool_name(run_id: str | None, run_key: str = "") -> str:
    """A run's spool file stem: its id, or pending-<run key> when it could not be opened yet."""
    return run_id or "pending-" + "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in run_key)


def spool_lock(path: Path) -> Any:
    """One writer or replayer at a time per spool file, across processes (a replay must not drop an append)."""

    return FileLock(str(path) + ".lock")


def replay_file(c: Any, path: Path) -> int:
    """Send every spooled batch in path (in order); the file is removed once all went through.

    Sending a batch twice is harmless: a point keeps the timestamp it was logged with, and MLflow
    stores a (key, step, timestamp, value) point once. A failure keeps the unsent batches.
    """
    if not path.is_file():
        return 0
    with spool_lock(path):
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
                    run_id = opened[key] = opened.get(key) or find_or_create(c, **record["create"])[0]
                send_lenient(c, run_id, record)
            except Exception:
                path.write_text("".join(f"{rest}\n" for rest in lines[i:]))
                raise
        path.unlink()
    return len(lines)


def replay_dir(tracking_uri: str, spool_dir: str | Path, prefixes: Iterable[str] | None = None) -> tuple[int, int]:
    """Replay the spool files in spool_dir (only those whose name starts with one of prefixes, if given:
    run ids, or spool_name(None, key prefix) for runs not opened yet); return (batches, files)."""
    wanted = tuple(prefixes) if prefixes is not None else ("",)
    files = [f for f in sorted(Path(spool_dir).glob("*.jsonl")) if f.stem.startswith(wanted)]
    c = client(tracking_uri)
    return sum(replay_file(c, f) for f in files), len(files)
