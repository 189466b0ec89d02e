"""The tests' one place for free ports and for waiting on something: no test sleeps for a fixed time to let
a server come up, a file appear or a count be reached; it polls with a deadline and, on timeout, says what
it waited for and what it saw last.

free_port(): a port the OS picks on 127.0.0.1. free_port(PORTS) / free_ports(n, PORTS): ports from a suite's
fixed range (Ray nodes, MLflow servers of the fault tests), moved into this pytest-xdist worker's block so
two workers never race for the same first free port.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
_handed_out: set[int] = set()  # ports of the fixed ranges given out in this process (a server may not listen yet)


def port_block() -> int:
    """This pytest-xdist worker's offset for the suites' fixed port ranges (0 without xdist): gw1 scans
    1000 ports higher than gw0, so two workers never race for the same first free port."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return 1000 * int(worker[2:]) if worker[2:].isdigit() else 0


def free_port(ports: range | None = None) -> int:
    """A TCP port nothing listens on now: one the OS picks on 127.0.0.1, or with `ports`, the first free
    one of that fixed range in this xdist worker's block (see free_ports)."""
    if ports is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])
    return free_ports(1, ports)[0]


def free_ports(n: int, ports: range) -> list[int]:
    """n ports of the fixed range `ports`, shifted by port_block(), that nothing listens on now on any
    interface (Ray binds the node's address, not only 127.0.0.1) and that no earlier call in this process
    handed out: a caller may take several before its servers bind them."""
    block = port_block()
    found: list[int] = []
    for port in range(ports.start + block, ports.stop + block):
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
        found.append(port)
        if len(found) == n:
            _handed_out.update(found)
            return found
    raise RuntimeError(f"fewer than {n} free ports in {ports.start + block}-{ports.stop + block - 1}")


def wait_until(
    condition: Callable[[], T],
    timeout_s: float,
    what: str = "the condition",
    interval_s: float = 0.5,
    *,
    proc: subprocess.Popen[Any] | None = None,
    log: Path | None = None,
    context: Callable[[], str] | None = None,
) -> T:
    """Poll condition() every interval_s until it returns something truthy, and return that.

    An exception from condition() counts as "not yet" (a server still starting refuses connections) and is
    kept for the failure message; an AssertionError ends the wait at once (the condition found a failure).
    proc: a subprocess the wait depends on; if it exits, fail now rather than at the deadline. On failure the
    message says what was awaited, for how long, the last value or exception seen, the tail of `log` (or of
    proc's piped output) and context(), if given."""
    deadline = time.monotonic() + timeout_s
    last: str = "nothing yet"
    while True:
        try:
            value = condition()
        except AssertionError:
            raise
        except Exception as err:
            last = f"exception {err!r}"[:1000]
        else:
            if value:
                return value
            last = f"value {value!r}"[:1000]
        if proc is not None and proc.poll() is not None:
            _fail(f"process exited ({proc.returncode}) while waiting for {what}; last {last}", proc, log, context)
        if time.monotonic() >= deadline:
            _fail(f"timed out after {timeout_s:g} s waiting for {what}; last {last}", proc, log, context)
        time.sleep(interval_s)


def log_tail(log: Path | None, n: int = 60) -> str:
    if log is None or not log.is_file():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-n:])


def _fail(message: str, proc: subprocess.Popen[Any] | None, log: Path | None, context: Callable[[], str] | None) -> None:
    parts = [message]
    if log is not None:
        parts.append(log_tail(log))
    elif proc is not None and proc.poll() is not None and proc.stdout is not None:
        out = proc.stdout.read()
        parts.append((out.decode(errors="replace") if isinstance(out, bytes) else out)[-6000:])
    if context is not None:
        try:
            parts.append(context())
        except Exception as err:
            parts.append(f"(context unavailable: {err!r})")
    raise AssertionError("\n".join(p for p in parts if p))
