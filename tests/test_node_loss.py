"""A worker node lost mid-search, as a spot reclaim loses it: its whole `ray start` session SIGKILLed; and one
announced first, as the autoscaler and KubeRay announce a spot reclaim (`ray drain-node`, reason preemption).

A token-auth cluster of two 1-CPU `ray start` nodes on 127.0.0.1 (head + worker), so a 2-worker DDP lane
has a worker on each node (gloo over loopback): the lane spans two nodes, and losing the worker node takes
half of every running trial's worker group with it. A replacement node joins once the GCS has marked the
lost one dead. Every trial must finish, each epoch logged exactly once, the restart counted, and the
search must exit 0 only because nothing was lost.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import overrides
from faultkit import epoch_steps, finish, trial_runs
from helpers import free_ports, wait_until
from raynodes import (
    PORTS,
    PORTS_PER_NODE,
    REPO,
    VENV_BIN,
    RayNode,
    alive_nodes,
    client_env,
    head_args,
    node_env,
    short_temp_dir,
    worker_args,
)

from raymlops import tracking
from raymlops.core.names import TAG_RESTARTS, TAG_WORKER_NODES
from raymlops.training.tracked_run import RESUMES

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(420)]
EPOCHS = 3
# The GCS marks a node dead after failure_threshold missed health checks (Ray's default: 5 x 3 s after a
# 5 s delay); a real cluster keeps the defaults, the test waits less.
FAST_HEALTH_CHECKS = {
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
    "RAY_TRAIN_PREEMPTION_POLL_INTERVAL_S": "1",  # Ray Train's drain poll (default 5 s): the notice sooner
}


@pytest.fixture
def cluster() -> Iterator[dict[str, Any]]:
    """Head and worker, 1 CPU each; `replace()` starts a new worker node on fresh ports."""
    gcs_port, dashboard_port, client_port, *ports = free_ports(3 + 3 * PORTS_PER_NODE, PORTS)
    gcs, tmp = f"127.0.0.1:{gcs_port}", short_temp_dir()
    env = node_env(RAY_API_SERVER_ADDRESS=f"http://127.0.0.1:{dashboard_port}", **FAST_HEALTH_CHECKS)
    nodes = [
        RayNode(head_args(gcs_port, dashboard_port, client_port, ports[:PORTS_PER_NODE], tmp, cpus=1), env, tmp / "head.log")
    ]

    def add_worker(i: int) -> RayNode:
        node = RayNode(
            worker_args(gcs, ports[i * PORTS_PER_NODE : (i + 1) * PORTS_PER_NODE], tmp / f"w{i}", cpus=1), env, tmp / f"w{i}.log"
        )
        nodes.append(node)
        return node

    try:
        wait_until(lambda: len(alive_nodes(gcs)) == 1, 60, what="the head node", log=nodes[0].log)
        (head_id,) = alive_nodes(gcs)
        worker = add_worker(1)
        wait_until(lambda: len(alive_nodes(gcs)) == 2, 60, what="the worker node", log=worker.log)
        (worker_id,) = set(alive_nodes(gcs)) - {head_id}
        yield {"gcs": gcs, "worker": worker, "worker_id": worker_id, "replace": lambda: add_worker(2), "tmp": tmp}
    finally:
        for node in reversed(nodes):
            node.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def epochs_logged(uri: str) -> int:
    c = tracking.client(uri)
    return sum(len(epoch_steps(c, r.info.run_id)) for r in trial_runs(uri))


def search_past_its_first_epoch(
    cluster: dict[str, Any], store: dict[str, str], log: Path, *extra: str
) -> subprocess.Popen[bytes]:
    """`raymlops.tune` of 2-worker DDP trials (FIFO) joined to the cluster by address, returned once a trial has
    logged its first epoch (killed if it ends or stalls before)."""
    # 32 px (smoke is 16): these searches' epochs were sized at 32 px, so that a loss or notice lands while trials train
    args = overrides(store, "+experiment=smoke", "scheduler=fifo", "evaluate.enabled=false", "data.image_size=32", *extra)
    with log.open("w") as out:
        search = subprocess.Popen(
            [sys.executable, "-m", "raymlops.tune", *args],
            env=client_env(RAY_ADDRESS=cluster["gcs"], PYTHONUNBUFFERED="1"),
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    uri = store["mlflow.tracking_uri"]
    try:
        wait_until(lambda: epochs_logged(uri) >= 1 or search.poll() is not None, 240, what="a trial's first epoch", log=log)
        assert search.poll() is None, log.read_text()[-4000:]
    except BaseException:
        search.kill()
        raise
    return search


@pytest.mark.parametrize("workers", [2, 1], ids=["DDP lanes", "1-worker trials"])
def test_a_lost_worker_node_loses_no_trial_and_no_epoch(
    cluster: dict[str, Any], store: dict[str, str], tmp_path: Path, workers: int
) -> None:
    """DDP lanes span both nodes: the loss takes half of each. 1-worker trials train in their Tune actors, one per
    node: the loss takes the one there, which Tune retries on the replacement."""
    uri = store["mlflow.tracking_uri"]
    log = tmp_path / "search.log"
    search = search_past_its_first_epoch(
        cluster, store, log, f"scaling.num_workers={workers}", "tune.num_samples=2", f"train.epochs={EPOCHS}",
        "train.max_failures=2",
    )  # fmt: skip
    try:
        c = tracking.client(uri)
        if workers == 1:  # a trial per node: lose the worker node once both have a checkpoint to continue from
            wait_until(lambda: [len(epoch_steps(c, r.info.run_id)) > 0 for r in trial_runs(uri)] == [True] * 2, 120,
                       what="both trials' first epochs", log=log)  # fmt: skip
        lost_at = epochs_logged(uri)
        cluster["worker"].lose()
        wait_until(lambda: len(alive_nodes(cluster["gcs"])) == 1, 60, what="the GCS to mark the lost node dead")
        replacement = cluster["replace"]()
        wait_until(lambda: len(alive_nodes(cluster["gcs"])) == 2, 60, what="the replacement node", log=replacement.log)
        text = finish(search, log, timeout_s=300)
    finally:
        if search.poll() is None:
            search.kill()
    runs = trial_runs(uri)
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs), [(r.info.run_id, r.info.status) for r in runs]
    for run in runs:
        assert epoch_steps(c, run.info.run_id) == list(range(1, EPOCHS + 1)), "each epoch logged exactly once"
    spans = [r.data.tags.get(TAG_WORKER_NODES) for r in runs]
    assert spans == [str(workers)] * 2, f"a lane spans both 1-CPU nodes, after the loss too: {spans}"
    restarts = [int(r.data.tags.get(TAG_RESTARTS, 0)) for r in runs]
    assert sum(restarts) >= 1, f"the trial on the lost node counts its restart: {restarts}"
    print(f"lost the worker node after {lost_at} logged epoch(s); restarts per trial: {restarts}")
    events = [line for line in text.splitlines() if "continues from epoch" in line]
    # A lane's surviving rank fails the trial (its collectives are out of step): Tune retries it on the restarted lane
    assert events and all("lost: trial" in line and "(retry " in line and " of 2)" in line for line in events), text[-4000:]
    assert "Trial task failed for trial" not in text, "one line per event from raymlops, not Tune's traceback"
    for ray_paragraph in ("Error in training function", "Graceful shutdown of backend failed", "[state-dump]"):
        assert ray_paragraph not in text, f"Ray's paragraph about the lost node ({ray_paragraph}) is not forwarded"
    print("\n".join(events))


DRAIN_DEADLINE_S = 20


@pytest.mark.parametrize("workers", [2, 1], ids=["DDP lane", "1-worker trials"])
def test_a_preemption_notice_moves_the_trial_before_the_node_goes(
    cluster: dict[str, Any], store: dict[str, str], tmp_path: Path, workers: int
) -> None:
    """`ray drain-node` with reason preemption and a deadline on the worker node, once a trial there has logged an
    epoch; a replacement joins at once, as the autoscaler adds one. The trial trains no further on the drained
    node and resumes elsewhere from the epoch it had checkpointed. A DDP lane (over both nodes) waits for the
    deadline, when Ray Train moves it to the head and the replacement. 1-worker trials (one per node) train in
    their Tune actors: the one on the drained node is paused by the search's scheduler at its epoch boundary and
    resumed on the replacement at once. Nothing is trained twice or lost, and the move is not charged to
    train.max_failures (0 here: a failure would end the trial). The reclaim itself (the node's processes killed)
    is the node-loss test above; `ray drain-node` kills nothing."""
    uri = store["mlflow.tracking_uri"]
    epochs = 4
    log = tmp_path / "search.log"
    search = search_past_its_first_epoch(
        cluster,
        store,
        log,
        f"scaling.num_workers={workers}",
        f"tune.num_samples={3 - workers}",  # a lane over both nodes, or a 1-worker trial per node
        f"train.epochs={epochs}",
        "data.num_train=6000",  # epochs of ~9 s: the notice (`ray drain-node`'s start-up + Ray's poll) lands mid-epoch
        "train.max_failures=0",
    )
    c = tracking.client(uri)
    try:
        if workers == 1:
            wait_until(lambda: [len(epoch_steps(c, r.info.run_id)) > 0 for r in trial_runs(uri)] == [True] * 2, 120,
                       what="both trials' first epochs", log=log)  # fmt: skip
        drained_at = drain(cluster)
        replacement = cluster["replace"]()
        wait_until(lambda: len(alive_nodes(cluster["gcs"])) == 3, 60, what="the replacement node", log=replacement.log)
        noticed = wait_until(
            lambda: "is being preempted" in log.read_text() or search.poll() is not None,
            60,
            what="the preemption notice",
            log=log,
        )
        assert noticed and search.poll() is None, log.read_text()[-4000:]
        text = finish(search, log, timeout_s=300)
    finally:
        if search.poll() is None:
            search.kill()
    runs = trial_runs(uri)
    assert all(r.info.status == "FINISHED" and epoch_steps(c, r.info.run_id) == list(range(1, epochs + 1)) for r in runs)
    notice_node, moved_from, moved_run = preemption_notice(log)
    (run,) = [r for r in runs if r.info.run_id == moved_run]
    resumes = [(m.step, m.value) for m in c.get_metric_history(run.info.run_id, RESUMES)]
    assert resumes == [(moved_from, 1.0)], f"one restart, from the epoch checkpointed at the notice: {resumes}"
    after = {m.step: m.timestamp / 1000 for m in c.get_metric_history(run.info.run_id, "val_acc")}
    if workers == 2:
        assert after[moved_from + 1] >= drained_at + DRAIN_DEADLINE_S - 2, "trained after the move, not on the drained node"
        assert "worker group was restarted by Ray Train (a node or worker lost or preempted): it continues from" in text
    else:
        drained = cluster["worker_id"]
        assert notice_node == drained[:12], "the notice names the drained node"
        # Tune's result.json once lacked the row of the result that paused the trial (a CI run): the epochs
        # found there put the trial on the drained node up to the notice, and every later epoch elsewhere.
        nodes = epoch_nodes(Path(store["storage_path"]), moved_run)
        on_drained = [e for e, node in nodes.items() if node == drained]
        assert on_drained and max(on_drained) <= moved_from, f"trained on the drained node up to the notice: {nodes}"
        assert set(range(moved_from + 1, epochs + 1)) <= set(nodes), f"every epoch after the move is in Tune's results: {nodes}"
        assert drained not in [nodes[e] for e in range(moved_from + 1, epochs + 1)], nodes
        # left at the first epoch boundary after the notice: the epoch before it had ended before the drain. (Not "before
        # the deadline": a CI run's loaded cores stretched the 9-s epochs to 25 s, past the 20-s deadline; an epoch
        # longer than the deadline is lost with a reclaimed node, and `ray drain-node` reclaims nothing.)
        assert after.get(moved_from - 1, 0.0) < drained_at, f"left at the first epoch boundary after the notice: {after}"
    print(
        f"notice at epoch {moved_from}; epoch {moved_from + 1} logged {after[moved_from + 1] - drained_at:.1f} s after the drain"
    )


def drain(cluster: dict[str, Any]) -> float:
    """`ray drain-node` of the worker node, reason preemption, DRAIN_DEADLINE_S to go; the time it was accepted."""
    cmd = [str(VENV_BIN / "ray"), "drain-node", "--address", cluster["gcs"], "--node-id", cluster["worker_id"]]
    cmd += ["--reason", "DRAIN_NODE_REASON_PREEMPTION", "--reason-message", "spot reclaim (test)"]
    cmd += ["--deadline-remaining-seconds", str(DRAIN_DEADLINE_S)]
    done = subprocess.run(cmd, env=node_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return time.time()


def epoch_nodes(storage: Path, run_id: str) -> dict[int, str]:
    """Epoch -> the node it was trained on, from Tune's result.json of the trial that logs to MLflow run run_id."""
    rows = [json.loads(line) for f in storage.rglob("result.json") for line in f.read_text().splitlines() if line.strip()]
    return {int(r["epoch"]): r["node_id"] for r in rows if r.get("mlflow_run_id") == run_id}


def preemption_notice(log: Path) -> tuple[str, int, str]:
    """What the search's preemption notice names: the node (id prefixes), the epoch the trial was checkpointed at,
    and the trial's MLflow run."""
    found = re.search(
        r"node (\w+(?:, \w+)*) is being preempted .*checkpointed at epoch (\d+) \(MLflow run (\w+)\)", log.read_text()
    )
    assert found, "the notice names the node, the checkpointed epoch and the trial's MLflow run"
    return found.group(1), int(found.group(2)), found.group(3)
