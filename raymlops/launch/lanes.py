"""Warm DDP lanes: long-lived Ray Train worker groups that run one Tune trial after another.

A lane is a real `TorchTrainer` (gloo or NCCL, `prepare_model`, sharded data) whose per-worker loop
(`training.lane`) asks the search's `LaneBroker` for the next trial. A DDP Tune trial is a thin
driver (`run_on_lane`) that hands its config to the broker and relays every epoch's metrics and
checkpoint to Tune. The lane waits for that relay (`tune.report` returning) before the next epoch,
so an ASHA stop or a PromotionASHA pause ends the trial on the lane at that epoch boundary, and the
lane takes the next trial. Lanes end when the search ends, or after `scaling.lane_idle_s` with
nothing waiting, so an autoscaler can remove idle nodes; their placement groups go with them.

What a lane keeps between trials: its processes, the process group, imported libraries and the
decoded data set (same `data.*`). What every trial rebuilds: model, optimizer, LR schedule, RNG
seeds, MLflow run (training.loop.Recipe); so a trial's results do not depend on what ran before it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.tune import Callback

from raymlops.config.contract import RunContract
from raymlops.launch import cluster

log = logging.getLogger(__name__)
BROKER_NAME = "raymlops-lanes"
FIRST_TRIAL_WAIT_S = 60.0  # a lane started ahead of its first trial waits this long for it


@dataclass
class _Trial:
    request: dict[str, Any]
    shape: str
    spec: dict[str, Any]
    mail: list[dict[str, Any]] = field(default_factory=list)  # lane -> driver: result | done | error
    posted: int = 0  # results the lane posted ...
    acked: int = 0  # ... and the driver relayed to Tune
    released: bool = False  # Tune ended or paused the trial: the lane drops it at the next boundary
    lane: str | None = None


@dataclass
class _Lane:
    shape: str
    spec: dict[str, Any]
    trial: str | None = None
    served: int = 0  # trials this lane has taken
    exiting: bool = False
    ref: Any = None


@ray.remote(num_cpus=0)
class LaneBroker:
    """The search's switchboard between Tune trials (thin drivers) and lanes; an async actor, so long
    polls from both sides wait on one condition without blocking each other."""

    def __init__(self, max_lanes: int, idle_s: float):
        self.max_lanes, self.idle_s = max(1, max_lanes), idle_s
        self.trials: dict[str, _Trial] = {}
        self.queue: list[str] = []
        self.lanes: dict[str, _Lane] = {}
        self.closing = False
        self.started = 0
        self.changed = asyncio.Condition()

    # ---- the driver side
    async def submit(self, key: str, request: dict[str, Any], spec: dict[str, Any]) -> None:
        async with self.changed:
            shape = json.dumps(spec, sort_keys=True)
            self.trials[key] = _Trial(request, shape, spec)
            self.queue.append(key)
            self._fill()
            self.changed.notify_all()

    async def take(self, key: str, timeout_s: float) -> dict[str, Any] | None:
        """The next message of the lane running this trial, or None after timeout_s."""
        async with self.changed:
            trial = self.trials.get(key)
            if trial is None:
                return {"kind": "error", "error": f"trial {key} is not known to the lane broker"}
            try:
                await asyncio.wait_for(self.changed.wait_for(lambda: bool(trial.mail) or trial.released), timeout_s)
            except TimeoutError:
                return None
            return trial.mail.pop(0) if trial.mail else {"kind": "released"}

    async def ack(self, key: str, checkpoint: str | None) -> None:
        """Tune took the last result: the lane may go on; a restarted lane resumes from this checkpoint."""
        async with self.changed:
            trial = self.trials.get(key)
            if trial:
                trial.acked += 1
                if checkpoint:
                    trial.request["restore_dirs"] = [checkpoint]
                    trial.request["known_epoch"] = -1  # Tune saw everything up to this checkpoint
                self.changed.notify_all()

    async def release(self, key: str) -> None:
        async with self.changed:
            trial = self.trials.get(key)
            if trial and not trial.released:
                trial.released = True
                if key in self.queue:
                    self.queue.remove(key)
                if trial.lane is None:
                    del self.trials[key]
                self.changed.notify_all()

    # ---- the lane side (rank 0 of a lane's worker group)
    async def next_trial(self, lane_id: str) -> dict[str, Any] | None:
        """The lane's next trial: the one it ran before its worker group restarted, else the first
        queued trial of its shape; None (the lane ends) when the search ends or after idle_s."""
        async with self.changed:
            lane = self.lanes[lane_id]
            again = self._restarted_trial(lane) if lane.trial else None
            if lane.trial:
                await self.changed.wait_for(lambda: again is None or again.released or again.acked >= again.posted)
                if again is not None and not again.released:
                    return {"key": lane.trial, **again.request}
                self._unassign(lane)
            try:
                await asyncio.wait_for(
                    self.changed.wait_for(lambda: self._ends(lane) or self._first(lane) is not None),
                    self.idle_s if lane.served else max(self.idle_s, FIRST_TRIAL_WAIT_S),
                )
            except TimeoutError:
                pass
            key = None if self._ends(lane) else self._first(lane)
            if key is None:
                lane.exiting = True
                self._fill()
                return None
            self.queue.remove(key)
            lane.trial, self.trials[key].lane = key, lane_id
            lane.served += 1
            return {"key": key, **self.trials[key].request}

    async def post(self, key: str, message: dict[str, Any]) -> None:
        async with self.changed:
            trial = self.trials.get(key)
            if trial and not trial.released:
                trial.posted += message["kind"] == "result"
                trial.mail.append(message)
                self.changed.notify_all()

    async def wait_ack(self, key: str) -> str:
        """continue (Tune took every result) or release (Tune stopped or paused the trial)."""
        async with self.changed:
            trial = self.trials.get(key)
            if trial is None:
                return "release"
            await self.changed.wait_for(lambda: trial.released or trial.acked >= trial.posted)
            return "release" if trial.released else "continue"

    async def trial_ended(self, lane_id: str, key: str, message: dict[str, Any] | None) -> None:
        """The lane is done with this trial (message: done or error, for its driver)."""
        async with self.changed:
            trial = self.trials.get(key)
            if trial and message and not trial.released and trial.lane == lane_id:
                trial.mail.append(message)
            lane = self.lanes.get(lane_id)
            if lane is not None and lane.trial == key:
                self._unassign(lane)
            self._fill()
            self.changed.notify_all()

    async def lane_exit(self, lane_id: str, error: str | None) -> None:
        """The lane's TorchTrainer returned (error: its worker group failed for good)."""
        async with self.changed:
            lane = self.lanes.pop(lane_id, None)
            if lane and lane.trial and lane.trial in self.trials:
                trial = self.trials[lane.trial]
                if not trial.released:
                    trial.mail.append({"kind": "error", "error": f"lane {lane_id} failed: {error or 'it ended mid-trial'}"})
                trial.lane = None
            self._fill()
            self.changed.notify_all()

    # ---- the search side
    async def shutdown(self, timeout_s: float) -> int:
        """End every lane (idle ones at once, busy ones once Tune has released their trial); the lanes still
        running after timeout_s (0 when all ended, their placement groups removed by Ray Train)."""
        async with self.changed:
            self.closing = True
            for trial in self.trials.values():
                trial.released = True  # a lane waiting on a trial Tune no longer runs moves on and ends
            self.changed.notify_all()
            refs = [lane.ref for lane in self.lanes.values() if lane.ref is not None]
        if refs:
            _, pending = await asyncio.wait([asyncio.ensure_future(_as_future(r)) for r in refs], timeout=timeout_s)
            return len(pending)
        return 0

    async def prestart(self, spec: dict[str, Any], n: int) -> None:
        """Start n lanes of this shape now, while Tune starts its first trials (their thin drivers)."""
        async with self.changed:
            shape = json.dumps(spec, sort_keys=True)
            for _ in range(min(n, self.max_lanes) - len(self.lanes)):
                self._start(shape, spec)

    # ---- bookkeeping (called with the condition held)
    def _restarted_trial(self, lane: _Lane) -> _Trial | None:
        trial = self.trials.get(lane.trial or "")
        return trial if trial is not None and trial.lane is not None else None

    def _unassign(self, lane: _Lane) -> None:
        key, lane.trial = lane.trial or "", None
        trial = self.trials.get(key)
        if trial is not None:
            trial.lane = None
            if trial.released:  # else its driver still has mail to take (done / error), then releases it
                del self.trials[key]

    def _ends(self, lane: _Lane) -> bool:
        return self.closing or lane.exiting

    def _first(self, lane: _Lane) -> str | None:
        return next((k for k in self.queue if self.trials[k].shape == lane.shape), None)

    def _fill(self) -> None:
        """Start lanes for queued trials no idle lane of their shape will take, up to max_lanes; an idle lane
        of a shape nobody waits for makes room (it ends, and its lane_exit fills again)."""
        if self.closing:
            return
        specs = {self.trials[k].shape: self.trials[k].spec for k in self.queue}
        waiting = Counter(self.trials[k].shape for k in self.queue)
        for shape, n in waiting.items():
            idle = sum(1 for ln in self.lanes.values() if ln.shape == shape and ln.trial is None and not ln.exiting)
            for _ in range(n - idle):
                if len(self.lanes) < self.max_lanes:
                    self._start(shape, specs[shape])
                    continue
                spare = next(
                    (ln for ln in self.lanes.values() if ln.trial is None and not ln.exiting and waiting[ln.shape] == 0), None
                )
                if spare is None:
                    break
                spare.exiting = True

    def _start(self, shape: str, spec: dict[str, Any]) -> None:
        self.started += 1
        lane_id = f"lane{self.started}-{uuid.uuid4().hex[:6]}"
        me = ray.get_runtime_context().current_actor
        ref = _run_lane.remote(spec, me, lane_id)
        self.lanes[lane_id] = _Lane(shape, spec, ref=ref)
        asyncio.get_running_loop().create_task(self._watch(lane_id, ref))
        log.info("started %s for %s", lane_id, shape)

    async def _watch(self, lane_id: str, ref: Any) -> None:
        """A lane's task ended (its TorchTrainer returned, or the task itself died, e.g. killed for memory
        with no retries left): the lane is gone, and a trial it held fails rather than waits forever."""
        try:
            error = await ref
        except Exception as err:
            error = f"{type(err).__name__}: {err}"
        if lane_id in self.lanes:
            await self.lane_exit(lane_id, error)


