"""The one retry policy for MLflow calls: transient failures (down, busy, locked) retried with backoff for a
bounded time; a refused request raised at once."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any, TypeVar

from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential_jitter

from raymlops.core.redact import redact_text

log = logging.getLogger(__name__)
T = TypeVar("T")
_RETRY_SAID: set[str] = set()  # kinds of transient failure this process has mentioned


# MLflow error codes that mean "busy or down, try again" (503, 504, 429 in MLflow's own mapping)
TRANSIENT_CODES = frozenset({"TEMPORARILY_UNAVAILABLE", "DEADLINE_EXCEEDED", "REQUEST_LIMIT_EXCEEDED", "RESOURCE_EXHAUSTED"})
_HTTP_STATUS = re.compile(r"failed with error code (\d{3}) != ")  # rest_utils' message for a non-JSON error reply


def transient(err: BaseException) -> bool:
    """Worth retrying: the tracker is down, busy or locked. Connection errors and timeouts (also when MLflow's
    REST client wraps them in an MlflowException), HTTP 5xx and 429, and SQLite's "database is locked".
    Anything else (a refused request, a missing resource, a bug) is not: it raises at once."""
    import requests
    import urllib3
    from mlflow.exceptions import MlflowException, RestException

    if isinstance(err, (ConnectionError, TimeoutError)):  # ConnectionRefusedError, socket.timeout
        return True
    if isinstance(err, (requests.ConnectionError, requests.Timeout, requests.exceptions.RetryError)):
        return True
    if isinstance(err, requests.exceptions.ChunkedEncodingError):  # the server went away mid-reply
        return True
    if isinstance(err, (urllib3.exceptions.MaxRetryError, urllib3.exceptions.ProtocolError, urllib3.exceptions.TimeoutError)):
        return True
    if isinstance(err, requests.HTTPError):
        return err.response is not None and _transient_status(err.response.status_code)
    if "database is locked" in str(err) and type(err).__name__ in ("OperationalError", "MlflowException"):
        return True  # SQLite's write lock, held by another process for a moment (sqlite3 or SQLAlchemy's wrapper)
    if isinstance(err, MlflowException):
        if err.error_code in TRANSIENT_CODES:
            return True
        if isinstance(err, RestException):  # the server answered: its status says
            return _transient_status(err.get_http_status_code())
        status = _HTTP_STATUS.search(str(err))
        if status:
            return _transient_status(int(status.group(1)))
        # MLflow's REST client wraps a failed request ("API request to ... failed with exception ...")
        cause = err.__cause__ or err.__context__
        return cause is not None and transient(cause)
    return False


def _transient_status(status: int) -> bool:
    return status >= 500 or status == 429


def retrying(fn: Callable[[], T], retry_seconds: float) -> T:
    """fn() retried with exponential backoff and jitter while it fails transiently, for at most retry_seconds."""

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


def retry_or_none(fn: Callable[[], T], retry_seconds: float, skipped: str) -> T | None:
    """fn() under `retrying`, or None when the tracker stays down (see retry_or_outage)."""
    return retry_or_outage(fn, retry_seconds, skipped)[1]


def retry_or_outage(fn: Callable[[], T], retry_seconds: float, skipped: str) -> tuple[bool, T | None]:
    """(True, fn()) under `retrying`; when the tracker stays down past retry_seconds, warn that `skipped`
    happens instead and return (False, None); a refused request still raises. Every "retry, else go on
    without MLflow" call site comes through here."""
    try:
        return True, retrying(fn, retry_seconds)
    except Exception as err:
        if not transient(err):
            raise
        log.warning("MLflow unreachable for %ss (%s): %s", retry_seconds, redact_text(str(err))[:200], skipped)
        return False, None


def _say_retrying(state: Any) -> None:
    """Each kind of transient failure is worth one line per process (e.g. "database is locked"), not one per retry."""
    err = state.outcome.exception() if state.outcome else None
    kind = f"{type(err).__name__}: {redact_text(str(err))[:80]}"
    if kind not in _RETRY_SAID:
        _RETRY_SAID.add(kind)
        log.warning("MLflow call failed (%s); retrying with backoff", kind)
