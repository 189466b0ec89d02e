"""The Prometheus series of the serving path, through Ray's metrics API (ray.util.metrics): each Ray node's
metrics port exports them beside Ray's own and Ray Serve's `ray_serve_*` series, with a `ray_` prefix.

Names here and in monitoring/alerts.yml and monitoring/grafana/dashboards/raymlops-serving.json go together:
Prometheus sees `ray_raymlops_serve_requests_total{model_version, alias}` and so on (tests/test_monitoring.py
runs every dashboard expression against a live Prometheus)."""

from __future__ import annotations

from typing import Any

SERVE_TAGS = ("model_version", "alias")
LATENCY_BOUNDARIES_MS: list[float] = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000]


class ServeMetrics:
    """Made once per Router replica (metric objects are per process); every call is a cheap local update."""

    def __init__(self) -> None:
        from ray.util.metrics import Counter, Gauge, Histogram

        self.requests = Counter("raymlops_serve_requests", "POST /predict requests answered, per version", SERVE_TAGS)
        self.errors = Counter("raymlops_serve_errors", "requests answered with an error (400 from the model, 503)", SERVE_TAGS)
        self.images = Counter("raymlops_serve_images", "images classified", SERVE_TAGS)
        self.latency = Histogram(
            "raymlops_serve_latency_ms", "router-side latency of a request, ms", LATENCY_BOUNDARIES_MS, SERVE_TAGS
        )
        self.predictions = Counter(
            "raymlops_serve_predictions", "predicted labels, per version and class", (*SERVE_TAGS, "predicted_class")
        )
        self.confidence = Gauge("raymlops_serve_mean_confidence", "mean top-1 probability over the drift window", SERVE_TAGS)
        self.drift = Gauge(
            "raymlops_serve_drift", "PSI of the window's predicted classes vs the test set's at registration", SERVE_TAGS
        )

    def observe(self, tags: dict[str, str], latency_ms: float, labels: list[str], error: bool) -> None:
        self.requests.inc(1, tags)
        self.latency.observe(latency_ms, tags)
        if error:
            self.errors.inc(1, tags)
        if labels:
            self.images.inc(len(labels), tags)
        for label in labels:
            self.predictions.inc(1, {**tags, "predicted_class": label})

    def set_window(self, tags: dict[str, str], mean_confidence: float | None, drift: float | None) -> None:
        if mean_confidence is not None:
            self.confidence.set(mean_confidence, tags)
        if drift is not None:
            self.drift.set(drift, tags)


class ModelMetrics:
    """Per model replica: time spent in the model (no queueing, no HTTP), per version."""

    def __init__(self) -> None:
        from ray.util.metrics import Histogram

        self.predict_ms = Histogram(
            "raymlops_model_predict_ms", "time in model.predict per call, ms", LATENCY_BOUNDARIES_MS, SERVE_TAGS
        )

    def observe(self, version: str, alias: str, ms: float) -> None:
        self.predict_ms.observe(ms, {"model_version": version, "alias": alias})


def batch_counter() -> Any:
    """Images through batch inference (raymlops.predict), per model URI: rate() of it is the throughput."""
    from ray.util.metrics import Counter

    return Counter("raymlops_predict_images", "images classified by batch inference", ("model_uri",))
