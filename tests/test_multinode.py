"""Two Ray nodes on loopback: the laptop command with RAY_ADDRESS spreads trials over both, and
`make submit` (`ray job submit --working-dir .`) runs the same search as a Ray job.

Both nodes are `ray start` processes of our own (1 CPU each, every port pinned in raynodes.PORTS),
started with the venv first on PATH: a job's `python` entrypoint is looked up on the PATH that
`ray start` had. They are stopped by session, never with `ray stop`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import overrides
from faultkit import trial_runs
from helpers import free_ports, wait_until
from raynodes import (
    PORTS,
    PORTS_PER_NODE,
    REPO,
    RayNode,
    alive_nodes,
    client_env,
    head_args,
    node_env,
    run_module,
    short_temp_dir,
    trial_nodes,
    worker_args,
)

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[dict[str, Any]]:
    """A head and a worker node, 1 CPU each, on 127.0.0.1: their GCS address, dashboard URL, node ids."""
    gcs_port, dashboard_port, client_port, *ports = free_ports(3 + 2 * PORTS_PER_NODE, PORTS)
    gcs, tmp = f"127.0.0.1:{gcs_port}", short_temp_dir()
    env = node_env(RAY_API_SERVER_ADDRESS=f"http://127.0.0.1:{dashboard_port}")  # this cluster's state API, not another's
    head = RayNode(
        head_args(gcs_port, dashboard_port, client_port, ports[:PORTS_PER_NODE], tmp, cpus=1),
        env,
        tmp / "head.log",
    )
    nodes = [head]
    try:
        wait_until(lambda: len(alive_nodes(gcs)) == 1, 60, what="the head node", log=head.log)
        nodes.append(RayNode(worker_args(gcs, ports[PORTS_PER_NODE:], tmp / "w", cpus=1), env, tmp / "worker.log"))
        wait_until(lambda: len(alive_nodes(gcs)) == 2, 60, what="the second node", log=nodes[1].log)
        yield {"gcs": gcs, "dashboard": f"http://127.0.0.1:{dashboard_port}", "nodes": set(alive_nodes(gcs))}
    finally:
        for node in reversed(nodes):
            node.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def test_search_with_ray_address_spreads_trials_over_both_nodes(
    two_nodes: dict[str, Any], store: dict[str, str], tmp_path: Path
) -> None:
    args = overrides(store, "+experiment=smoke", "tune.num_samples=4", "evaluate.enabled=false")
    code, out = run_module("raymlops.tune", args, client_env(RAY_ADDRESS=two_nodes["gcs"]), tmp_path, timeout_s=180)
    assert code == 0, out[-6000:]
    assert "joined" in out and "2 at a time" in out, out[:2000]
    ran_on = trial_nodes(Path(store["storage_path"]))
    assert len(ran_on) == 4, ran_on
    used = set().union(*ran_on.values())
    assert used == two_nodes["nodes"], f"trials ran on {used}; the cluster's nodes are {two_nodes['nodes']}"


def test_make_submit_runs_the_search_as_a_ray_job(two_nodes: dict[str, Any], store: dict[str, str]) -> None:
    # `make -o install`: the suite already runs inside the installed venv; don't re-check it here.
    args = " ".join(overrides(store, "tune.num_samples=2", "evaluate.enabled=false"))
    cmd = ["make", "-s", "-o", "install", "submit", "EXP=smoke", f"RAY_ADDRESS={two_nodes['dashboard']}", f"ARGS={args}"]
    proc = subprocess.run(cmd, cwd=REPO, env=client_env(), capture_output=True, text=True, timeout=240)
    out = proc.stdout + proc.stderr
    (Path(store["storage_path"]).parent / "submit.log").write_text(out)
    assert proc.returncode == 0, out[-6000:]
    assert "succeeded" in out.lower(), out[-3000:]
    assert "Done: best val_acc=" in out, "the job's own output streams back to the submitter"
    ran_on = trial_nodes(Path(store["storage_path"]))
    assert len(ran_on) == 2 and set().union(*ran_on.values()) == two_nodes["nodes"], ran_on


# Another team's job on the cluster: two 1-CPU actors, held until its stdin closes.
OTHER_JOB = """
import sys, ray
ray.init(logging_level="ERROR")
Hold = ray.remote(num_cpus=1)(type("Hold", (), {"ping": lambda self: 1}))
held = [Hold.remote() for _ in range(2)]
ray.get([h.ping.remote() for h in held])
print("holding", flush=True)
sys.stdin.read()
"""


def test_a_search_beside_another_job_plans_on_what_is_free_and_says_it_waits(
    two_nodes: dict[str, Any], store: dict[str, str], tmp_path: Path
) -> None:
    """A search started while another job holds both CPUs plans 1 trial at a time, not 2, says its trials wait for
    resources that job holds (and when the wait is over), and runs once they are free: no silent stall."""
    env = client_env(RAY_ADDRESS=two_nodes["gcs"], PYTHONUNBUFFERED="1")
    other_log, log = tmp_path / "other-job.log", tmp_path / "search.log"
    with other_log.open("w") as out:
        plain_ray = {**env, "RAY_AUTH_MODE": "token"}  # plain Ray joins a token-auth cluster only with this set
        other = subprocess.Popen([sys.executable, "-c", OTHER_JOB], env=plain_ray, stdin=subprocess.PIPE, stdout=out, stderr=out)
    search = None
    try:
        wait_until(
            lambda: "holding" in other_log.read_text() or other.poll() is not None, 60, what="the other job", log=other_log
        )
        assert other.poll() is None, other_log.read_text()
        args = overrides(store, "+experiment=smoke", "tune.num_samples=2", "train.epochs=1", "evaluate.enabled=false")
        args += ["console.progress=plain", "console.wait_notice_s=2"]
        with log.open("w") as out:
            search = subprocess.Popen([sys.executable, "-m", "raymlops.tune", *args], env=env, cwd=REPO, stdout=out, stderr=out)
        wait_until(lambda: "have waited" in log.read_text() or search.poll() is not None, 120, what="the wait line", log=log)
        assert other.stdin is not None
        other.stdin.close()  # the other job ends: its CPUs are free
        code = search.wait(timeout=120)
    finally:
        for proc in (other, search):
            if proc is not None and proc.poll() is None:
                proc.kill()
    out = log.read_text()
    assert code == 0, out[-4000:]
    plan = "Other jobs on this cluster hold 2 CPU of its 2 CPU now: planning 1 worker group(s) of 1 x 1 CPU at a time, not 2"
    assert plan in out and "this search's trials wait until they free some" in out and "1 at a time" in out, out[:3000]
    assert "1 trial(s) have waited" in out and "other jobs hold about 2 CPU" in out, out[-4000:]
    assert "the wait for resources is over" in out, out[-3000:]
    runs = trial_runs(store["mlflow.tracking_uri"])
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs), [r.info.status for r in runs]


@pytest.mark.parametrize("case", ["no token", "wrong token", "nobody listens"])
def test_joining_without_the_right_token_or_head_fails_in_one_line(two_nodes: dict[str, Any], tmp_path: Path, case: str) -> None:
    """A token-auth cluster refuses a client without its token: one line naming what to set, exit 2, no
    traceback and none of Ray's GCS retry lines (ray.init alone retries for a minute)."""
    env = client_env(RAY_ADDRESS=two_nodes["gcs"], HOME=str(tmp_path))  # HOME: no ~/.ray/auth_token either
    env.pop("RAY_AUTH_TOKEN_PATH")
    expected = "no token was found here"
    if case == "wrong token":
        env["RAY_AUTH_TOKEN"], expected = "not-this-clusters-token", "refused the token found in RAY_AUTH_TOKEN"
    elif case == "nobody listens":
        env["RAY_ADDRESS"], expected = f"127.0.0.1:{free_ports(1, PORTS)[0]}", "Nothing answers at 127.0.0.1:"
    started = time.monotonic()
    code, out = run_module("raymlops.tune", ["+experiment=smoke", f"storage_path={tmp_path}/rr"], env, tmp_path, timeout_s=45)
    elapsed = time.monotonic() - started
    errors = [line for line in out.splitlines() if line.startswith("raymlops: error:")]
    assert code == 2 and len(errors) == 1 and expected in errors[0], out[-3000:]
    assert "RAY_AUTH_TOKEN_PATH" in errors[0] or case == "nobody listens", errors[0]
    assert "Traceback" not in out and "InvalidAuthToken" not in out and "gcs_client" not in out, out[-3000:]
    print(f"{case}: {elapsed:.1f} s: {errors[0]}")
