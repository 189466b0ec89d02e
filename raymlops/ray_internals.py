"""Every use of a private Ray API in raymlops, each with why it is needed; tests/test_ray_internals.py breaks
loudly when a Ray upgrade moves or reshapes one of them (checked against Ray 2.60.0).

Private here means an underscore module or attribute (`ray._private`, `ray._raylet`, `*._internal`,
`tuner._local_tuner`, `_live_trials`), a logger named after a private module, or the layout of a file Ray
writes for itself (Train's checkpoint snapshot). Nothing else in the package touches these. Ray is imported
inside each function: importing this module costs nothing (the training layer imports it too).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The loggers below are named after Ray's private modules; quieting them is the only way to drop the line.
# Ray Train's storage logs "Checkpoint successfully created/uploaded" once per relayed checkpoint (a warm
# lane's driver relays every epoch's checkpoint to Tune).
TRAIN_STORAGE_LOGGER = "ray.train._internal.storage"
# Ray 2.60 logs, on every new local cluster, that token auth is on by default and how to opt out.
TOKEN_SETUP_LOGGER = "ray._private.authentication.authentication_token_setup"
# The file Ray Train V2's CheckpointManager writes beside a run's checkpoints (ray.train.v2._internal.constants).
TRAIN_SNAPSHOT_FILE = "checkpoint_manager_snapshot.json"


def train_v2_report_logger() -> str | None:
    """The name of the logger through which Train V2 logs "Reporting training result ..." on every report.

    Its train context module names its logger by its file path (`logging.getLogger(__file__)`), so the
    name is only known from the module itself; None when this Ray has no such module.
    """
    try:
        from ray.train.v2._internal.execution import context as train_context
    except ImportError:
        return None
    return str(train_context.__file__)


def tune_trial_fs_path() -> str | None:
    """This Tune trial's folder (`StorageContext.trial_fs_path`), from inside its function trainable.

    Tune has no public accessor for the trial's folder under storage_path; `get_storage` of the legacy
    session (a DeveloperAPI in a private module) returns the StorageContext Tune's own checkpointing uses.
    None outside a trial, or when this Ray moved it.
    """
    try:
        from ray.train._internal.session import get_storage

        return str(get_storage().trial_fs_path)
    except Exception:  # not inside a Tune trial, or another layout
        return None


def unregistered_by_train(folder: Path, names: list[str]) -> list[str] | None:
    """The checkpoint folder names among `names` that Ray Train's checkpoint snapshot in `folder` does not
    list; None when there is no snapshot to read (remote storage, or nothing registered yet).

    Train V2 registers a checkpoint only once its controller has recorded the report; a worker killed in
    between leaves a checkpoint folder that Train's num_to_keep pruning never deletes. Train exposes no API
    that lists what it registered, so its snapshot (a pydantic `_CheckpointManagerState` dumped as JSON,
    every kept checkpoint's `checkpoint_dir_name` quoted in it) is read as text: a name that does not occur
    quoted anywhere in it is not registered.
    """
    try:
        snapshot = (folder / TRAIN_SNAPSHOT_FILE).read_text()
    except OSError:
        return None
    return [name for name in names if f'"{name}"' not in snapshot]


def restored_run_config(tuner: Any) -> Any:
    """The RunConfig a `Tuner.restore` read back from tuner.pkl (callbacks included), to swap in this run's
    callbacks; None when this Ray keeps it elsewhere (then the pickled callbacks run).

    `Tuner` has no public accessor for it (ray#41364, open): `_local_tuner` is the TunerInternal that owns it
    (None in Ray Client mode), and `get_run_config()` returns the live object Tune will run with.
    """
    local = getattr(tuner, "_local_tuner", None)
    return local.get_run_config() if local is not None else None


def searcher_live_trials(search_alg: Any) -> set[str] | None:
    """The set of trial ids a Tune search algorithm counts against its concurrency limit, to be edited in
    place; None when this search algorithm keeps no such set.

    A paused trial holds no resources, yet Tune's search algorithms count it as live: PromotionASHA takes its
    paused trials out of the count so the searcher suggests the trials needed to promote them, and puts
    them back when they resume. `BasicVariantGenerator._live_trials` (random/grid search with
    max_concurrent) and `ConcurrencyLimiter.live_trials` (behind `SearchGenerator.searcher`) are the sets.
    """
    live = getattr(search_alg, "_live_trials", None)
    if live is None:
        live = getattr(getattr(search_alg, "searcher", None), "live_trials", None)
    return live if isinstance(live, set) else None


def wrap_driver_log_printer(keep: Callable[[list[str]], list[str]]) -> bool:
    """Make Ray's driver print keep(lines) of each batch of forwarded worker output (one process's lines) and of
    each error-channel message; False (nothing changed) when this Ray lays its printing out differently.

    Ray exposes no filter hook for `log_to_driver`. Its driver prints both forwarded worker output (the
    "ray_print_logs" handler of `ray._private.ray_logging.global_worker_stdstream_dispatcher`) and the error
    channel (worker deaths, OOM kills, the raylet's worker-pool notice) through
    `ray._private.worker.print_to_stdstream`; this wraps that function in both places, once.
    """
    try:
        from ray._private import worker
        from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher
    except ImportError:
        return False
    original = getattr(worker, "print_to_stdstream", None)
    if original is None or getattr(original, "raymlops_filtered", False):
        return original is not None
    if "ray_print_logs" not in [name for name, _ in dispatcher.handlers]:
        return False

    def print_kept(data: dict[str, Any], ignore_prefix: bool) -> None:
        lines = keep([str(line) for line in data.get("lines", [])])
        if lines:
            original({**data, "lines": lines}, ignore_prefix=ignore_prefix)

    print_kept.raymlops_filtered = True  # type: ignore[attr-defined]
    worker.print_to_stdstream = print_kept  # the error channel looks it up at each message
    ignore_prefix = worker._should_ignore_worker_log_prefix(worker.global_worker)
    dispatcher.remove_handler("ray_print_logs")
    dispatcher.add_handler("ray_print_logs", lambda data: print_kept(data, ignore_prefix))
    return True


def auth_mode_name() -> str | None:
    """The authentication mode this process's Ray runs with ("token", "disabled", ...), lower case; None when
    this Ray has no token auth. Ray 2.60 reads it from its config at import; only `ray._raylet` reports it."""
    try:
        from ray._private.authentication.authentication_utils import get_authentication_mode_name
        from ray._raylet import get_authentication_mode  # type: ignore[attr-defined]

        return str(get_authentication_mode_name(get_authentication_mode())).lower()
    except Exception:  # an older or newer Ray without token auth
        return None


def gcs_node_groups() -> list[tuple[dict[str, float], int]]:
    """(resources, max_count) per node group the autoscaler published to the GCS (max_count -1: no limit);
    empty when none is known (Ray 2.60's open-source autoscalers publish none). Ray has no public API for
    the cluster config the GCS holds; `ray._private.state.state.get_cluster_config()` reads it."""
    try:
        from ray._private.state import state

        cfg = state.get_cluster_config()
        groups = cfg.node_group_configs if cfg else []
        return [(dict(g.resources), int(g.max_count)) for g in groups]
    except Exception:  # not connected, or another layout
        return []


def quiet(logger_name: str | None, level: int = logging.WARNING) -> None:
    """Raise one of Ray's private loggers (above) to `level`."""
    if logger_name:
        logging.getLogger(logger_name).setLevel(level)


def use_token_auth() -> None:
    """Turn token authentication on in this process (and the processes it starts) after Ray was imported.

    Ray reads RAY_AUTH_MODE into its config at import and, for an explicit address, never turns token mode on
    by itself; this is what Ray's own `ray start` does when it finds a token (authentication_token_setup).
    """
    import os

    from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]

    os.environ["RAY_AUTH_MODE"] = "token"
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def probe_gcs(address: str, token: str | None, timeout_s: float) -> str:
    """Ask the GCS at host:port for its cluster id, sending `token` as Ray's clients do; "ok",
    "unauthenticated" or "unreachable: <why>". One gRPC call: ray.init instead retries for a minute,
    printing a line per try. Ray has no public probe; the stubs are generated code under ray.core."""
    import grpc
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

    metadata = [("authorization", f"Bearer {token}")] if token else []
    with grpc.insecure_channel(address) as channel:
        stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
        try:
            stub.GetClusterId(gcs_service_pb2.GetClusterIdRequest(), timeout=timeout_s, metadata=metadata)  # type: ignore[attr-defined]
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.UNAUTHENTICATED:
                return "unauthenticated"
            return f"unreachable: {err.code().name.lower()}"
    return "ok"


def session_dir() -> Path | None:
    """This process's Ray session folder (/tmp/ray/session_<time>_<pid>), None before ray.init. Ray writes each
    session's Prometheus service-discovery file there; the copy in the temp dir follows the newest session on
    the machine, so a Prometheus for one cluster among several (the tests) reads the session's own. No public API
    names the folder."""
    from ray._private import worker

    node = getattr(worker, "_global_node", None)
    return Path(node.get_session_dir_path()) if node is not None else None


def torch_trainer_class() -> type:
    """TorchTrainer, less Ray Data's per-run DatasetManager actor when the trainer is given no datasets.

    Train V2's DatasetsCallback starts a DatasetManager actor every time a worker group starts, datasets or
    none (ray.train.v2._internal.callbacks.datasets). raymlops feeds its workers with torch DataLoaders, so
    that actor only costs start-up: about 3.4 s of CPU per lane measured on 2 cores, beside the lane's first
    epoch. `_create_default_callbacks` is the trainer's private hook that lists its controller's callbacks.
    """
    from ray.train.torch import TorchTrainer
    from ray.train.v2._internal.callbacks.datasets import DatasetsCallback

    class LeanTorchTrainer(TorchTrainer):  # type: ignore[misc,valid-type]
        def _create_default_callbacks(self) -> list[Any]:
            callbacks = super()._create_default_callbacks()  # type: ignore[misc]
            if self.datasets:
                return list(callbacks)
            return [cb for cb in callbacks if not isinstance(cb, DatasetsCallback)]

    return LeanTorchTrainer


def start_train_autoscaling_coordinator() -> None:
    """Start Ray Train's AutoscalingCoordinator actor now, if this cluster has none, without waiting for it.

    Every Train V2 controller gets or creates this detached actor (one per cluster, namespace
    AutoscalingCoordinator) right after it starts, and waits for it (up to 5 s) before it places its
    worker group (ray.train.v2._internal.execution.scaling_policy). Created only then, a new cluster's first
    DDP run waits for one more Python process to start behind its controller: about 3 s on 2 cores. Called
    once Ray is up, the two start side by side. Ray Data's `get_or_create_autoscaling_coordinator` is the
    function the controller itself calls, so it finds this actor. A failure here only leaves it to the controller.
    """
    try:
        from ray.data._internal.cluster_autoscaler.default_autoscaling_coordinator import (
            get_or_create_autoscaling_coordinator,
        )

        get_or_create_autoscaling_coordinator()
    except Exception as err:  # pragma: no cover - Ray's private module moved: the controller creates it as before
        logging.getLogger(__name__).debug("could not start Ray Train's autoscaling coordinator early: %s", err)


def resources_per_node() -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """(total, available) resources of each alive node, by node id. Ray's public API gives cluster-wide sums
    only (ray.cluster_resources, ray.available_resources); a worker's bundle cannot span nodes, so what fits
    is counted per node from `ray._private.state` (DeveloperAPI)."""
    from ray._private.state import available_resources_per_node, total_resources_per_node

    return dict(total_resources_per_node()), dict(available_resources_per_node())


def draining_nodes() -> dict[str, int]:
    """Nodes being drained (`ray drain-node`, the autoscaler's and KubeRay's spot notice): {node id: deadline in ms
    since the epoch, 0 = none}. Ray Train V2 polls the same call for its own worker groups; a trial that trains in
    its Tune actor has no Train controller to ask, so its search's scheduler asks (search.drain_moves)."""
    from ray._private.state import state

    return dict(state.get_draining_nodes() or {})
