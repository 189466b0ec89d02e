"""A search's name: a new one per launch, or the interrupted one to resume (tune.resume=true or =NAME)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from raymlops.core.errors import UserError


def search_name(experiment: str, resume: Any, storage: str) -> str:
    """A new search's directory name (experiment-date-time), or the one to resume (tune.resume=true or =NAME)."""
    if resume in (False, None, "false"):
        return f"{experiment}-{time.strftime('%Y%m%d-%H%M%S')}"
    if isinstance(resume, str) and resume != "true":
        return resume
    if "://" in storage:
        raise UserError("tune.resume=true cannot list a remote storage_path; name the search: tune.resume=NAME-YYYYmmdd-HHMMSS.")
    found = sorted(p.name for p in Path(storage).glob(f"{experiment}-*") if (p / "tuner.pkl").is_file())
    if not found:
        raise UserError(
            f"tune.resume=true but there is no interrupted '{experiment}' search under storage_path={storage}. "
            "Start a new search without tune.resume, or pass the search's folder name: tune.resume=NAME-YYYYmmdd-HHMMSS."
        )
    return found[-1]


def check_resumable(storage: str, name: str) -> None:
    from ray import tune  # lazy: checked before Ray starts, in the entry point; importing Ray costs ~3 s

    path = os.path.join(storage, name)
    if not tune.Tuner.can_restore(path):
        found = sorted(p.name for p in Path(storage).glob("*") if (p / "tuner.pkl").is_file()) if "://" not in storage else []
        raise UserError(
            f"tune.resume={name}: nothing to resume at {path} (no tuner state). Searches under storage_path={storage}: "
            f"{', '.join(found) if found else 'none'}; pass one of them, or drop tune.resume to start a new search."
        )