async def _as_future(ref: Any) -> Any:
    try:
        return await ref
    except Exception:
        return None


@ray.remote(num_cpus=0)
def _run_lane(spec: dict[str, Any], broker: Any, lane_id: str) -> str | None:
    """A lane: one TorchTrainer whose workers run trials until the broker has none; its error, if any."""
    import ray.train
    from ray.train.torch import TorchTrainer

    from raymlops.launch.job import quiet_logging
    from raymlops.training.lane import lane_loop_per_worker

    trainer = TorchTrainer(
        lane_loop_per_worker,
        train_loop_config={"broker": broker, "lane_id": lane_id},
        scaling_config=ray.train.ScalingConfig(
            num_workers=spec["num_workers"], use_gpu=spec["use_gpu"], resources_per_worker=dict(spec["per_worker"])
        ),
        run_config=ray.train.RunConfig(
            name=lane_id,
            storage_path=spec["storage"],
            failure_config=ray.train.FailureConfig(max_failures=spec["max_failures"]),
            logging_config=quiet_logging(),  # type: ignore[call-arg]
        ),
    )
    try:
        result = trainer.fit()
        return str(result.error) if result.error else None
    except Exception as err:  # Train V2 raises TrainingFailedError once max_failures restarts are spent
        return f"{type(err).__name__}: {err}"


