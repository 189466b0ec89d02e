"""Joining Ray, and deciding up front whether a worker group can ever be scheduled.

Ray Train retries an unschedulable worker group forever (a WorkerGroupStartupTimeoutError every
60 s), so every launcher checks feasibility here first and fails in seconds with the numbers.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from raymlops.errors import UserError

log = logging.getLogger(__name__)
DRIVER_RESOURCES = {"CPU": 0, "memory": 64 * 1024**2}  # a trial driver only waits on its worker group


def connect(config: dict[str, Any]) -> None:
    """Join RAY_ADDRESS / ray.address, or start a local cluster bound to 127.0.0.1."""
    import ray

    if ray.is_initialized():
        return
    rcfg = config["ray"]
    address = rcfg.get("address") or os.environ.get("RAY_ADDRESS")
    # TUNE_FUNCTION_THREAD_TIMEOUT_S: a reused Tune actor waits this long for the last trial's thread
    # (MLflow flush included) instead of 2 s, after which Tune fails the next trial.
    # RAY_TRAIN_HEALTH_CHECK_INTERVAL_S: the Train controller polls its workers every 2 s by default;
    # each DDP trial waits on that poll to start, per report and to finish (see `make bench BENCH=overhead`).
    env_vars = {"PYTHONWARNINGS": "ignore::DeprecationWarning", "RAY_TRAIN_ENABLE_PRINT_PATCH": "0", "TUNE_FUNCTION_THREAD_TIMEOUT_S": "60",
                "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")}
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
                 "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "RAYMLOPS_DEBUG"):
        if os.environ.get(name):
            env_vars[name] = os.environ[name]
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "runtime_env": {"env_vars": env_vars}}
    if address:
        info = ray.init(address=address, **kwargs)
    else:
        # DDP trials need the dashboard: it serves the state API that Ray Train's PlacementGroupCleaner
        # uses to free the worker group of a trial stopped by ASHA; without it those CPUs leak.
        dashboard = bool(rcfg.get("include_dashboard", True)) or config["scaling"]["num_workers"] > 1
        info = ray.init(num_cpus=rcfg.get("num_cpus"), include_dashboard=dashboard,
                        dashboard_host=rcfg.get("dashboard_host", "127.0.0.1"), **kwargs)
    where = f"joined {address}" if address else "started a local cluster"
    url = getattr(info, "dashboard_url", None)
    print(f"Ray {where}" + (f"; dashboard: http://{url}" if url else ""), flush=True)


def use_gpu(config: dict[str, Any]) -> bool:
    """scaling.use_gpu: auto means 'if the cluster has GPUs (now or via its autoscaler)'."""
    import ray

    setting = config["scaling"]["use_gpu"]
    if setting != "auto":
        return bool(setting)
    return ray.cluster_resources().get("GPU", 0) > 0 or (autoscaler_max().get("GPU", 0) > 0)


def worker_resources(config: dict[str, Any], gpu: bool) -> dict[str, float]:
    scaling = config["scaling"]
    res: dict[str, float] = {"CPU": float(scaling["cpus_per_worker"])}
    if gpu:
        res["GPU"] = float(scaling["gpus_per_worker"])
    if scaling.get("accelerator_resource"):
        res[scaling["accelerator_resource"]] = 1.0
    return res


def autoscaler_max() -> dict[str, float]:
    """Resources the autoscaler could reach (empty when no autoscaler is configured)."""
    try:
        from ray._private.state import state

        return dict(state.get_max_resources_from_cluster_config() or {})
    except Exception:
        return {}


def _node_group_shapes() -> list[dict[str, float]]:
    try:
        from ray._private.state import state

        cfg = state.get_cluster_config()
        return [dict(g.resources) for g in cfg.node_group_configs] if cfg else []
    except Exception:
        return []


def max_parallel_groups(config: dict[str, Any], per_worker: dict[str, float]) -> int:
    """How many worker groups of scaling.num_workers x per_worker fit at once (0 = never).

    Counts per node (a worker's bundle cannot span nodes). With an autoscaler (scaling.autoscale
    auto/true) the node types it may add count too.
    """
    import ray

    n_workers = config["scaling"]["num_workers"]
    per_node = [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]
    autoscale = config["scaling"].get("autoscale", "auto")
    if autoscale is True or (autoscale == "auto" and autoscaler_max()):
        shapes = _node_group_shapes()
        limits = autoscaler_max()
        if any(all(shape.get(k, 0) >= v for k, v in per_worker.items()) for shape in shapes):
            fits = min(int(limits.get(k, 0) // v) for k, v in per_worker.items() if v > 0)
            return max(1, fits // n_workers) if fits >= n_workers else 0
    slots = sum(min(int(node.get(k, 0) // v + 1e-9) for k, v in per_worker.items() if v > 0) for node in per_node)
    return slots // n_workers


def check_feasible(config: dict[str, Any], per_worker: dict[str, float]) -> int:
    """Refuse, in seconds, a worker group the cluster can never hold; return how many fit at once."""
    import ray

    groups = max_parallel_groups(config, per_worker)
    if groups >= 1:
        return groups
    n = config["scaling"]["num_workers"]
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
