"""A Tune callback on the search driver: when trials have waited `console.wait_notice_s` for a worker group
(PENDING in Tune, or queued for a warm lane), one line says so with what the cluster has free and what other
jobs hold; again every wait_notice_s while they wait, and once when the wait is over. Never raises into Tune."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from ray.tune import Callback

from raymlops.launch.room import wait_line

log = logging.getLogger(__name__)
CHECK_EVERY_S = 1.0  # Tune calls on_step_end many times a second


class ResourceWait(Callback):
    def __init__(self, per_worker: dict[str, float], n_workers: int, notice_s: float, queued: Callable[[], int] | None = None):
        self.per_worker, self.n_workers, self.notice_s, self.queued = per_worker, n_workers, notice_s, queued
        self.since: float | None = None
        self.noticed = 0.0  # when the last line was printed (0: none in this wait)
        self.checked = 0.0

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "queued": None}  # Tune pickles its callbacks; the broker handle stays here

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        now = time.monotonic()
        if now - self.checked < CHECK_EVERY_S:
            return
        self.checked = now
        try:
            self._check(now, trials)
        except Exception as err:  # a GCS hiccup must not stop the search
            log.debug("resource-wait check failed: %s", err)

    def _check(self, now: float, trials: list[Any]) -> None:
        queued = self.queued() if self.queued else 0
        pending = sum(1 for t in trials if t.status == "PENDING")
        waiting = pending + queued
        if not waiting:
            if self.since is not None and self.noticed:
                print(f"the wait for resources is over after {now - self.since:.0f} s", flush=True)
            self.since, self.noticed = None, 0.0
            return
        self.since = self.since if self.since is not None else now
        if now - self.since >= self.notice_s and now - self.noticed >= self.notice_s:
            self.noticed = now
            running = sum(1 for t in trials if t.status == "RUNNING") - queued
            print(wait_line(waiting, now - self.since, self.per_worker, self.n_workers, max(running, 0)), flush=True)
