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
    # the GCS freeing a lost node's bundles of a placement group: the node is gone, so are they
    re.compile(r"gcs_placement_group_scheduler\.cc:\d+: Failed to remove \d+ bundle\(s\) for placement group \w+ at node"),
)


# What Ray forwards when a worker node is lost (a spot reclaim), which the search says in one line per trial
# instead (search.live_progress). A block starts at a line matching the first pattern and ends at the first
# empty line or the batch's end; it is dropped only if it contains the second.
NODE_LOSS_BLOCKS = (
    # a DDP worker whose peer on the lost node went: the collective's error, raised in every survivor
    (re.compile(r"^Error in training function:"), re.compile(r"Connection (reset|closed) by peer")),
    # Ray Train's controller tearing down a group whose worker died ("This is expected": Ray's own words)
    (re.compile(r"^Graceful shutdown of backend failed\. This is expected if one of the workers has crashed"), re.compile("")),
)
# Ray's paragraphs about a node that went, cut to their first sentence (the raylet's own log keeps the rest):
# the matching line (or message) is shortened and the indented lines that follow it are dropped.
NODE_GONE = (
    re.compile(
        r"^(The node with node id: \w+ .*?has been marked dead because the detector has missed too many heartbeats)", re.S
    ),
    re.compile(r"^(Raylet is terminated\. Termination is unexpected)", re.S),
)


# A reused Tune actor that Tune ends with SIGTERM once the search is done, caught in one of Python's weakref
# callbacks: Ray's SIGTERM handler raises SystemExit there and Python prints "Exception ignored in: ..." with the
# traceback (seen once in 8 tiny searches here, after every trial had finished). The block runs from its first line
# to the SystemExit line and is dropped only if Ray's sigterm_handler raised it.
ENDED_ACTOR_BLOCK = (re.compile(r"^Exception ignored in: "), re.compile(r"^SystemExit: "), re.compile(r"in sigterm_handler$"))
ENDED_ACTOR_MAX_LINES = 20


def is_benign(line: str) -> bool:
    return any(p.search(line) for p in BENIGN_LINES)


def kept_lines(lines: list[str]) -> list[str]:
    """One batch of what Ray prints on the driver (one process's lines, or one error-channel message), less
    BENIGN_LINES and NODE_LOSS_BLOCKS, with NODE_GONE paragraphs cut short; nothing else changed."""
    out, i = [], 0
    while i < len(lines):
        end = _node_loss_block_end(lines, i) or _ended_actor_block_end(lines, i)
        if end is not None:
            i = end
            continue
        gone = next((m for m in (p.match(lines[i]) for p in NODE_GONE) if m), None)
        if gone:
            out.append(f"{gone.group(1)} (the rest is in its raylet log)")
            i += 1
            while i < len(lines) and lines[i][:1] in (" ", "\t"):
                i += 1
            continue
        if not is_benign(lines[i]):
            out.append(lines[i])
        i += 1
    return out


def _node_loss_block_end(lines: list[str], i: int) -> int | None:
    """Where the NODE_LOSS_BLOCKS block starting at lines[i] ends (past its empty line), if one starts there."""
    for start, must in NODE_LOSS_BLOCKS:
        if start.search(lines[i]):
            end = next((j for j in range(i + 1, len(lines)) if not lines[j].strip()), len(lines))
            if must.search("\n".join(lines[i:end])):
                return end + 1
    return None


def _ended_actor_block_end(lines: list[str], i: int) -> int | None:
    """Where the ENDED_ACTOR_BLOCK starting at lines[i] ends (past its SystemExit line), if one starts there."""
    start, last, raised_by = ENDED_ACTOR_BLOCK
    if not start.search(lines[i]):
        return None
    window = lines[i : i + ENDED_ACTOR_MAX_LINES]
    end = next((j for j, line in enumerate(window) if last.search(line)), None)
    if end is None or not any(raised_by.search(line.rstrip()) for line in window[:end]):
        return None
    return i + end + 1


def filter_worker_logs() -> bool:
    """Print only kept_lines of what Ray prints on the driver; False (and nothing changed) when this Ray lays
    its printing out differently (ray_internals.wrap_driver_log_printer)."""
    return ray_internals.wrap_driver_log_printer(kept_lines)


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
