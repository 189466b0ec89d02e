"""Every private Ray API raymlops uses (raymlops.ray_internals), checked against the installed Ray: each test
fails loudly when an upgrade moves, renames or reshapes what the package relies on. No cluster needed."""

from __future__ import annotations

import importlib
import inspect
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from raymlops import ray_internals


def _module_logger(module_name: str) -> str:
    return str(importlib.import_module(module_name).logger.name)


def test_logger_names_are_the_ones_ray_logs_through() -> None:
    assert _module_logger("ray.train._internal.storage") == ray_internals.TRAIN_STORAGE_LOGGER
    assert _module_logger("ray._private.authentication.authentication_token_setup") == ray_internals.TOKEN_SETUP_LOGGER
    setup = importlib.import_module(ray_internals.TOKEN_SETUP_LOGGER)
    # launch.ray_output drops exactly this notice
    assert "Token authentication is enabled for this Ray cluster" in inspect.getsource(setup)


def test_train_v2_report_logger_is_named_by_its_file() -> None:
    from ray.train.v2._internal.execution import context

    name = ray_internals.train_v2_report_logger()
    assert name == context.__file__ == context.logger.name
    assert "Reporting training result" in inspect.getsource(context)
    ray_internals.quiet(name)
    assert logging.getLogger(name).level == logging.WARNING


def test_tune_trial_fs_path_reads_the_trial_storage_context() -> None:
    from ray.train._internal.session import get_storage
    from ray.train._internal.storage import StorageContext

    assert not inspect.signature(get_storage).parameters
    assert isinstance(inspect.getattr_static(StorageContext, "trial_fs_path"), property)
    with pytest.warns(UserWarning):  # outside a trial Ray warns and has no storage context
        assert ray_internals.tune_trial_fs_path() is None


def _train_snapshot(names: list[str]) -> str:
    """A snapshot as Train V2's CheckpointManager._save_state writes it."""
    from ray.train.v2._internal.execution.checkpoint.checkpoint_manager import (
        _CheckpointManagerState,
        _TrainingResultState,
    )

    results = [_TrainingResultState(checkpoint_dir_name=n, metrics={"epoch": i}) for i, n in enumerate(names)]
    state = _CheckpointManagerState(
        checkpoint_results=results,
        checkpoint_report_indices=list(range(len(results))),
        latest_checkpoint_result=results[-1],
        pending_training_results=[],
        pending_validation_specs=[],
        current_report_index=len(results),
        validated_checkpoint_dir_names=[],
        timed_out_validation_checkpoint_dir_names=[],
        failed_validation_checkpoint_dir_names=[],
    )
    return str(state.json())


def test_train_checkpoint_snapshot_names_every_registered_checkpoint(tmp_path: Path) -> None:
    from ray.train.v2._internal import constants
    from ray.train.v2._internal.execution.checkpoint import checkpoint_manager

    assert constants.CHECKPOINT_MANAGER_SNAPSHOT_FILENAME == ray_internals.TRAIN_SNAPSHOT_FILE
    assert "manager_snapshot.json()" in inspect.getsource(checkpoint_manager.CheckpointManager._save_state)  # what we read
    assert "extract_checkpoint_dir_name_from_path" in inspect.getsource(checkpoint_manager._get_state_from_training_result)
    assert ray_internals.unregistered_by_train(tmp_path, ["checkpoint_a"]) is None  # no snapshot yet
    kept = ["checkpoint_2026-01-01_00-00-01.000001", "checkpoint_2026-01-01_00-00-02.000002"]
    (tmp_path / ray_internals.TRAIN_SNAPSHOT_FILE).write_text(_train_snapshot(kept))
    orphan = "checkpoint_2026-01-01_00-00-03.000003"
    assert ray_internals.unregistered_by_train(tmp_path, [*kept, orphan, "checkpoint_2026"]) == [orphan, "checkpoint_2026"]


def test_restored_run_config_is_the_one_the_restored_tuner_runs_with(tmp_path: Path) -> None:
    from ray import tune
    from ray.tune.impl.tuner_internal import TunerInternal

    def trainable(config: dict[str, Any]) -> None:
        return None

    assert "_local_tuner" in tune.Tuner.__annotations__
    assert "get_run_config" in vars(TunerInternal)
    first = tune.Callback()
    tune.Tuner(trainable, run_config=tune.RunConfig(name="s", storage_path=str(tmp_path), callbacks=[first]))
    restored = tune.Tuner.restore(str(tmp_path / "s"), trainable=trainable)
    run_config = ray_internals.restored_run_config(restored)
    assert [type(cb) for cb in run_config.callbacks] == [tune.Callback]  # read back from tuner.pkl
    fresh = tune.Callback()
    run_config.callbacks = [fresh]
    assert ray_internals.restored_run_config(restored).callbacks == [fresh]  # the live object, not a copy


