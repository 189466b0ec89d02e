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

from raymlops import ray_internals

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
    """Drop BENIGN_LINES from what Ray prints on the driver, and nothing else; False (and nothing changed)
    when this Ray lays its printing out differently (ray_internals.wrap_driver_log_printer)."""
    return ray_internals.wrap_driver_log_printer(lambda line: not is_benign(line))


class _TokenAuthDefault(logging.Filter):
    """Drops Ray's notice that a new local cluster has token auth on by default ("Set RAY_AUTH_MODE=disabled
    to opt out"): raymlops keeps it on and prints how to sign in instead (dashboard_line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Token authentication is enabled for this Ray cluster")


def keep_token_auth() -> None:
    """A local cluster keeps Ray 2.60's default, token authentication, without Ray's opt-out notice. (Setting
    RAY_AUTH_MODE=token here instead would not do: Ray reads its config at import, before this runs.)"""
    setup = logging.getLogger(ray_internals.TOKEN_SETUP_LOGGER)
    if not any(isinstance(f, _TokenAuthDefault) for f in setup.filters):
        setup.addFilter(_TokenAuthDefault())


def token_auth_on() -> bool:
    mode = ray_internals.auth_mode_name()
    if mode is None:  # an older or newer Ray without token auth
        return os.environ.get(AUTH_MODE_ENV, "").lower() == "token"
    return mode == "token"


def dashboard_line(url: str | None) -> str:
    """The dashboard URL and, with token auth, how to sign in (the token itself is never printed)."""
    if not url:
        return "no dashboard"
    link = url if url.startswith("http") else f"http://{url}"
    if not token_auth_on():
        return f"dashboard: {link}"
    return f"dashboard: {link} (token auth: paste the output of `ray get-auth-token` into its sign-in dialog)"
