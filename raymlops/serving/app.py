"""A serving session: the registry's champion (and challenger) behind Ray Serve on 127.0.0.1, one MLflow run
(`raymlops.role=serve`) holding its per-version stats, started and stopped as one unit."""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

from raymlops.config.schema import Config
from raymlops.config.tree import to_dict
from raymlops.core import names
from raymlops.core.errors import UserError
from raymlops.post.model_registry import alias_version

APP_NAME = "raymlops"
STOP_FLUSH_TIMEOUT_S = 5.0  # the router's last write of the stats to the serve run, at stop
PROXY_READY_ENV = "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S"


@dataclass
class ServeSession:
    url: str  # http://host:port; POST {url}/predict
    run_id: str  # the MLflow run of this session
    tracking_uri: str
    versions: dict[str, str]  # alias -> version served at start
    owns_cluster: bool = False  # Ray was started by this session: it ends with the process, the app with it


def resolve_aliases(config: Config) -> dict[str, str]:
    """alias -> version for the aliases this session serves; a missing one is a UserError before Ray starts."""
    s, name, uri = config.serve, config.registry.model_name, config.mlflow.tracking_uri
    aliases = [s.champion_alias] + ([s.challenger_alias] if s.challenger_traffic > 0 else [])
    out = {}
    for alias in aliases:
        version = alias_version(uri, name, alias, config.mlflow.retry_seconds)
        if version is None:
            raise UserError(
                f"No model version models:/{name}@{alias} at {uri}. Run a search first (it registers @champion), "
                f"point another model with registry.model_name=NAME, or set the alias: python -m raymlops.registry "
                f"--tracking-uri {uri} alias {name} {alias} VERSION."
            )
        out[alias] = version
    return out


def start(config: Config) -> ServeSession:
    """Join or start Ray, open the session's MLflow run, deploy the application, return its URL."""
    import ray
    from ray import serve

    from raymlops import tracking
    from raymlops.launch.cluster import connect
    from raymlops.launch.ray_auth import cluster_address

    tracking.check_reachable(config.mlflow.tracking_uri)
    versions = resolve_aliases(config)
    owns_cluster = not ray.is_initialized() and cluster_address(config.ray) is None
    connect(config)
    _check_fits(config, len(versions))
    run_id = _open_run(config, versions)
    s = config.serve
    serve.start(http_options={"host": s.host, "port": s.port}, controller_options=_controller_options())
    serve.run(_build(config, run_id), name=APP_NAME, route_prefix="/", blocking=False)
    return ServeSession(f"http://{s.host}:{s.port}", run_id, config.mlflow.tracking_uri, versions, owns_cluster)


def _controller_options() -> dict[str, Any]:
    """Serve's controller kills a proxy that is not ready within RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S (5 s by
    default); on 2 busy cores its first start can take longer, and serve.start then fails with the proxy's
    ActorDiedError ("killed by ray.kill"). 30 s unless the user set it."""
    timeout = os.environ.get(PROXY_READY_ENV, "30")
    return {"runtime_env": {"env_vars": {PROXY_READY_ENV: timeout}}}


def _check_fits(config: Config, n_aliases: int) -> None:
    import ray

    s = config.serve
    need, have = s.min_replicas * s.replica_cpus * n_aliases, ray.cluster_resources().get("CPU", 0)
    if need > have:
        raise UserError(
            f"serve.min_replicas={s.min_replicas} x serve.replica_cpus={s.replica_cpus} x {n_aliases} alias(es) "
            f"needs {need} CPUs; the cluster has {have}. Lower serve.replica_cpus or serve.min_replicas."
        )