def test_searcher_live_trials_is_the_set_that_limits_concurrency(tmp_path: Path) -> None:
    from ray import tune
    from ray.tune.experiment import Experiment
    from ray.tune.search import ConcurrencyLimiter, Searcher
    from ray.tune.search.basic_variant import BasicVariantGenerator
    from ray.tune.search.search_generator import SearchGenerator

    def trainable(config: dict[str, Any]) -> None:
        return None

    grid = BasicVariantGenerator(max_concurrent=1)
    grid.add_configurations([Experiment("s", run=trainable, config={"a": tune.grid_search([1, 2])}, storage_path=str(tmp_path))])
    first = grid.next_trial()
    assert first is not None and grid.next_trial() is None  # one live trial: the limit
    live = ray_internals.searcher_live_trials(grid)
    assert live == {first.trial_id}
    live.discard(first.trial_id)  # what PromotionASHA does to a paused trial
    assert grid.next_trial() is not None

    class One(Searcher):
        def suggest(self, trial_id: str) -> dict[str, Any]:
            return {"a": 1}

    limiter = ConcurrencyLimiter(One(metric="m", mode="max"), max_concurrent=1)
    assert limiter.suggest("t1") and limiter.suggest("t2") is None
    live = ray_internals.searcher_live_trials(SearchGenerator(limiter))
    assert live == {"t1"}
    live.discard("t1")
    assert limiter.suggest("t2") is not None
    assert ray_internals.searcher_live_trials(object()) is None


def test_driver_log_printer_is_wrapped_in_both_places(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray._private import worker
    from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher

    assert list(inspect.signature(worker.print_to_stdstream).parameters) == ["data", "ignore_prefix"]
    assert list(inspect.signature(worker._should_ignore_worker_log_prefix).parameters) == ["worker"]
    assert '"ray_print_logs"' in inspect.getsource(worker.connect)  # the handler name ray.init registers
    printed: list[list[str]] = []
    monkeypatch.setattr(worker, "print_to_stdstream", lambda data, ignore_prefix: printed.append(data["lines"]))
    monkeypatch.setattr(dispatcher, "handlers", [("ray_print_logs", lambda data: None)])
    assert ray_internals.wrap_driver_log_printer(lambda lines: [line for line in lines if "noise" not in line])
    dispatcher.emit({"lines": ["kept", "noise here"], "pid": 1})
    worker.print_to_stdstream({"lines": ["noise"]}, ignore_prefix=False)  # the error channel's path
    worker.print_to_stdstream({"lines": ["error"]}, ignore_prefix=False)
    assert printed == [["kept"], ["error"]]
    assert ray_internals.wrap_driver_log_printer(lambda lines: lines)  # once only
    assert [name for name, _ in dispatcher.handlers] == ["ray_print_logs"]


def test_auth_mode_name_reads_the_raylet() -> None:
    from ray._private.authentication import authentication_utils
    from ray._raylet import get_authentication_mode  # type: ignore[attr-defined]

    assert list(inspect.signature(authentication_utils.get_authentication_mode_name).parameters) == ["mode"]
    assert get_authentication_mode() is not None
    assert ray_internals.auth_mode_name() in ("disabled", "token")


def test_use_token_auth_turns_token_mode_on_after_ray_was_imported() -> None:
    import subprocess
    import sys

    code = "import ray; from raymlops import ray_internals as r; a = r.auth_mode_name(); r.use_token_auth(); print(a, r.auth_mode_name())"
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"} | {"RAY_AUTH_MODE": "disabled"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["disabled", "token"], out.stdout + out.stderr


def test_probe_gcs_names_an_address_nobody_listens_on() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused at once
        assert ray_internals.probe_gcs(f"127.0.0.1:{port}", "any-token", timeout_s=5) == "unreachable: unavailable"


def test_gcs_node_groups_reads_the_cluster_config_shape() -> None:
    from ray._private.state import state
    from ray.core.generated import autoscaler_pb2

    assert not inspect.signature(state.get_cluster_config).parameters
    assert "node_group_configs" in autoscaler_pb2.ClusterConfig.DESCRIPTOR.fields_by_name
    assert {"resources", "max_count"} <= set(autoscaler_pb2.NodeGroupConfig.DESCRIPTOR.fields_by_name)
    assert ray_internals.gcs_node_groups() == []  # not connected


def test_session_dir_is_none_before_ray_starts() -> None:
    """session_dir() reads ray._private.worker._global_node (the live check with a cluster: tests/test_monitoring.py)."""
    import ray

    from raymlops.ray_internals import session_dir

    if not ray.is_initialized():
        assert session_dir() is None


def test_lean_torch_trainer_drops_only_the_dataset_manager_callback(tmp_path: Path) -> None:
    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.train.v2._internal.callbacks.datasets import DatasetsCallback

    def build(cls: Any, **kwargs: Any) -> Any:
        run_config = ray.train.RunConfig(name="lean", storage_path=str(tmp_path))
        return cls(lambda: None, scaling_config=ray.train.ScalingConfig(num_workers=1), run_config=run_config, **kwargs)

    lean = ray_internals.torch_trainer_class()
    assert issubclass(lean, TorchTrainer)
    stock = [type(cb) for cb in build(TorchTrainer)._create_default_callbacks()]
    assert DatasetsCallback in stock  # what Train V2 adds for every run: the thing dropped
    kept = [type(cb) for cb in build(lean)._create_default_callbacks()]
    assert kept == [cls for cls in stock if cls is not DatasetsCallback]
    with_data = build(lean, datasets={"train": lambda: None})  # a dataset factory: never called here
    assert DatasetsCallback in [type(cb) for cb in with_data._create_default_callbacks()]


def test_draining_nodes_reads_the_state_api_ray_train_polls() -> None:
    """draining_nodes() is the call Ray Train V2's preemption watcher makes (the live check, `ray drain-node` on a
    token-auth cluster: tests/test_node_loss.py)."""
    from ray._private.state import state
    from ray.train.v2._internal.execution import preemption

    assert not inspect.signature(state.get_draining_nodes).parameters
    assert "get_draining_nodes()" in inspect.getsource(preemption._get_draining_nodes)
