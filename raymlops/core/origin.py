"""Which raymlops command this process is running, for the runs' `mlflow.source.name`.

Set by the command-line wrapper (core.errors.cli) while an entry point runs; None when raymlops is used from
Python (raymlops.api), where the calling script or notebook is the source."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

_command: list[str] = []


@contextmanager
def running_command(module: str) -> Iterator[None]:
    _command.append(module)
    try:
        yield
    finally:
        _command.pop()


def current_command() -> str | None:
    return _command[-1] if _command else None
