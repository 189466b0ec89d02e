"""Progress of one training job (`raymlops.train`): a plain line per epoch, with elapsed time and what is left.

A Ray Train V2 UserCallback: it runs in the job's TrainController actor, whose output Ray forwards to
the driver's terminal (and to `ray job submit`'s log), prefixed with the actor's name.
"""

from __future__ import annotations

import time
from typing import Any

import ray.train


def clock(seconds: float) -> str:
    s = int(max(seconds, 0))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class EpochProgress(ray.train.UserCallback):  # type: ignore[misc]
    """After each report of rank 0: epoch i/N, its metrics, elapsed and an estimate of the time left."""

    def __init__(self, epochs: int, metric: str):
        self.epochs, self.metric = epochs, metric
        self.started: float | None = None
        self.first_epoch: int | None = None

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        m = metrics[0] if metrics else {}
        epoch = int(m.get("epoch", 0) or 0)
        if not epoch:
            return
        now = time.monotonic()
        if self.started is None:  # the first report: the clock starts at the end of the first epoch we saw
            self.started, self.first_epoch = now - float(m.get("epoch_time_s", 0.0)), epoch - 1
        done = epoch - (self.first_epoch or 0)
        elapsed = now - self.started
        left = clock(elapsed / done * (self.epochs - epoch)) if done > 0 else "?"
        shown = " ".join(f"{k}={m[k]:.4f}" for k in ("train_loss", "val_loss", self.metric) if isinstance(m.get(k), float))
        print(f"epoch {epoch}/{self.epochs} {shown} | {clock(elapsed)} elapsed, ~{left} left", flush=True)
