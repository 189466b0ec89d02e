"""Monitoring of the served champion: the drift figure (population stability index) against the test-set
baseline recorded at registration, and the per-version window statistics the router exports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import REPO, overrides, register_smoke_models, smoke_images
from helpers import free_port, log_tail, wait_until

from raymlops import tracking
from raymlops.core.names import TAG_ROLE
from raymlops.serving.drift import Reference, psi, shares
from raymlops.serving.stats import ServingStats

UNIFORM = {f"class_{i}": 0.1 for i in range(10)}


def test_psi_is_zero_for_the_same_mix_and_large_for_one_class() -> None:
    assert psi(UNIFORM, {k: 7 for k in UNIFORM}) == pytest.approx(0.0, abs=1e-12)  # counts are normalised
    assert psi(UNIFORM, {"class_3": 50}) > 2.0  # everything predicted as one class: far over the 0.25 alert
    mild = {**{k: 0.1 for k in UNIFORM}, "class_0": 0.14, "class_1": 0.06}
    assert 0.0 < psi(UNIFORM, mild) < 0.1
    assert psi({}, {"a": 1}) == 0.0 and psi(UNIFORM, {}) == 0.0
    assert psi(UNIFORM, {"never_seen": 1}) > 0  # a label outside the baseline counts, floored, no log(0)


def test_reference_round_trip_and_window_stats() -> None:
    ref = Reference(dict(UNIFORM), 0.8, 400)
    assert Reference.from_json(ref.to_json()) == ref
    stats = ServingStats(drift_window=20)
    for i in range(40):
        stats.record("1", 5.0, [f"class_{i % 10}"], confidences=[0.5])
    stats.references["1"] = ref
    assert stats.metrics()["drift.v1"] == pytest.approx(0.0, abs=1e-12)
    for _ in range(20):  # the window (20) now holds one class only
        stats.record("1", 5.0, ["class_3"], confidences=[0.9])
    m = stats.metrics()
    assert m["drift.v1"] > 2.0 and m["mean_confidence.v1"] == pytest.approx(0.9) and m["requests.v1"] == 60
    assert shares(["a", "a", "b"]) == {"a": 2 / 3, "b": 1 / 3}


def test_alert_rules_check_and_unit_tests() -> None:
    """monitoring/alerts.yml is valid and its promtool unit tests (monitoring/alerts_test.yml) pass."""
    import shutil

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (apt-get install -y prometheus)")
    for args in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"]):
        done = subprocess.run([promtool, *args], cwd=REPO / "monitoring", capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def smoke_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return register_smoke_models(tmp_path_factory.mktemp("monitoring"))


@pytest.mark.ray
def test_ctrl_c_stops_serving_and_finishes_the_run(smoke_models: dict[str, Any], tmp_path: Path) -> None:
    """`python -m raymlops.serve` as a user runs it, in its own process group: a few image requests, then SIGINT
    to the group (what Ctrl-C in a terminal sends). It exits within 15 s and its serve run is FINISHED with the
    last interval's figures (log_interval_s is 600: only the stop path can have written them)."""
    port = free_port()
    cmd = [sys.executable, "-m", "raymlops.serve", "+experiment=smoke", f"serve.port={port}", "serve.log_interval_s=600"]
    log = tmp_path / "serve.log"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd + overrides(smoke_models["store"]),
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: "Serving " in log.read_text(), 180, what="serve to print its URL", proc=proc, log=log)
        pngs, _, _ = smoke_images(3)
        for png in pngs:
            reply = requests.post(f"{url}/predict", data=png, headers={"Content-Type": "image/png"}, timeout=30)
            assert reply.status_code == 200, reply.text
        started = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        rc = proc.wait(timeout=15)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    print(f"stopped in {took:.1f} s, rc {rc}")
    assert rc == 0, log_tail(log)
    c = tracking.client(smoke_models["uri"])
    exp = c.get_experiment_by_name("raymlops-smoke")
    runs = c.search_runs([exp.experiment_id], filter_string=f"tags.`{TAG_ROLE}` = 'serve'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED", log_tail(log)
    assert runs[0].data.metrics.get("requests.v1") == 3, runs[0].data.metrics
    assert "latency_p95_ms.v1" in runs[0].data.metrics
