"""Joining Ray, and deciding up front whether a worker group can ever be scheduled.

Ray Train retries an unschedulable worker group forever (a WorkerGroupStartupTimeoutError every
60 s), so every launcher checks feasibility here first and fails in seconds with the numbers.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ray

from raymlops import ray_internals
from raymlops.config.schema import Config, ScalingConfig
from raymlops.core.errors import UserError
from raymlops.core.redact import is_secret_key
from raymlops.launch import ray_auth, ray_output
from raymlops.launch.room import worker_slots

log = logging.getLogger(__name__)
DRIVER_RESOURCES = {"CPU": 0, "memory": 64 * 1024**2}  # a trial driver only waits on its worker group


def connect(config: Config) -> None:
    """Join RAY_ADDRESS / ray.address, or start a local cluster bound to 127.0.0.1."""

    if ray.is_initialized():
        return
    rcfg = config.ray
    joined = ray_auth.cluster_address(rcfg)
    address = joined[0] if joined else None
    if joined:
        ray_auth.prepare_join(*joined)  # again: serving and batch inference join without launch.preflight
    # TUNE_FUNCTION_THREAD_TIMEOUT_S: a reused Tune actor waits this long for the last trial's thread
    # (MLflow flush included) instead of 2 s, after which Tune fails the next trial.
    # RAY_TRAIN_HEALTH_CHECK_INTERVAL_S: the Train controller polls its workers every 2 s by default;
    # each DDP trial waits on that poll to start, per report and to finish (see `make bench BENCH=overhead`).
    env_vars = {
        "PYTHONWARNINGS": "ignore::DeprecationWarning",
        "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
        "TUNE_FUNCTION_THREAD_TIMEOUT_S": "60",
        "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5"),
    }
    for name in (
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
        "MLFLOW_S3_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_DEFAULT_REGION",
        "RAYMLOPS_DEBUG",
    ):
        # A local cluster's workers inherit this environment; only a joined cluster needs credentials sent
        # along, and Ray logs a runtime_env in clear (runtime_env_agent.log, the dashboard's job view).
        if os.environ.get(name) and (address or not is_secret_key(name)):
            env_vars[name] = os.environ[name]
    verbose = bool(config.console.verbose)
    level = logging.INFO if verbose else logging.WARNING
    if address:
        info = ray.init(address=address, logging_level=level, runtime_env={"env_vars": env_vars})
    else:
        # DDP trials need the dashboard: it serves the state API that Ray Train's PlacementGroupCleaner
        # uses to free the worker group of a trial stopped by ASHA; without it those CPUs leak.
        dashboard = bool(rcfg.include_dashboard) or config.scaling.num_workers > 1
        ray_output.keep_token_auth()
        host = rcfg.dashboard_host
        info = start_local_cluster(
            num_cpus=rcfg.num_cpus, include_dashboard=dashboard, dashboard_host=host, env_vars=env_vars, logging_level=level
        )
    if not verbose:
        ray_output.filter_worker_logs()
    where = f"joined {address}" if address else "started a local cluster"
    print(f"Ray {where}; {ray_output.dashboard_line(getattr(info, 'dashboard_url', None))}", flush=True)


def start_local_cluster(
    *, include_dashboard: bool, dashboard_host: str = "127.0.0.1", env_vars: dict[str, str] | None = None, **kwargs: Any
) -> Any:
    """ray.init of a new local cluster (never one a `ray start` left on this machine).

    env_vars reach every Ray process by inheritance (set here while Ray starts its raylet, then put back), not
    as the job's runtime_env: a worker the raylet prestarts at start-up serves only jobs without a runtime_env,
    so with one, each of the search's first tasks and actors (lane broker, lane, Train's helpers) waits for a
    new Python process on busy cores while the prestarted ones idle.

    With a dashboard, its port is picked here and RAY_API_SERVER_ADDRESS names it before Ray starts, so every
    state API caller of this cluster asks this cluster: the driver, and (the raylet hands its environment on)
    Ray Train's PlacementGroupCleaner. Left to find a cluster itself, the cleaner fails with "Found multiple
    active Ray instances" when another Ray runs on the machine, or asks the other one, finds no controller
    there, and removes the placement group of a run that is still going.
    """
    if include_dashboard:
        port = _free_port(dashboard_host)
        os.environ["RAY_API_SERVER_ADDRESS"] = f"http://{_reachable(dashboard_host)}:{port}"
        kwargs["dashboard_port"] = port
    else:
        os.environ.pop("RAY_API_SERVER_ADDRESS", None)  # names no dashboard of this cluster
    with _environment(env_vars or {}):
        info = ray.init(address="local", include_dashboard=include_dashboard, dashboard_host=dashboard_host, **kwargs)
    url = getattr(info, "dashboard_url", None) or ""
    if include_dashboard and url and not url.endswith(f":{kwargs['dashboard_port']}"):
        log.warning("the dashboard took %s, not port %s: state API calls may reach another Ray", url, kwargs["dashboard_port"])
    return info


@contextlib.contextmanager
def _environment(env_vars: dict[str, str]) -> Iterator[None]:
    """These environment variables set in this process meanwhile (Ray's processes started now inherit them)."""
    before = {name: os.environ.get(name) for name in env_vars}
    os.environ.update(env_vars)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as s:
        s.bind((_reachable(host), 0))
        return int(s.getsockname()[1])


def _reachable(host: str) -> str:
    """The address a process on this machine reaches a server bound to host at."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def use_gpu(config: Config) -> bool:
    """scaling.use_gpu: auto means 'if the cluster has GPUs (now or via its autoscaler)'."""

    setting = config.scaling.use_gpu
    if setting != "auto":
        return bool(setting)
    return ray.cluster_resources().get("GPU", 0) > 0 or (autoscaler_max(config).get("GPU", 0) > 0)


def worker_resources(scaling: ScalingConfig, gpu: bool) -> dict[str, float]:
    res: dict[str, float] = {"CPU": float(scaling.cpus_per_worker)}
    if gpu:
        res["GPU"] = float(scaling.gpus_per_worker)
    if scaling.accelerator_resource:
        res[scaling.accelerator_resource] = 1.0
    return res


def autoscaler_node_types(config: Config) -> list[tuple[dict[str, float], int]]:
    """(resources, most nodes) per node type the autoscaler may run; empty when none is known.

    Ray 2.60's open-source autoscalers do not publish their node types to the GCS, so the
    cluster YAML the autoscaler was started with is read when it is on this machine:
    `ray up` leaves it on the head at ~/ray_bootstrap_config.yaml (ray.autoscaling_config),
    where `ray job submit` drivers run.
    """
    groups = _gcs_node_groups()
    return groups or _yaml_node_types(config.ray.autoscaling_config)


def _gcs_node_groups() -> list[tuple[dict[str, float], int]]:
    groups = ray_internals.gcs_node_groups()
    return [(res, count if count >= 0 else 10**6) for res, count in groups if count != 0]


def _yaml_node_types(path: str | None) -> list[tuple[dict[str, float], int]]:
    file = Path(os.path.expanduser(path)) if path else None
    if file is None or not file.is_file():
        return []
    try:
        import yaml

        cfg = yaml.safe_load(file.read_text()) or {}
        head, cap = cfg.get("head_node_type"), int(cfg.get("max_workers", 10**6))  # max_workers: cluster-wide cap
        out = []
        for name, node_type in (cfg.get("available_node_types") or {}).items():
            count = 1 if name == head else min(int(node_type.get("max_workers", cap)), cap)
            resources = {str(k): float(v) for k, v in (node_type.get("resources") or {}).items()}
            if count > 0 and resources:
                out.append((resources, count))
        return out
    except Exception as err:  # a broken file must not stop a search that may not need it
        log.warning("could not read the autoscaler's node types from %s: %s", file, err)
        return []


def autoscaler_max(config: Config) -> dict[str, float]:
    """Resources the autoscaler could reach (empty when no autoscaler node types are known)."""
    total: dict[str, float] = {}
    for resources, count in autoscaler_node_types(config):
        for key, value in resources.items():
            total[key] = total.get(key, 0.0) + value * count
    return total


def max_parallel_groups(config: Config, per_worker: dict[str, float]) -> int:
    """How many worker groups of scaling.num_workers x per_worker fit at once (0 = never).

    Counts per node (a worker's bundle cannot span nodes). With an autoscaler (scaling.autoscale
    auto/true) the node types it may add count too; scaling.autoscale=true with node types this
    process cannot see (KubeRay, a driver off the head) trusts the autoscaler: as many groups as trials.
    """

    n_workers = config.scaling.num_workers
    per_node = [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]
    slots = sum(worker_slots(node, per_worker) for node in per_node)
    autoscale = config.scaling.autoscale
    if autoscale is not False:
        types = autoscaler_node_types(config)
        if any(all(shape.get(k, 0) >= v for k, v in per_worker.items()) for shape, _ in types):
            limits = autoscaler_max(config)
            fits = min(int(limits.get(k, 0) // v) for k, v in per_worker.items() if v > 0)
            return max(1, fits // n_workers) if fits >= n_workers else 0
        if autoscale is True and not types:
            log.warning("scaling.autoscale=true: trusting the autoscaler to add nodes for %s x %s", n_workers, per_worker)
            return max(slots // n_workers, int(config.tune.num_samples), 1)
    return slots // n_workers


def check_feasible(config: Config, per_worker: dict[str, float]) -> int:
    """Refuse, in seconds, a worker group the cluster can never hold; return how many fit at once."""

    groups = max_parallel_groups(config, per_worker)
    if groups >= 1:
        return groups
    n = config.scaling.num_workers
    have = {k: v for k, v in ray.cluster_resources().items() if k in per_worker}
    need = {k: v * n for k, v in per_worker.items()}
    hint = "lower scaling.num_workers or scaling.cpus_per_worker"
    if "GPU" in per_worker:
        hint += ", set scaling.use_gpu=false, or lower scaling.gpus_per_worker"
    raise UserError(
        f"The worker group can never be scheduled: {n} worker(s) x {per_worker} needs {need}, but the Ray cluster has "
        f"{have or 'none of these resources'} (per node: {[{k: n.get('Resources', {}).get(k, 0) for k in per_worker} for n in ray.nodes() if n.get('Alive')]}) "
        f"and no autoscaler that could add them. Fix: {hint}, or join a bigger cluster with RAY_ADDRESS."
    )
