"""Warm DDP lanes' lifecycle: the search's LaneBroker actor, and the lanes it starts and ends.

A lane is a real `TorchTrainer` (gloo or NCCL, `prepare_model`, sharded data) whose per-worker loop
(`training.lane`) asks the broker for the next trial; a trial's thin driver (warm_lane) hands its config
to the broker and relays every epoch to Tune. The broker pairs them (lane_book) and waits for both sides
on one condition. Lanes end when the search ends, or after `scaling.lane_idle_s` with nothing waiting, so
an autoscaler can remove idle nodes; their placement groups go with them.

What a lane keeps between trials: its processes, the process group, imported libraries and the decoded
data set (same `data.*`). What every trial rebuilds: model, optimizer, LR schedule, RNG seeds, MLflow run
(training.loop.Recipe); so a trial's results do not depend on what ran before it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import ray

from raymlops.launch.executors.lane_book import Lane, LaneBook, shape_of

log = logging.getLogger(__name__)
BROKER_NAME = "raymlops-lanes"
FIRST_TRIAL_WAIT_S = 60.0  # a lane started ahead of its first trial waits this long for it


@ray.remote(num_cpus=0)
class LaneBroker:
    """The search's switchboard between Tune trials (thin drivers) and lanes; an async actor, so long
    polls from both sides wait on one condition without blocking each other."""

    def __init__(self, max_lanes: int, idle_s: float):
        self.book, self.idle_s = LaneBook(max_lanes), idle_s
        self.started = 0
        self.changed = asyncio.Condition()

    # ---- the driver side
    async def submit(self, key: str, request: dict[str, Any], spec: dict[str, Any]) -> None:
        async with self.changed:
            self.book.add(key, request, spec)
            self.book.fill(self._start)
            self.changed.notify_all()

    async def take(self, key: str, timeout_s: float) -> dict[str, Any] | None:
        """The next message of the lane running this trial, or None after timeout_s."""
        async with self.changed:
            trial = self.book.trials.get(key)
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
            if self.book.ack(key, checkpoint):
                self.changed.notify_all()

    async def release(self, key: str) -> None:
        async with self.changed:
            if self.book.release(key):
                self.changed.notify_all()

    # ---- the lane side (rank 0 of a lane's worker group)
    async def next_trial(self, lane_id: str) -> dict[str, Any] | None:
        """The lane's next trial: the one it ran before its worker group restarted, else the first
        queued trial of its shape; None (the lane ends) when the search ends or after idle_s."""
        async with self.changed:
            book, lane = self.book, self.book.lanes[lane_id]
            again = book.restarted_trial(lane) if lane.trial else None
            if lane.trial:
                await self.changed.wait_for(lambda: again is None or again.released or again.acked >= again.posted)
                if again is not None and not again.released:
                    return {"key": lane.trial, **again.request}
                book.unassign(lane)
            try:
                await asyncio.wait_for(
                    self.changed.wait_for(lambda: book.ends(lane) or book.first(lane) is not None),
                    self.idle_s if lane.served else max(self.idle_s, FIRST_TRIAL_WAIT_S),
                )
            except TimeoutError:
                pass
            key = None if book.ends(lane) else book.first(lane)
            if key is None:
                lane.exiting = True
                book.fill(self._start)
                return None
            return book.assign(lane_id, key)

    async def post(self, key: str, message: dict[str, Any]) -> None:
        async with self.changed:
            if self.book.post(key, message):
                self.changed.notify_all()

    async def wait_ack(self, key: str) -> str:
        """continue (Tune took every result) or release (Tune stopped or paused the trial)."""
        async with self.changed:
            trial = self.book.trials.get(key)
            if trial is None:
                return "release"
            await self.changed.wait_for(lambda: trial.released or trial.acked >= trial.posted)
            return "release" if trial.released else "continue"

    async def trial_ended(self, lane_id: str, key: str, message: dict[str, Any] | None) -> None:
        """The lane is done with this trial (message: done or error, for its driver)."""
        async with self.changed:
            self.book.end_trial(lane_id, key, message)
            self.book.fill(self._start)
            self.changed.notify_all()

    async def lane_exit(self, lane_id: str, error: str | None) -> None:
        """The lane's TorchTrainer returned (error: its worker group failed for good)."""
        async with self.changed:
            self.book.lane_gone(lane_id, error)
            self.book.fill(self._start)
            self.changed.notify_all()

    # ---- the search side
    async def queued(self) -> int:
        """Trials submitted that no lane has taken yet."""
        return len(self.book.queue)

    async def shutdown(self, timeout_s: float) -> int:
        """End every lane (idle ones at once, busy ones once Tune has released their trial); the lanes still
        running after timeout_s (0 when all ended, their placement groups removed by Ray Train)."""
        async with self.changed:
            self.book.close()
            self.changed.notify_all()
            refs = [lane.ref for lane in self.book.lanes.values() if lane.ref is not None]
        if refs:
            _, pending = await asyncio.wait([asyncio.ensure_future(_as_future(r)) for r in refs], timeout=timeout_s)
            return len(pending)
        return 0

    async def prestart(self, spec: dict[str, Any], n: int) -> None:
        """Start n lanes of this shape now, while Tune starts its first trials (their thin drivers)."""
        async with self.changed:
            for _ in range(min(n, self.book.max_lanes) - len(self.book.lanes)):
                self._start(shape_of(spec), spec)

    # ---- lanes (called with the condition held)
    def _start(self, shape: str, spec: dict[str, Any]) -> None:
        self.started += 1
        lane_id = f"lane{self.started}-{uuid.uuid4().hex[:6]}"
        context = ray.get_runtime_context()
        # On the broker's node (the driver's): Train V2 puts a lane's controller where its fit() runs, so a
        # worker node's loss takes only worker processes, which the controller restarts elsewhere.
        ref = _run_lane.options(scheduling_strategy=on_node(context.get_node_id())).remote(spec, context.current_actor, lane_id)
        self.book.lanes[lane_id] = Lane(shape, spec, ref=ref)
        asyncio.get_running_loop().create_task(self._watch(lane_id, ref))
        log.info("started %s for %s", lane_id, shape)

    async def _watch(self, lane_id: str, ref: Any) -> None:
        """A lane's task ended (its TorchTrainer returned, or the task itself died, e.g. killed for memory
        with no retries left): the lane is gone, and a trial it held fails rather than waits forever."""
        try:
            error = await ref
        except Exception as err:
            error = f"{type(err).__name__}: {err}"
        if lane_id in self.book.lanes:
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

    from raymlops import ray_internals
    from raymlops.launch.job import quiet_logging
    from raymlops.training.lane import lane_loop_per_worker

    trainer = ray_internals.torch_trainer_class()(
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


def on_node(node_id: str) -> Any:
    """Scheduling on exactly this node: the search's own node, which lives as long as the search does."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)


def start_broker(spec: dict[str, Any], lanes: int, idle_s: float) -> Any:
    """The search's lane broker, with `lanes` lanes of shape `spec` starting at once (more, or other shapes,
    start on demand as trials arrive). It runs on the driver's node: a worker node lost mid-search (a spot
    reclaim) must not take the switchboard of every trial with it."""
    broker = LaneBroker.options(  # type: ignore[attr-defined]
        name=f"{BROKER_NAME}-{uuid.uuid4().hex[:8]}", scheduling_strategy=on_node(ray.get_runtime_context().get_node_id())
    ).remote(lanes, idle_s)
    broker.prestart.remote(spec, lanes)
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
