"""Trial executors (launch.executors): which one a search gets, what Tune reserves for its trials, and the lane
broker's bookkeeping (lane_book), without a cluster. The real trials of each executor run in
test_search_e2e.py (in the Tune actor, and DDP with warm_workers=false), test_lanes.py (warm lanes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from ray import tune

from raymlops.config import Config, compose
from raymlops.config.contract import Launch
from raymlops.launch import cluster
from raymlops.launch.executors import own_trainer
from raymlops.launch.executors.choice import choose_executor, executor_class, for_trial
from raymlops.launch.executors.in_actor import InActorExecutor
from raymlops.launch.executors.lane_book import Lane, LaneBook
from raymlops.launch.executors.own_trainer import OwnTrainerExecutor
from raymlops.launch.executors.warm_lane import LaneRelease, WarmLaneExecutor

LAUNCH = Launch("sqlite:///x.db", "1", False, {"CPU": 1.0}, {}, 2)


def _cfg(*overrides: str) -> Config:
    return compose(["+experiment=smoke", *overrides])  # validated: a bad value raises here


def test_one_executor_per_search_from_its_scaling() -> None:
    assert executor_class(_cfg().scaling) is InActorExecutor
    assert executor_class(_cfg("scaling.num_workers=2").scaling) is WarmLaneExecutor
    assert executor_class(_cfg("scaling.num_workers=2", "scaling.warm_workers=false").scaling) is OwnTrainerExecutor
    assert executor_class(_cfg("scaling.in_process_single_worker=false").scaling) is WarmLaneExecutor
    assert InActorExecutor.cheap_pause and not WarmLaneExecutor.cheap_pause and not OwnTrainerExecutor.cheap_pause
    assert InActorExecutor.reuses_actors and WarmLaneExecutor.reuses_actors and not OwnTrainerExecutor.reuses_actors


class _Node:  # what ray.get_runtime_context() answers on the search driver: only its node id is asked
    def get_node_id(self) -> str:
        return "node-1"


def test_resources_and_callbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    # No Ray here: a Ray call would start one, or join whatever cluster this machine last ran `ray start --head` for
    # (Ray's /tmp/ray/ray_current_cluster), which hung this test once that head was gone.
    monkeypatch.setattr(own_trainer.ray, "get_runtime_context", _Node)
    search = LAUNCH.run("search", "s-1", "s-1", log_model=False)
    in_actor = choose_executor(_cfg(), search)
    assert in_actor.resources().bundles == [{"CPU": 1.0}] and in_actor.callbacks() == []
    own = choose_executor(_cfg("scaling.num_workers=2", "scaling.warm_workers=false"), search)
    driver = tune.PlacementGroupFactory([dict(cluster.DRIVER_RESOURCES)]).bundles
    assert own.resources().bundles == driver and own.callbacks() == []
    lanes = choose_executor(_cfg("scaling.num_workers=2"), search)
    assert lanes.resources().bundles == driver
    assert lanes.storage.endswith("s-1/lanes")
    (release,) = lanes.callbacks()
    assert isinstance(release, LaneRelease) and release.search_key == "s-1"


def test_a_trial_whose_sampled_scaling_differs_runs_as_before() -> None:
    search = LAUNCH.run("search", "s-1", "s-1", log_model=False)
    one, two = _cfg(), _cfg("scaling.num_workers=2")
    lanes, in_actor = choose_executor(two, search), choose_executor(one, search)
    assert for_trial(lanes, two) is lanes and for_trial(in_actor, one) is in_actor
    assert isinstance(for_trial(lanes, one), InActorExecutor)
    assert isinstance(for_trial(in_actor, two), OwnTrainerExecutor)


def _book(max_lanes: int) -> tuple[LaneBook, Callable[[str, dict[str, Any]], None], list[str]]:
    book, started = LaneBook(max_lanes), []

    def start(shape: str, spec: dict[str, Any]) -> None:  # what LaneBroker._start does, less the TorchTrainer
        started.append(shape)
        book.lanes[f"lane{len(started)}"] = Lane(shape, spec)

    return book, start, started


def test_lane_book_pairs_trials_with_lanes_of_their_shape() -> None:
    book, start, started = _book(max_lanes=2)
    small, big = {"num_workers": 2}, {"num_workers": 4}
    book.add("s/1", {"restore_dirs": []}, small)
    book.add("s/2", {"restore_dirs": []}, small)
    book.fill(start)
    assert len(started) == 2 and book.first(book.lanes["lane1"]) == "s/1"
    assert book.assign("lane1", "s/1") == {"key": "s/1", "restore_dirs": []}
    assert book.post("s/1", {"kind": "result"}) and book.trials["s/1"].posted == 1
    assert book.ack("s/1", "/ckpt") and book.trials["s/1"].request == {"restore_dirs": ["/ckpt"], "known_epoch": -1}
    book.end_trial("lane1", "s/1", {"kind": "done"})
    assert book.lanes["lane1"].trial is None and book.trials["s/1"].mail[-1] == {"kind": "done"}
    assert book.release("s/1") and "s/1" not in book.trials and not book.release("s/1")
    book.add("s/3", {}, big)  # a lane of another shape is needed: an idle small lane makes room
    book.assign("lane2", "s/2")
    book.fill(start)
    assert book.lanes["lane1"].exiting and len(started) == 2
    book.lane_gone("lane2", "worker died")
    assert book.trials["s/2"].mail[-1]["kind"] == "error" and book.trials["s/2"].lane is None
    book.close()
    assert all(t.released for t in book.trials.values()) and book.ends(book.lanes["lane1"])
