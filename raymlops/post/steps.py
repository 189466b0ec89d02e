"""The MLflow steps after a search, each retried; once the tracker stayed down for one, the rest are skipped
without more waiting: a search never crashes because the tracker is down."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from raymlops.tracking import retry_or_outage

log = logging.getLogger(__name__)
T = TypeVar("T")


class TrackerSteps:
    """Run `step(what, fn)` for each MLflow step of the epilogue; `down` names the first step skipped."""

    def __init__(self, retry_seconds: float):
        self.retry_seconds = retry_seconds
        self.down: str | None = None

    def __call__(self, what: str, fn: Callable[[], T]) -> T | None:
        if self.down:
            log.warning("MLflow still unreachable: skipped %s", what)
            return None
        ok, value = retry_or_outage(fn, self.retry_seconds, f"skipped {what}")
        if not ok:
            self.down = what
        return value
