"""The Ray Serve deployments: a model server per alias (hot-swapping when the alias moves) and the HTTP router
that splits traffic between champion and challenger and writes per-version stats to the session's MLflow run."""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any

from mlflow.entities import Metric
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

from raymlops.core import names
from raymlops.serving.drift import Reference
from raymlops.serving.metrics import ModelMetrics, ServeMetrics
from raymlops.serving.routing import REQUEST_KEY_HEADER, RequestError, parse_images, pick_alias
from raymlops.serving.stats import ServingStats
from raymlops.tracking import client

# MLflow is imported here, once, before a replica starts its threads: two threads importing it for the first
# time at once (the stats loop's registry read and a flush from `stop`) made one of them fail with
# "cannot import name '_get_store' from partially initialized module 'mlflow.tracking'".

log = logging.getLogger(__name__)


@serve.deployment
class ModelServer:
    """One registry alias: serves models:/NAME/VERSION for the version the alias points at, and swaps to the
    new version in place (load first, then switch) when a poll sees the alias moved; no request is dropped."""

    def __init__(self, tracking_uri: str, model_name: str, alias: str, poll_interval_s: float) -> None:
        self.uri, self.name, self.alias, self.poll_s = tracking_uri, model_name, alias, poll_interval_s
        version = self._alias_version()
        if version is None:
            raise RuntimeError(f"{model_name}@{alias} does not exist")
        self.current = (version, self._load(version))  # one tuple: a request reads version and model together
        self.metrics = ModelMetrics()
        self._stop = threading.Event()
        threading.Thread(target=self._poll, name=f"poll-{alias}", daemon=True).start()

    def _alias_version(self) -> str | None:
        from raymlops.post.model_registry import alias_version

        return alias_version(self.uri, self.name, self.alias)

    def _load(self, version: str) -> Any:
        import mlflow.pyfunc

        from raymlops.tracking.model_store import download_model

        return mlflow.pyfunc.load_model(download_model(self.uri, f"models:/{self.name}/{version}"))

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                version = self._alias_version()
                if version is not None and version != self.current[0]:
                    model = self._load(version)
                    old, self.current = self.current[0], (version, model)
                    log.warning("%s@%s moved: now serving v%s (was v%s)", self.name, self.alias, version, old)
            except Exception as err:  # the registry being down keeps the current model serving
                log.warning("registry poll for %s@%s failed: %s", self.name, self.alias, err)

    def version(self) -> str:
        return str(self.current[0])

    def predict(self, images: list[bytes]) -> dict[str, Any]:
        import pandas as pd
        from mlflow.exceptions import MlflowException

        version, model = self.current
        started = time.perf_counter()
        try:
            frame = model.predict(pd.DataFrame({"image": images}))
            self.metrics.observe(version, self.alias, (time.perf_counter() - started) * 1000)
        except MlflowException as err:
            if err.get_http_status_code() != 400:
                raise
            return {"version": version, "error": " ".join(err.message.split())}
        return {"version": version, "predictions": frame.to_dict(orient="records")}

    def __del__(self) -> None:
        if hasattr(self, "_stop"):
            self._stop.set()