class LaneRelease(Callback):
    """Tells the broker when Tune has ended or paused a trial (a safety net beside the thin driver's own
    `finally`, for a driver actor that died without running it), and ends the lanes with the search."""

    def __init__(self, broker: Any, search_key: str):
        self.broker, self.search_key = broker, search_key
        self.live: set[str] = set()

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.live.add(trial.trial_id)

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        for trial in trials:
            if trial.trial_id in self.live and trial.status in ("PAUSED", "TERMINATED", "ERROR"):
                self.live.discard(trial.trial_id)
                self.broker.release.remote(f"{self.search_key}/{trial.trial_id}")

    def __getstate__(self) -> dict[str, Any]:
        """Tune pickles its callbacks into tuner.pkl; a resumed search brings its own broker."""
        return {**self.__dict__, "broker": None, "live": set()}


def lane_spec(config: dict[str, Any], run: RunContract, storage: str) -> dict[str, Any]:
    """The shape of the worker group a trial needs (its lane's key) and how to start one."""
    return {
        "num_workers": config["scaling"]["num_workers"],
        "per_worker": cluster.worker_resources(config, run.launch.use_gpu),
        "use_gpu": run.launch.use_gpu,
        "storage": os.path.abspath(storage) if "://" not in storage else storage,
        "max_failures": config["train"]["max_failures"],
    }


def start_broker(config: dict[str, Any], run: RunContract, lanes: int, storage: str) -> Any:
    """The search's lane broker, with `lanes` lanes of the search's worker shape starting at once (more, or
    other shapes, start on demand as trials arrive)."""
    broker = LaneBroker.options(  # type: ignore[attr-defined]
        name=f"{BROKER_NAME}-{uuid.uuid4().hex[:8]}"
    ).remote(lanes, config["scaling"]["lane_idle_s"])
    broker.prestart.remote(lane_spec(config, run, storage), lanes)
    return broker


def stop_lanes(broker: Any, timeout_s: float = 120.0) -> None:
    """End every lane and wait for their worker groups (and placement groups) to go."""
    try:
        left = ray.get(broker.shutdown.remote(timeout_s), timeout=timeout_s + 30)
    except Exception as err:
        log.warning("could not stop the DDP lanes cleanly: %s", err)
        left = -1
    if left:
        log.warning("%s DDP lane(s) did not end within %.0f s; Ray removes them when this process exits", left, timeout_s)
    ray.kill(broker)
