"""The lane broker's bookkeeping: which trials wait, which lane runs which trial, and which lanes to start or
retire. Plain data and rules, no Ray and no waiting (lane_broker holds the lock and does the waiting)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Trial:
    request: dict[str, Any]
    shape: str
    spec: dict[str, Any]
    mail: list[dict[str, Any]] = field(default_factory=list)  # lane -> driver: result | done | error
    posted: int = 0  # results the lane posted ...
    acked: int = 0  # ... and the driver relayed to Tune
    released: bool = False  # Tune ended or paused the trial: the lane drops it at the next boundary
    lane: str | None = None


@dataclass
class Lane:
    shape: str
    spec: dict[str, Any]
    trial: str | None = None
    served: int = 0  # trials this lane has taken
    exiting: bool = False
    ref: Any = None


def shape_of(spec: dict[str, Any]) -> str:
    """A worker-group spec as a key: trials of one shape can share a lane."""
    return json.dumps(spec, sort_keys=True)


class LaneBook:
    """Trials (queued or on a lane) and lanes of one search, and the rules that pair them."""

    def __init__(self, max_lanes: int):
        self.max_lanes = max(1, max_lanes)
        self.trials: dict[str, Trial] = {}
        self.queue: list[str] = []
        self.lanes: dict[str, Lane] = {}
        self.closing = False

    def add(self, key: str, request: dict[str, Any], spec: dict[str, Any]) -> None:
        self.trials[key] = Trial(request, shape_of(spec), spec)
        self.queue.append(key)

    def ack(self, key: str, checkpoint: str | None) -> bool:
        trial = self.trials.get(key)
        if trial is None:
            return False
        trial.acked += 1
        if checkpoint:
            trial.request["restore_dirs"] = [checkpoint]
            trial.request["known_epoch"] = -1  # Tune saw everything up to this checkpoint
        return True

    def release(self, key: str) -> bool:
        trial = self.trials.get(key)
        if trial is None or trial.released:
            return False
        trial.released = True
        if key in self.queue:
            self.queue.remove(key)
        if trial.lane is None:
            del self.trials[key]
        return True

    def post(self, key: str, message: dict[str, Any]) -> bool:
        trial = self.trials.get(key)
        if trial is None or trial.released:
            return False
        trial.posted += message["kind"] == "result"
        trial.mail.append(message)
        return True

    def restarted_trial(self, lane: Lane) -> Trial | None:
        """The trial a lane held when its worker group restarted, if it still holds it."""
        trial = self.trials.get(lane.trial or "")
        return trial if trial is not None and trial.lane is not None else None

    def assign(self, lane_id: str, key: str) -> dict[str, Any]:
        """Hand the queued trial `key` to the lane: its request, keyed."""
        lane = self.lanes[lane_id]
        self.queue.remove(key)
        lane.trial, self.trials[key].lane = key, lane_id
        lane.served += 1
        return {"key": key, **self.trials[key].request}

    def unassign(self, lane: Lane) -> None:
        key, lane.trial = lane.trial or "", None
        trial = self.trials.get(key)
        if trial is not None:
            trial.lane = None
            if trial.released:  # else its driver still has mail to take (done / error), then releases it
                del self.trials[key]

    def end_trial(self, lane_id: str, key: str, message: dict[str, Any] | None) -> None:
        """The lane is done with this trial (message: done or error, for its driver)."""
        trial = self.trials.get(key)
        if trial and message and not trial.released and trial.lane == lane_id:
            trial.mail.append(message)
        lane = self.lanes.get(lane_id)
        if lane is not None and lane.trial == key:
            self.unassign(lane)

    def lane_gone(self, lane_id: str, error: str | None) -> None:
        """The lane's TorchTrainer returned: a trial it held fails rather than waits forever."""
        lane = self.lanes.pop(lane_id, None)
        if lane and lane.trial and lane.trial in self.trials:
            trial = self.trials[lane.trial]
            if not trial.released:
                trial.mail.append({"kind": "error", "error": f"lane {lane_id} failed: {error or 'it ended mid-trial'}"})
            trial.lane = None

    def close(self) -> None:
        self.closing = True
        for trial in self.trials.values():
            trial.released = True  # a lane waiting on a trial Tune no longer runs moves on and ends

    def ends(self, lane: Lane) -> bool:
        return self.closing or lane.exiting

    def first(self, lane: Lane) -> str | None:
        return next((k for k in self.queue if self.trials[k].shape == lane.shape), None)

    def fill(self, start: Callable[[str, dict[str, Any]], None]) -> None:
        """Start lanes (start(shape, spec) adds one to self.lanes) for queued trials no idle lane of their shape
        will take, up to max_lanes; an idle lane of a shape nobody waits for makes room (it ends, and its
        lane_gone fills again)."""
        if self.closing:
            return
        specs = {self.trials[k].shape: self.trials[k].spec for k in self.queue}
        waiting = Counter(self.trials[k].shape for k in self.queue)
        for shape, n in waiting.items():
            idle = sum(1 for ln in self.lanes.values() if ln.shape == shape and ln.trial is None and not ln.exiting)
            for _ in range(n - idle):
                if len(self.lanes) < self.max_lanes:
                    start(shape, specs[shape])
                    continue
                spare = next(
                    (ln for ln in self.lanes.values() if ln.trial is None and not ln.exiting and waiting[ln.shape] == 0), None
                )
                if spare is None:
                    break
                spare.exiting = True
