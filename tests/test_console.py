"""What the terminal shows: Ray's known noise dropped by exact pattern (real errors kept), the progress lines."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from raymlops.config import compose
from raymlops.launch.ray_output import dashboard_line, is_benign, kept_lines
from raymlops.search.live_progress import SearchProgress, left_estimate

NOISE = [  # copied from a quickstart run on Ray 2.60
    "[2026-12-02 00:53:03,379 E 15199 15398] core_worker.cc:2465: Actor with class name: 'PreemptionWatcher' and ID: "
    "'624a8c36667976030f15104901000000' has constructor arguments in the object store and max_restarts > 0. If the "
    "arguments in the object store go out of scope or are lost, the actor restart will fail. See "
    "https://github.com/ray-project/ray/issues/53727 for more details.",
    "Detected that the Ray Train controller actor (0a7b060429489434fdf2d76901000000) is dead. Cleaning up placement "
    "group = [PlacementGroupID(7442462c21e810454932d2d9b42201000000)] created by this run.",
    "Checkpoint successfully created at: Checkpoint(filesystem=local, path=/tmp/x/checkpoint_000000)",
    "WARNING: 10 PYTHON worker processes have been started on node: 8129 with address: 192.0.2.2, which is 5x the "
    "maximum expected startup concurrency (2). This could be a result of using a large number of actors, or due to "
    "tasks blocked in ray.get() calls (see https://github.com/ray-project/ray/issues/3644 for some discussion of workarounds).",
]
KEPT = [  # what a user must still see
    "Traceback (most recent call last):",
    "RuntimeError: CUDA out of memory",
    "Task was killed due to the node running low on memory. Memory on the node (IP: 10.0.0.1) was 7.5GB / 8GB",
    "A worker died or was killed while executing a task by an unexpected system error.",
    "Checkpoint failed: Checkpoint(filesystem=local, path=/x)",
    "[2026-12-02 00:53:03,379 E 15199 15398] core_worker.cc:2465: Actor with class name: 'Trainer' died: OOM",
]


@pytest.mark.parametrize("line", NOISE)
def test_known_ray_noise_is_dropped(line: str) -> None:
    assert is_benign(line)


@pytest.mark.parametrize("line", KEPT)
def test_real_errors_are_kept(line: str) -> None:
    assert not is_benign(line)


LOST_PEER_TRACEBACK = [  # a DDP worker whose peer's node was SIGKILLed (tests/test_node_loss.py, Ray 2.60, torch 2.14)
    "Error in training function:",
    "Traceback (most recent call last):",
    '  File "/work/main/raymlops/training/loop.py", line 142, in _step',
    "    loss.backward()",
    "RuntimeError: [/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:545] Read error [127.0.0.1]:48281: "
    "Connection reset by peer. This is typically caused by a remote worker hanging or bugs in the application.",
    "",
]


def test_a_lost_nodes_paragraphs_are_dropped_or_cut_to_a_line() -> None:
    assert kept_lines([*LOST_PEER_TRACEBACK, "epoch 2 done"]) == ["epoch 2 done"]
    bug = [*LOST_PEER_TRACEBACK[:4], "RuntimeError: CUDA out of memory", ""]
    assert kept_lines(bug) == bug, "a worker's own error is kept whole"
    shutdown = ["Graceful shutdown of backend failed. This is expected if one of the workers has crashed.", "  File x", ""]
    assert kept_lines(shutdown) == []
    raylet = [
        "Raylet is terminated. Termination is unexpected. Possible reasons include: (1) SIGKILL by the user or system OOM killer",
        "    [state-dump] \tNodeManager.deadline_timer.flush_free_objects - 1 total (1 active)",
        "    [2026-12-04 21:49:02,556 I 19027 19027] (raylet) accessor.cc:475: Received address and liveness notification",
        "next",
    ]
    assert kept_lines(raylet) == ["Raylet is terminated. Termination is unexpected (the rest is in its raylet log)", "next"]
    dead = (
        "The node with node id: 275998e4b0d63fc98580a695b40beb565afa88072c4678a50e943c9a and address: 192.0.2.2 and node "
        "name: 192.0.2.2 has been marked dead because the detector has missed too many heartbeats from it. This can happen "
        "when a \t(1) raylet crashes unexpectedly (OOM, etc.) \n\t(2) raylet has lagging heartbeats"
    )
    (line,) = kept_lines([dead])
    assert line.startswith("The node with node id: 275998e4") and line.endswith("heartbeats (the rest is in its raylet log)")
    pg = "[2026-12-04 21:58:14,126 E 27539 27539] (gcs_server) gcs_placement_group_scheduler.cc:273: Failed to remove 1 "
    assert kept_lines([pg + "bundle(s) for placement group 6cd282b3510f at node 9ffdc9b2, rpc status: Unavailable"]) == []


def test_verbose_flag_and_progress_choice() -> None:
    assert compose(["+experiment=smoke", "-v"]).console.verbose is True
    console = compose(["+experiment=smoke"]).console
    assert console.verbose is False and console.progress == "auto"
    from raymlops.core.errors import UserError

    with pytest.raises(UserError, match=r"console\.progress"):
        compose(["+experiment=smoke", "console.progress=fancy"])


def test_dashboard_line_says_how_to_sign_in_without_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    import raymlops.launch.ray_output as ray_output

    monkeypatch.setattr(ray_output, "token_auth_on", lambda: True)
    line = dashboard_line("127.0.0.1:8265")
    assert line.startswith("dashboard: http://127.0.0.1:8265") and "ray get-auth-token" in line
    monkeypatch.setattr(ray_output, "token_auth_on", lambda: False)
    assert dashboard_line("127.0.0.1:8265") == "dashboard: http://127.0.0.1:8265"


def _trial(i: int, status: str = "RUNNING", epoch: int = 0) -> Any:
    return SimpleNamespace(
        trial_id=f"t{i}", config={"optim.lr": 0.01 * (i + 1)}, status=status, last_result={"epoch": epoch}, path="/p"
    )


def test_plain_progress_one_line_per_event(capsys: pytest.CaptureFixture[str]) -> None:
    p = SearchProgress("val_acc", "max", max_epochs=2, num_samples=3, style="plain")
    p.setup()
    trials = [_trial(0), _trial(1)]
    for t in trials:
        p.on_trial_start(0, trials, t)
    p.on_trial_result(0, trials, trials[0], {"val_acc": 0.31, "epoch": 1})
    p.on_trial_result(0, trials, trials[1], {"val_acc": 0.12, "epoch": 1})
    trials[1].status, trials[1].last_result = "TERMINATED", {"epoch": 1}
    p.on_trial_complete(0, trials, trials[1])
    trials[0].status = "ERROR"
    p.on_trial_error(0, trials, trials[0])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + 2 + 2 + 2, lines
    assert "trial t0 started (optim.lr=0.01)" in lines[1] and "2 running" in lines[1]
    assert "trial t0 epoch 1/2 val_acc=0.3100" in lines[3] and "best val_acc=0.3100 (t0)" in lines[3]
    assert "trial t1 stopped at epoch 1 | 1/3 done (0 finished, 1 stopped early, 0 failed), 1 running" in lines[5]
    assert "trial t0 FAILED" in lines[6] and "2/3 done (0 finished, 1 stopped early, 1 failed), 0 running" in lines[6]
    assert "elapsed" in lines[6] and "left" in lines[6]


def test_a_restart_ray_train_did_gets_one_line_and_a_pause_none(capsys: pytest.CaptureFixture[str]) -> None:
    """A lane's workers restarted by Ray Train (the trial's driver lives on: Tune saw nothing) show in the restart
    counter of its results; a resume after a pause or a retry Tune did starts the trial again (a new baseline)."""
    p = SearchProgress("val_acc", "max", max_epochs=4, num_samples=1, style="plain")
    trials = [_trial(0)]
    p.on_trial_start(0, trials, trials[0])
    p.on_trial_result(0, trials, trials[0], {"val_acc": 0.2, "epoch": 1, "restarts": 0})
    p.on_trial_result(0, trials, trials[0], {"val_acc": 0.3, "epoch": 2, "restarts": 1})
    p.on_trial_start(0, trials, trials[0])  # paused and resumed: its restart counter went up, nothing was lost
    p.on_trial_result(0, trials, trials[0], {"val_acc": 0.4, "epoch": 3, "restarts": 2})
    lost = [line for line in capsys.readouterr().out.splitlines() if "restarted by Ray Train" in line]
    assert len(lost) == 1, lost
    assert (
        "trial t0's worker group was restarted by Ray Train (a node or worker lost or preempted): it continues from epoch 1 (restart 1)"
        in lost[0]
    )


def test_live_table_shows_each_running_trial() -> None:
    p = SearchProgress("val_acc", "max", max_epochs=4, num_samples=8, style="plain")
    trials = [_trial(0), _trial(1)]
    p.on_trial_result(0, trials, trials[0], {"val_acc": 0.25, "epoch": 2})
    from rich.console import Console

    console = Console(width=160, record=True)
    console.print(p._render())
    text = console.export_text()
    assert "0/8 done" in text and "2 running" in text and "best val_acc=0.2500 (t0)" in text
    assert "2/4" in text and "0.2500" in text and "starting" in text


def test_left_estimate() -> None:
    assert left_estimate(60.0, 0, 8) == "?"
    assert left_estimate(60.0, 2, 8) == "~3m00s"
    assert left_estimate(60.0, 8, 8) == "0m00s"


ENDED_ACTOR_TRACEBACK = [  # a reused Tune actor ended with SIGTERM after the search (Ray 2.60, Python 3.11)
    "Exception ignored in: <function WeakSet.__init__.<locals>._remove at 0x7ff9c4346480>",
    "Traceback (most recent call last):",
    '  File "/root/.pyenv/versions/3.11.7/lib/python3.11/_weakrefset.py", line 39, in _remove',
    "    def _remove(item, selfref=ref(self)):",
    "",
    '  File "/work/main/.venv/lib/python3.11/site-packages/ray/_private/worker.py", line 1063, in sigterm_handler',
    "    raise_sys_exit_with_custom_error_message(",
    '  File "python/ray/_raylet.pyx", line 712, in ray._raylet.raise_sys_exit_with_custom_error_message',
    "SystemExit: 1",
]


def test_an_ended_actors_sigterm_traceback_is_dropped_and_other_ignored_exceptions_kept() -> None:
    assert kept_lines([*ENDED_ACTOR_TRACEBACK, "Done"]) == ["Done"]
    other = [ENDED_ACTOR_TRACEBACK[0], "Traceback (most recent call last):", '  File "x.py", line 1, in f', "KeyError: 1"]
    assert kept_lines(other) == other, "an exception ignored for another reason is still shown"
    no_exit = ENDED_ACTOR_TRACEBACK[:-1]
    assert kept_lines(no_exit) == no_exit, "cut off before its SystemExit line: kept"
