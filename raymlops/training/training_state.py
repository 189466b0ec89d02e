"""Where training is, as a checkpoint carries it: epoch, every logged point, restarts, the MLflow run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Progress:
    """Where training is, as a checkpoint carries it: epoch, every logged point, restarts, the MLflow run."""

    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    step_points: list[list[float]] = field(default_factory=list)  # [step, value, logged_at_ms] up to the checkpoint
    restarts: int = 0
    run_id: str | None = None

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Progress:
        """From a restored checkpoint's state; an empty state (nothing restored) is a fresh start."""
        if not state:
            return cls()
        return cls(state["epoch"], state["history"], state["step_points"], state["restarts"] + 1, state["run_id"])
