"""Live progress of a search, on the driver: a rich table on a terminal, one plain line per event otherwise.

A Tune callback: trials running / done / stopped / failed out of N, each running trial's epoch and
last metric, the best so far, elapsed time and an estimate of what is left. Plain mode (CI logs,
`ray job submit`) prints a line per trial start, epoch and end. Never raises into Tune.
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray.tune import Callback
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text


@dataclass
class Tally:
    """What the search has done so far, read from Tune's trial states (a resumed search counts its old trials)."""

    finished: int = 0
    stopped: int = 0
    failed: int = 0
    running: dict[str, tuple[int, float | None]] = field(default_factory=dict)  # trial id -> (epoch, last metric)

    @property
    def ended(self) -> int:
        return self.finished + self.stopped + self.failed


def clock(seconds: float) -> str:
    s = int(max(seconds, 0))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def left_estimate(elapsed: float, ended: int, total: int) -> str:
    """Time left at the rate trials ended so far (unknown until one has)."""
    if ended <= 0 or ended >= total:
        return "?" if ended < total else "0m00s"
    return "~" + clock(elapsed * (total - ended) / ended)


NODE_DIED = re.compile(r"its node has died\. Node Id: ([0-9a-f]{8})")
PEER_LOST = (
    "Connection closed by peer",
    "Connection reset by peer",
    "The actor is temporarily unavailable",  # a Tune actor whose node went
    "health check failed",
    "ActorDiedError",
    "ActorUnavailableError",
)


def failure_cause(trial: Any) -> str:
    """What made a trial fail, in a few words, from the error Tune saved for it."""
    try:
        text = Path(trial.error_file).read_text() if trial.error_file else ""
    except OSError:
        text = ""
    if died := NODE_DIED.search(text):
        return f"node {died.group(1)} lost"
    if any(sign in text for sign in PEER_LOST):
        return "a node or worker of its worker group was lost"
    last = next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "")
    return f"trial failed ({last[:160]})" if last else "trial failed"


