"""What of Ray's own output reaches the terminal, and how to open its dashboard.

Ray forwards every worker's stdout and stderr to the driver (`log_to_driver`). A few of those lines
are known noise that reads like errors: they are dropped here by exact pattern, and nothing else
is, so a trial's traceback, Ray's out-of-memory kills and worker deaths (sent on Ray's error
channel, which this does not touch) still show. `console.verbose=true` (or -v) keeps everything.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

AUTH_MODE_ENV = "RAY_AUTH_MODE"

# Each pattern names the line it drops and why it is safe to drop.
BENIGN_LINES = (
    # ray#53727: Ray Train's controller creates its PreemptionWatcher actor with arguments in the object
    # store and max_restarts > 0; core_worker logs it at ERROR level once per trial, nothing fails
    re.compile(r"core_worker\.cc:\d+: Actor with class name: '\w+' .* has constructor arguments in the object store"),
    # ray#58515: the PlacementGroupCleaner frees a finished or stopped trial's worker group: what it is for
    re.compile(r"Detected that the Ray Train controller actor .* is dead\. Cleaning up placement group"),
    # the raylet counts worker processes started at once; Tune and Train start an actor per trial and worker
    re.compile(r"PYTHON worker processes have been started on node"),
    # Ray Tune's INFO line from a trial actor after each checkpoint (the checkpoint is in the trial's folder)
    re.compile(r"^Checkpoint successfully created at: Checkpoint\("),
)


def is_benign(line: str) -> bool:
    return any(p.search(line) for p in BENIGN_LINES)


def filter_worker_logs() -> bool:
    """Drop BENIGN_LINES from what Ray prints on the driver, and nothing else.

    Ray exposes no filter hook for `log_to_driver`. Its driver prints both forwarded worker output (the
    "ray_print_logs" handler of its stream dispatcher) and the error channel (worker deaths, OOM kills,
    the raylet's worker-pool notice) through `ray._private.worker.print_to_stdstream`; this wraps that
    function in both places. Returns False (and changes nothing) when this Ray lays it out differently.
    """
    try:
        from ray._private import worker
        from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher
    except ImportError:
        return False
    original = getattr(worker, "print_to_stdstream", None)
    if original is None or getattr(original, "raymlops_filtered", False):
        return original is not None
    if "ray_print_logs" not in [name for name, _ in dispatcher.handlers]:
        return False

    def print_kept(data: dict[str, Any], ignore_prefix: bool) -> None:
        lines = [line for line in data.get("lines", []) if not is_benign(str(line))]
        if lines:
            original({**data, "lines": lines}, ignore_prefix=ignore_prefix)

    print_kept.raymlops_filtered = True  # type: ignore[attr-defined]
    worker.print_to_stdstream = print_kept  # the error channel looks it up at each message
    ignore_prefix = worker._should_ignore_worker_log_prefix(worker.global_worker)
    dispatcher.remove_handler("ray_print_logs")
    dispatcher.add_handler("ray_print_logs", lambda data: print_kept(data, ignore_prefix))
    return True


class _TokenAuthDefault(logging.Filter):
    """Drops Ray's notice that a new local cluster has token auth on by default ("Set RAY_AUTH_MODE=disabled
    to opt out"): raymlops keeps it on and prints how to sign in instead (dashboard_line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Token authentication is enabled for this Ray cluster")


def keep_token_auth() -> None:
    """A local cluster keeps Ray 2.60's default, token authentication, without Ray's opt-out notice. (Setting
    RAY_AUTH_MODE=token here instead would not do: Ray reads its config at import, before this runs.)"""
    setup = logging.getLogger("ray._private.authentication.authentication_token_setup")
    if not any(isinstance(f, _TokenAuthDefault) for f in setup.filters):
        setup.addFilter(_TokenAuthDefault())


def token_auth_on() -> bool:
    try:
        from ray._private.authentication.authentication_utils import get_authentication_mode_name
        from ray._raylet import get_authentication_mode  # type: ignore[attr-defined]

        return str(get_authentication_mode_name(get_authentication_mode())).lower() == "token"
    except Exception:  # an older or newer Ray without token auth
        return os.environ.get(AUTH_MODE_ENV, "").lower() == "token"


def dashboard_line(url: str | None) -> str:
    """The dashboard URL and, with token auth, how to sign in (the token itself is never printed)."""
    if not url:
        return "no dashboard"
    link = url if url.startswith("http") else f"http://{url}"
    if not token_auth_on():
        return f"dashboard: {link}"
    return f"dashboard: {link} (token auth: paste the output of `ray get-auth-token` into its sign-in dialog)"
