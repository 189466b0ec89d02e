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


def test_grafana_provisioning_loads_the_committed_dashboards() -> None:
    """monitoring/grafana: the datasource is the Prometheus the dashboards select, the raymlops provider's folder
    holds raymlops-serving.json (and not Ray's copies, which have a provider of their own), every panel has a query."""
    import json

    import yaml

    grafana = REPO / "monitoring" / "grafana"
    (source,) = yaml.safe_load((grafana / "provisioning" / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert (source["name"], source["uid"], source["type"]) == ("Prometheus", "prometheus", "prometheus")
    providers = yaml.safe_load((grafana / "provisioning" / "dashboards" / "raymlops.yml").read_text())["providers"]
    paths = {p["name"]: Path(p["options"]["path"].replace("${RAYMLOPS_REPO}", str(REPO))) for p in providers}
    assert paths["raymlops"] == DASHBOARD.parent and paths["Ray"] == grafana / "ray-dashboards"
    assert not paths["Ray"].is_relative_to(paths["raymlops"])  # a provider reads its folder recursively
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] == "raymlops-serving" and all(p["targets"] and p["targets"][0]["expr"] for p in board["panels"])


@pytest.fixture(scope="module")
def smoke_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return register_smoke_models(tmp_path_factory.mktemp("monitoring"))


@pytest.mark.ray
def test_ctrl_c_stops_serving_and_finishes_the_run(smoke_models: dict[str, Any], tmp_path: Path) -> None:
    """`python -m raymlops.serve` as a user runs it, in its own process group: a few image requests, then SIGINT
    to the group (what Ctrl-C in a terminal sends). It exits within 10 s and its serve run is FINISHED with the
    last interval's figures (log_interval_s is 600: only the stop path can have written them). Started with
    SIGINT ignored, as under a CI script: before serve set its own handlers, Ctrl-C did nothing there."""
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
            # as a script's background job starts it: SIGINT ignored, which Python then inherits (serve sets it)
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
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
    assert took < 10, f"stopping took {took:.1f} s\n{log_tail(log)}"
    c = tracking.client(smoke_models["uri"])
    exp = c.get_experiment_by_name("raymlops-smoke")
    runs = c.search_runs([exp.experiment_id], filter_string=f"tags.`{TAG_ROLE}` = 'serve'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED", log_tail(log)
    assert runs[0].data.metrics.get("requests.v1") == 3, runs[0].data.metrics
    assert "latency_p95_ms.v1" in runs[0].data.metrics


# --- live: Ray Serve -> Ray's metrics ports -> Prometheus (raymlops.monitoring, as `make monitoring` starts it) ----

DASHBOARD = REPO / "monitoring" / "grafana" / "dashboards" / "raymlops-serving.json"
WINDOW = 100  # serve.drift_window: 5 requests x 20 images fill it
METRICS_INTERVAL_ENV = "RAY_metrics_report_interval_ms"  # Ray's config from the environment (RayConfig, lower case)


def _key_for(alias: str) -> str:
    """An X-Request-Key the router sends to `alias` at challenger_traffic 0.5 (the split is a hash of the key)."""
    import random

    from raymlops.serving.routing import pick_alias

    return next(
        k for k in (f"key{i}" for i in range(100)) if pick_alias(k, 0.5, "champion", "challenger", random.Random()) == alias
    )


def _body(images: list[bytes]) -> dict[str, Any]:
    import base64

    return {"dataframe_split": {"columns": ["image"], "data": [[base64.b64encode(im).decode()] for im in images]}}


def _query(url: str, expr: str) -> list[dict[str, Any]]:
    reply = requests.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10)
    assert reply.status_code == 200, f"{expr}: {reply.status_code} {reply.text[:300]}"
    return list(reply.json()["data"]["result"])


def _by(url: str, expr: str, label: str) -> dict[str, float]:
    return {r["metric"].get(label, ""): float(r["value"][1]) for r in _query(url, expr)}


def _test_rules(tmp: Path) -> Path:
    """monitoring/alerts.yml with every `for:` at 2 s: the drift rule's 10 min is the production setting."""
    import yaml

    doc = yaml.safe_load((REPO / "monitoring" / "alerts.yml").read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            rule["for"] = "2s"
    path = tmp / "alerts-test.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def ray_env() -> Any:
    """Set before this module's Ray starts: its processes push metrics to their node's agent every second (not every
    10 s), and its dashboard reads the Prometheus the live fixture starts on this port (RAY_PROMETHEUS_HOST)."""
    port = free_port()
    env = {METRICS_INTERVAL_ENV: "1000", "RAY_PROMETHEUS_HOST": f"http://127.0.0.1:{port}"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield port
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def live(ray_env: int, smoke_models: dict[str, Any], ray_session: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One Serve app (v1 @champion, v2 @challenger at 50 %) and one Prometheus (1 s scrape and evaluation, the test
    rules) over this cluster's own service-discovery file, shared by the live tests; both stopped at the end."""
    import shutil

    from raymlops import monitoring
    from raymlops.config import compose
    from raymlops.ray_internals import session_dir
    from raymlops.serving.app import start, stop

    if shutil.which("prometheus") is None:
        pytest.skip("no prometheus binary (apt-get install -y prometheus)")
    tmp = tmp_path_factory.mktemp("prometheus")
    session = session_dir()
    assert session is not None
    sd_file = session / "prom_metrics_service_discovery.json"
    settings = monitoring.Settings(port=ray_env, sd_file=str(sd_file), rules=(str(_test_rules(tmp)),), interval="1s")
    config = compose(
        overrides(
            smoke_models["store"],
            "+experiment=smoke",
            f"serve.port={free_port()}",
            "serve.challenger_traffic=0.5",
            "serve.max_replicas=1",
            f"serve.drift_window={WINDOW}",
            "serve.log_interval_s=600",
        )
    )
    served = start(config)
    try:
        url = monitoring.start(tmp, settings)
        yield {"url": url, "serve": served.url, "sent": {}, "images": 0}
    finally:
        monitoring.stop(tmp)
        stop(served)
        assert monitoring.pid(tmp) is None


def _send(live: dict[str, Any], alias: str, images: list[bytes], per_request: int = 20) -> None:
    """images to `alias`, per_request of them in each request (MLflow's dataframe_split JSON)."""
    for start in range(0, len(images), per_request):
        chunk = images[start : start + per_request]
        headers = {"X-Request-Key": _key_for(alias)}
        reply = requests.post(f"{live['serve']}/predict", json=_body(chunk), headers=headers, timeout=60)
        assert reply.status_code == 200 and reply.json()["alias"] == alias, reply.text[:300]
        live["sent"][alias] = live["sent"].get(alias, 0) + 1
        live["images"] += len(chunk)


@pytest.mark.ray
def test_prometheus_reads_requests_latency_and_classes_per_version(live: dict[str, Any]) -> None:
    """A/B traffic through Ray Serve, read back from the live Prometheus: requests per alias as sent, latency
    quantiles per version, every classified image in the class counts, drift of an unskewed stream under 0.25."""
    pngs, _, _ = smoke_images(WINDOW)
    for alias in ("champion", "challenger"):
        _send(live, alias, pngs)  # 5 requests of 20 distinct test images: a full window of the usual class mix
    url = live["url"]
    wait_until(
        lambda: _by(url, "sum by (alias) (ray_raymlops_serve_requests_total)", "alias") == {"champion": 5.0, "challenger": 5.0},
        60,
        what="Prometheus to count 5 requests per alias",
        context=lambda: f"targets: {requests.get(f'{url}/api/v1/targets', timeout=5).text[:500]}",
    )
    versions = _by(url, "sum by (model_version) (ray_raymlops_serve_requests_total)", "model_version")
    assert versions == {"1": 5.0, "2": 5.0}
    for quantile in (0.5, 0.95):
        expr = f"histogram_quantile({quantile}, sum by (le, model_version) (ray_raymlops_serve_latency_ms_bucket))"
        latency = _by(url, expr, "model_version")
        assert set(latency) == {"1", "2"} and all(0 < v < 60_000 for v in latency.values()), (quantile, latency)
    wait_until(
        lambda: _by(url, "sum(ray_raymlops_serve_predictions_total)", "") == {"": float(live["images"])},
        30,
        what="every classified image in the class counts",
    )
    classes = _by(url, 'sum by (predicted_class) (ray_raymlops_serve_predictions_total{model_version="1"})', "predicted_class")
    assert len(classes) > 2 and all(c.startswith("class_") for c in classes), classes
    drift = wait_until(lambda: _by(url, "max by (model_version) (ray_raymlops_serve_drift)", "model_version"), 30, what="drift")
    assert all(v < 0.25 for v in drift.values()), drift


@pytest.mark.ray
def test_ray_dashboard_reads_this_prometheus(live: dict[str, Any]) -> None:
    """Ray started with RAY_PROMETHEUS_HOST: its dashboard's metrics views find the Prometheus (the health check the
    dashboard's UI makes before it shows graphs)."""
    dashboard = os.environ["RAY_API_SERVER_ADDRESS"]  # this cluster's dashboard (cluster.start_local_cluster)
    reply = requests.get(f"{dashboard}/api/prometheus_health", timeout=30)
    assert reply.status_code == 200, reply.text[:300]


@pytest.mark.ray
def test_every_dashboard_panel_query_returns_data(live: dict[str, Any]) -> None:
    """Each PromQL expression of monitoring/grafana/dashboards/raymlops-serving.json, with Grafana's
    $__rate_interval as 1m, returns data from the live Prometheus (Grafana itself is not installed here)."""
    import json

    if not live["sent"]:
        _send(live, "champion", smoke_images(4)[0], 2)  # run alone (-k): some traffic first
    exprs = [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"]]
    assert len(exprs) >= 8
    for expr in exprs:
        query = expr.replace("$__rate_interval", "1m")
        wait_until(lambda q=query: _query(live["url"], q), 30, what=f"data for {query}")


@pytest.mark.ray
def test_skewed_inputs_fire_the_drift_alert(live: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    """Images of one class only to @champion: its window's PSI goes over 0.25 and RaymlopsServeDrift fires for
    v1 in the live Prometheus (the test rules' `for` is 2 s); champion_evaluation's drift check then fails."""
    skewed, _, labels = smoke_images(40, only_class=3)
    assert set(labels) == {"class_3"} and len(skewed) >= 20
    _send(live, "champion", (skewed * (WINDOW // len(skewed) + 1))[:WINDOW])  # a full window of class_3 images
    url = live["url"]

    def firing() -> list[dict[str, Any]]:
        alerts = requests.get(f"{url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == "RaymlopsServeDrift" and a["state"] == "firing"]

    fired = wait_until(
        firing, 60, what="RaymlopsServeDrift firing", context=lambda: str(_by(url, "ray_raymlops_serve_drift", "model_version"))
    )
    assert {a["labels"]["model_version"] for a in fired} == {"1"}, fired
    assert _by(url, 'ALERTS{alertname="RaymlopsServeDrift", alertstate="firing"}', "model_version") == {"1": 1.0}
    # champion_evaluation's drift step (`python -m raymlops.monitoring alerts`): fails on it, passes on others
    from raymlops import monitoring

    with pytest.raises(SystemExit) as failed:
        monitoring.main(["alerts", "--url", url, "--fail-on", "RaymlopsServeDrift"])
    assert failed.value.code == 3
    monitoring.main(["alerts", "--url", url, "--fail-on", "RaymlopsServeErrorRate"])
    out = capsys.readouterr().out
    assert "firing: RaymlopsServeDrift v1: predicted-class mix drifted" in out and '"checked": "RaymlopsServeErrorRate"' in out