@serve.deployment(num_replicas=1, max_ongoing_requests=200, ray_actor_options={"num_cpus": 0})
class Router:
    """HTTP ingress: POST /predict (image body or MLflow JSON) -> label/probabilities + answering version;
    GET /versions. challenger_traffic of the requests go to the challenger, sticky per X-Request-Key.

    One replica (async; the model servers do the work and autoscale), so it alone holds the session's stats
    and writes them to its MLflow run every log_interval_s."""

    def __init__(self, champion: Any, challenger: Any, setup: dict[str, Any]) -> None:
        self.handles = {setup["champion_alias"]: champion, setup["challenger_alias"]: challenger}
        self.setup, self.rng = setup, random.Random()
        self.stats, self.started, self._lock = ServingStats(setup["drift_window"]), time.time(), threading.Lock()
        self.metrics = ServeMetrics()
        self.alias_of: dict[str, str] = {}  # version -> the alias it last answered for
        self._stop = threading.Event()
        threading.Thread(target=self._log_loop, name="serve-stats", daemon=True).start()

    async def __call__(self, request: Request) -> JSONResponse:
        path = request.url.path.rstrip("/")
        if request.method == "GET" and path == "/versions":
            return JSONResponse(await self.versions())
        if request.method != "POST" or path != "/predict":
            return JSONResponse({"error": "use POST /predict (image body or JSON) or GET /versions"}, status_code=404)
        try:
            images = parse_images(await request.body(), request.headers.get("content-type", ""))
        except RequestError as err:
            return JSONResponse({"error": str(err)}, status_code=400)
        s = self.setup
        key = request.headers.get(REQUEST_KEY_HEADER) or request.query_params.get("key")
        alias = pick_alias(key, s["challenger_traffic"], s["champion_alias"], s["challenger_alias"], self.rng)
        started = time.perf_counter()
        try:
            result = await self.handles[alias].predict.remote(images)
        except Exception as err:
            log.warning("prediction failed on @%s: %s", alias, err)
            return JSONResponse({"error": f"prediction failed on @{alias}: {type(err).__name__}"}, status_code=503)
        latency_ms = (time.perf_counter() - started) * 1000
        predictions = result.get("predictions", [])
        labels, confidences = [p["label"] for p in predictions], [float(p["probability"]) for p in predictions]
        with self._lock:
            self.stats.record(result["version"], latency_ms, labels, "error" in result, confidences)
            self.alias_of[result["version"]] = alias
        self.metrics.observe({"model_version": result["version"], "alias": alias}, latency_ms, labels, "error" in result)
        meta = {"model": s["model_name"], "model_version": result["version"], "alias": alias}
        if "error" in result:
            return JSONResponse({"error": result["error"], **meta}, status_code=400)
        return JSONResponse({"predictions": result["predictions"], **meta})

    async def versions(self) -> dict[str, Any]:
        s = self.setup
        out: dict[str, Any] = {"model": s["model_name"], "challenger_traffic": s["challenger_traffic"]}
        for alias, handle in self.handles.items():
            if handle is not None:
                out[alias] = await handle.version.remote()
        return out

    def _log_loop(self) -> None:
        """Every second: drift and mean confidence to Prometheus; every log_interval_s: all stats to MLflow."""
        last_flush = time.monotonic()
        while not self._stop.wait(min(1.0, self.setup["log_interval_s"])):
            try:
                self._update_window_gauges()
                if time.monotonic() - last_flush >= self.setup["log_interval_s"]:
                    last_flush = time.monotonic()
                    self.flush()
            except Exception as err:  # a tracker outage costs points, never requests
                log.warning("serve stats not logged: %s", err)

    def _update_window_gauges(self) -> None:
        for version in [v for v in list(self.stats.versions) if v not in self.stats.references]:
            self.stats.references[version] = self._reference(version)
        with self._lock:
            window = {v: (s.mean_confidence(), s.drift(self.stats.references.get(v))) for v, s in self.stats.versions.items()}
            aliases = dict(self.alias_of)
        for version, (confidence, drift) in window.items():
            self.metrics.set_window({"model_version": version, "alias": aliases.get(version, "")}, confidence, drift)

    def _reference(self, version: str) -> Reference | None:
        """The version's test-set baseline from its registry tag (None: registered without one, no drift figure)."""
        tag = (
            client(self.setup["tracking_uri"])
            .get_model_version(self.setup["model_name"], version)
            .tags.get(names.TAG_SERVING_REFERENCE)
        )
        if tag is None:
            log.warning(
                "%s v%s has no %s tag: no drift figure for it", self.setup["model_name"], version, names.TAG_SERVING_REFERENCE
            )
        return Reference.from_json(tag) if tag else None

    def flush(self) -> dict[str, float]:
        """Write the stats so far (cumulative per version; step = seconds since the session started)."""
        with self._lock:
            metrics = self.stats.metrics()
        now_ms, step = int(time.time() * 1000), int(time.time() - self.started)
        points = [Metric(k, float(v), now_ms, step) for k, v in metrics.items()]
        for start in range(0, len(points), 1000):  # log_batch takes 1000 metrics per request
            client(self.setup["tracking_uri"]).log_batch(self.setup["run_id"], metrics=points[start : start + 1000])
        return metrics
