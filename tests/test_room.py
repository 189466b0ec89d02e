"""Several jobs on one cluster, without Ray: how many worker groups a search plans beside what others hold, and
the line its trials get while they wait (the live check is tests/test_multinode.py's two searches)."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest

from raymlops import ray_internals
from raymlops.launch import room
from raymlops.search import resource_wait
from raymlops.search.resource_wait import ResourceWait


def nodes(monkeypatch: pytest.MonkeyPatch, total: list[dict[str, float]], free: list[dict[str, float]]) -> None:
    per_node = ({f"n{i}": t for i, t in enumerate(total)}, {f"n{i}": f for i, f in enumerate(free)})
    monkeypatch.setattr(ray_internals, "resources_per_node", lambda: per_node)


def test_an_idle_cluster_plans_its_capacity_silently(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    nodes(monkeypatch, [{"CPU": 4}, {"CPU": 4}], [{"CPU": 4}, {"CPU": 4}])
    assert room.plan_beside_others(4, {"CPU": 1.0}, 2) == 4
    assert capsys.readouterr().out == ""


def test_groups_other_jobs_keep_out_are_not_planned(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    # 3 of node 0's 4 CPUs held: 1 worker slot left there, 4 on node 1; 2-worker groups: 4 -> 4 - ceil(3/2) = 2
    nodes(monkeypatch, [{"CPU": 4}, {"CPU": 4}], [{"CPU": 1}, {"CPU": 4}])
    assert room.plan_beside_others(4, {"CPU": 1.0}, 2) == 2
    out = capsys.readouterr().out
    assert "Other jobs on this cluster hold 3 CPU of its 8 CPU now: planning 2 worker group(s) of 2 x 1 CPU" in out
    assert "not 4" in out and "wait" not in out


def test_a_full_cluster_plans_one_and_says_it_waits(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    nodes(monkeypatch, [{"CPU": 1, "GPU": 1}, {"CPU": 1, "GPU": 1}], [{"CPU": 1, "GPU": 0}, {"CPU": 0, "GPU": 0}])
    assert room.plan_beside_others(2, {"CPU": 1.0, "GPU": 1.0}, 1) == 1
    out = capsys.readouterr().out
    assert "hold 1 CPU, 2 GPU of its 2 CPU, 2 GPU now: planning 1" in out and "trials wait until they free some" in out


def test_the_wait_line_counts_this_searchs_running_trials_out(monkeypatch: pytest.MonkeyPatch) -> None:
    nodes(monkeypatch, [{"CPU": 2}, {"CPU": 2}], [{"CPU": 0}, {"CPU": 1}])
    line = room.wait_line(2, 75.4, {"CPU": 1.0}, 2, running=1)  # one group of ours holds 2 CPUs: others hold 1
    assert line.startswith("2 trial(s) have waited 75 s for resources: a worker group needs 2 CPU, free now 1 CPU of 4 CPU")
    assert "other jobs hold about 1 CPU" in line
    assert "other jobs" not in room.wait_line(1, 61, {"CPU": 1.0}, 1, running=3)  # all 3 held CPUs are ours


def test_resource_wait_speaks_after_the_notice_time_and_when_the_wait_ends(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    nodes(monkeypatch, [{"CPU": 2}], [{"CPU": 0}])
    monkeypatch.setattr(resource_wait, "CHECK_EVERY_S", 0.0)
    queued = [0]
    callback = ResourceWait({"CPU": 1.0}, 1, notice_s=0.2, queued=lambda: queued[0])
    pending = [SimpleNamespace(status="PENDING"), SimpleNamespace(status="RUNNING")]
    callback.on_step_end(0, pending)
    assert capsys.readouterr().out == "", "not before notice_s"
    time.sleep(0.25)
    callback.on_step_end(1, pending)
    callback.on_step_end(2, pending)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("1 trial(s) have waited 0 s") and "other jobs hold about 1 CPU" in out[0]
    running = [SimpleNamespace(status="RUNNING"), SimpleNamespace(status="RUNNING")]
    queued[0] = 1  # a thin driver runs, its lane's workers are not up: it waits too
    callback.on_step_end(3, running)
    assert capsys.readouterr().out == "", "the same wait goes on: no second line before notice_s"
    queued[0] = 0
    callback.on_step_end(4, running)
    assert capsys.readouterr().out.startswith("the wait for resources is over after 0 s")
