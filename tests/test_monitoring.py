"""Monitoring of the served champion: the drift figure (population stability index) against the test-set
baseline recorded at registration, and the per-version window statistics the router exports."""

from __future__ import annotations

import pytest

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
    import subprocess

    from conftest import REPO

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (apt-get install -y prometheus)")
    for args in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"]):
        done = subprocess.run([promtool, *args], cwd=REPO / "monitoring", capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