def _build(config: Config, run_id: str) -> Any:
    from raymlops.serving.deployments import ModelServer, Router

    s, uri, name = config.serve, config.mlflow.tracking_uri, config.registry.model_name
    autoscaling = {
        "min_replicas": s.min_replicas,
        "max_replicas": s.max_replicas,
        "target_ongoing_requests": s.target_ongoing_requests,
    }

    def server(alias: str) -> Any:
        return ModelServer.options(  # type: ignore[attr-defined]
            name=f"model-{alias}", autoscaling_config=autoscaling, ray_actor_options={"num_cpus": s.replica_cpus}
        ).bind(uri, name, alias, s.poll_interval_s)

    challenger = server(s.challenger_alias) if s.challenger_traffic > 0 else None
    keys = ("champion_alias", "challenger_alias", "challenger_traffic", "log_interval_s", "drift_window")
    setup = {k: getattr(s, k) for k in keys} | {"model_name": name, "tracking_uri": uri, "run_id": run_id}
    return Router.bind(server(s.champion_alias), challenger, setup)  # type: ignore[attr-defined]


def _open_run(config: Config, versions: dict[str, str]) -> str:
    from raymlops import tracking

    mcfg, name = config.mlflow, config.registry.model_name
    exp_id = tracking.ensure_experiment(mcfg.tracking_uri, mcfg.experiment_name, mcfg.artifact_location)
    tags = (
        {names.TAG_ROLE: "serve", "raymlops.model_name": name}
        | {f"raymlops.serve.{a}": v for a, v in versions.items()}
        | tracking.origin_tags()
    )
    c = tracking.client(mcfg.tracking_uri)
    run = c.create_run(exp_id, run_name=f"serve {name}", tags=tags)
    for key, value in to_dict(config.serve).items():
        c.log_param(run.info.run_id, f"serve.{key}", str(value))
    return str(run.info.run_id)


def stop(session: ServeSession) -> dict[str, float]:
    """Write the last stats, end the MLflow run, delete the application; return the final metrics.

    The run ends before the (slower) delete, and the router gets STOP_FLUSH_TIMEOUT_S to answer: Ctrl-C ends
    the command in seconds with the run FINISHED. On a local cluster this session started, the application is
    not deleted one replica at a time (seconds of graceful shutdown): the cluster goes with the process."""
    from ray import serve

    from raymlops import tracking

    try:
        try:
            metrics: dict[str, float] = serve.get_app_handle(APP_NAME).flush.remote().result(timeout_s=STOP_FLUSH_TIMEOUT_S)
        finally:
            tracking.client(session.tracking_uri).set_terminated(session.run_id)
    finally:
        if not session.owns_cluster:
            serve.delete(APP_NAME)
    return metrics


def _stop_on_signals() -> dict[int, Any]:
    """Ctrl-C (SIGINT) and SIGTERM (`kill`, systemd, Kubernetes) both end serving through `stop`. SIGINT is set
    here too because a process started as a script's background job inherits it ignored, and Python then never
    raises KeyboardInterrupt: Ctrl-C on it (or a test's SIGINT) did nothing. Signals reach only the main thread.
    Returns the handlers it replaced (restored once serving stopped: a notebook's or a test's own)."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    return {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}


def serve_until_stopped(config: Config) -> dict[str, float]:
    """start, print how to call it, wait for Ctrl-C (or serve.duration_s), stop."""
    session = start(config)
    name = config.registry.model_name
    served = ", ".join(f"@{a} = v{v}" for a, v in session.versions.items())
    print(
        f"Serving {name} ({served}) at {session.url}; MLflow run {session.run_id}\n"
        f"  curl -s -X POST --data-binary @image.png -H 'Content-Type: image/png' {session.url}/predict\n"
        f"  curl -s {session.url}/versions        (Ctrl-C stops)",
        flush=True,
    )
    duration = config.serve.duration_s
    deadline = time.monotonic() + duration if duration else float("inf")
    replaced = _stop_on_signals()
    try:
        while time.monotonic() < deadline:
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
    except KeyboardInterrupt:
        print("Stopping...", flush=True)
    try:
        return stop(session)
    finally:
        for sig, handler in replaced.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)  # None: not set from Python