class SearchProgress(Callback):
    """The search's progress on the driver's terminal (live) or as plain lines (console.progress)."""

    def __init__(self, metric: str, mode: str, max_epochs: int, num_samples: int, style: str = "auto", max_failures: int = 0):
        self.metric, self.mode, self.max_epochs, self.num_samples = metric, mode, max_epochs, num_samples
        self.style, self.max_failures = style, max_failures
        self.best: tuple[float, str] | None = None
        self.last: dict[str, tuple[int, float | None]] = {}
        self.restarts: dict[str, int] = {}  # trial id -> restarts its results counted since Tune (re)started it
        self.started = time.monotonic()
        self._trials: list[Any] = []
        self._live: Live | None = None

    def __getstate__(self) -> dict[str, Any]:
        """Tune pickles its callbacks into tuner.pkl: leave out the live display and the trials."""
        return {**self.__dict__, "_live": None, "_trials": []}

    # Tune's hooks
    def setup(self, stop: Any = None, num_samples: int | None = None, total_num_samples: int | None = None, **info: Any) -> None:
        self.started = time.monotonic()
        console = Console(file=sys.stdout)
        live = self.style == "live" or (self.style == "auto" and console.is_terminal)
        if live:
            self._live = Live(console=console, refresh_per_second=2, get_renderable=self._render, transient=True)
            self._live.start()
        else:
            self._line(f"waiting for the first of {self.num_samples} trials to start (Ray starts its actors)")

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._trials = trials
        self.last.setdefault(trial.trial_id, (0, None))
        self.restarts.pop(trial.trial_id, None)  # resumed after a pause or a failure Tune saw: a new baseline
        if not self._live:  # Tune may still call it PENDING here
            print(
                self._stamped(f"trial {trial.trial_id} started{_params(trial)}", self.tally(trials, trial, "RUNNING")), flush=True
            )

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any) -> None:
        self._trials = trials
        value, epoch = result.get(self.metric), int(result.get("epoch", 0) or 0)
        self._restarted_by_train(trials, trial, epoch, int(result.get("restarts", 0) or 0))
        number = float(value) if isinstance(value, (int, float)) else None
        self.last[trial.trial_id] = (epoch, number)
        if number is not None and (self.best is None or (number > self.best[0] if self.mode == "max" else number < self.best[0])):
            self.best = (number, trial.trial_id)
        if not self._live:
            shown = f"{self.metric}={number:.4f}" if number is not None else f"no {self.metric}"
            self._line(f"trial {trial.trial_id} epoch {epoch}/{self.max_epochs} {shown}", trials)

    def _restarted_by_train(self, trials: list[Any], trial: Any, epoch: int, restarts: int) -> None:
        """A DDP trial's worker group restarted by Ray Train (a node lost or preempted: its driver lives on): Tune
        saw no failure, the trial's restart counter tells. One line, as on_trial_recover prints for Tune's."""
        before = self.restarts.setdefault(trial.trial_id, restarts)
        self.restarts[trial.trial_id] = restarts
        if restarts > before:
            self._event(
                f"trial {trial.trial_id}'s worker group was restarted by Ray Train (a node or worker lost or preempted): "
                f"it continues from epoch {epoch - 1} (restart {restarts})",
                trials,
            )

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        epochs = int((trial.last_result or {}).get("epoch", 0))
        ended = "stopped at" if epochs < self.max_epochs else "finished"
        self._ended(trials, trial, f"trial {trial.trial_id} {ended} epoch {epochs}", "TERMINATED")

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        """One line where Ray prints tracebacks: what failed, and where the trial goes on from."""
        epoch = int((trial.last_result or {}).get("epoch", 0) or 0)
        retry = f"retry {trial.num_failures} of {self.max_failures}"
        self._ended(
            trials, trial, f"{failure_cause(trial)}: trial {trial.trial_id} continues from epoch {epoch} ({retry})", "PENDING"
        )

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._ended(trials, trial, f"trial {trial.trial_id} FAILED (see {getattr(trial, 'path', '')})", "ERROR")

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        if self._live:
            self._live.stop()
            self._live = None

    # what is shown
    def tally(self, trials: list[Any], ended: Any = None, ended_status: str = "") -> Tally:
        t = Tally()
        for trial in trials:
            status = ended_status if trial is ended else trial.status
            if status == "RUNNING":
                t.running[trial.trial_id] = self.last.get(trial.trial_id, (0, None))
            elif status in ("TERMINATED", "ERROR"):
                epochs = int((trial.last_result or {}).get("epoch", 0))
                if status == "ERROR":
                    t.failed += 1
                elif epochs < self.max_epochs:
                    t.stopped += 1
                else:
                    t.finished += 1
        return t

    def summary(self, t: Tally) -> str:
        elapsed = time.monotonic() - self.started
        best = f"best {self.metric}={self.best[0]:.4f} ({self.best[1]})" if self.best else "no result yet"
        return (
            f"{t.ended}/{self.num_samples} done ({t.finished} finished, {t.stopped} stopped early, {t.failed} failed), "
            f"{len(t.running)} running | {best} | {clock(elapsed)} elapsed, "
            f"{left_estimate(elapsed, t.ended, self.num_samples)} left"
        )

    def _ended(self, trials: list[Any], trial: Any, event: str, status: str) -> None:
        self._trials = trials
        self.last.pop(trial.trial_id, None)
        self._event(event, trials, trial, status)

    def _event(self, event: str, trials: list[Any], trial: Any = None, status: str = "") -> None:
        line = self._stamped(event, self.tally(trials, trial, status))
        if self._live:
            self._live.console.print(line, highlight=False, markup=False)  # above the live table, kept in the scrollback
        else:
            print(line, flush=True)

    def _line(self, event: str, trials: list[Any] | None = None) -> None:
        print(self._stamped(event, self.tally(trials) if trials is not None else None), flush=True)

    def _stamped(self, event: str, tally: Tally | None) -> str:
        tail = f" | {self.summary(tally)}" if tally is not None else ""
        return f"[{clock(time.monotonic() - self.started)}] {event}{tail}"

    def _render(self) -> Any:
        t = self.tally(self._trials)
        table = Table(box=None, pad_edge=False, show_header=bool(t.running))
        for column in ("running trial", "epoch", self.metric):
            table.add_column(column)
        for trial_id, (epoch, value) in sorted(t.running.items()):
            shown = f"{value:.4f}" if value is not None else "-"
            table.add_row(trial_id, f"{epoch}/{self.max_epochs}" if epoch else "starting", shown)
        return Group(Text(self.summary(t)), table)


def _params(trial: Any) -> str:
    """The searched values of a trial, short: ' (optim.lr=0.0123, model.width=16)'."""
    config = getattr(trial, "config", None) or {}
    shown = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in config.items() if "." in k]
    return f" ({', '.join(shown)})" if shown else ""
