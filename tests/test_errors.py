"""Errors mean what they say: only a transient tracker failure (connection, 5xx, 429, a locked SQLite file) is
retried; a bug raises at once with its own traceback; "no champion" means the alias does not exist; models are
logged and loaded through their own tracking URI, never MLflow's process-global one. Real stores and servers."""

from __future__ import annotations

import http.server
import json
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from mlflow.exceptions import MlflowException, RestException

from raymlops import tracking
from raymlops.config.schema import DataConfig, DatasetName, ModelConfig, ModelName
from raymlops.core.errors import UserError
from raymlops.post import model_registry


@pytest.fixture
def sqlite_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/mlflow.db"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _counted(fn: Callable[[int], Any]) -> tuple[Callable[[], Any], list[int]]:
    calls: list[int] = []

    def call() -> Any:
        calls.append(1)
        return fn(len(calls))

    return call, calls


def test_a_bug_inside_a_retried_call_raises_at_once_with_its_own_traceback(caplog: pytest.LogCaptureFixture) -> None:
    def broken_step(_: int) -> None:
        {}["missing"]  # the bug

    for wrapper in (
        lambda fn: tracking.retrying(fn, retry_seconds=30),
        lambda fn: tracking.retry_or_outage(fn, retry_seconds=30, skipped="skipped"),
    ):
        fn, calls = _counted(broken_step)
        with pytest.raises(KeyError) as err:
            wrapper(fn)
        assert len(calls) == 1, "a bug is not retried"
        assert any(entry.name == "broken_step" for entry in err.traceback), "its own traceback, down to the bug"
    assert "unreachable" not in caplog.text


def _dead_uri() -> str:
    return f"http://127.0.0.1:{_free_port()}"  # nothing listens here


@pytest.mark.parametrize(
    "failure",
    [
        lambda: ConnectionRefusedError(111, "Connection refused"),
        lambda: TimeoutError("timed out"),
        lambda: RestException({"error_code": "TEMPORARILY_UNAVAILABLE", "message": "busy"}),  # 503
        lambda: RestException({"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "slow down"}),  # 429
        lambda: RestException({"error_code": "INTERNAL_ERROR", "message": "server error"}),  # 500
        lambda: _http_error(503),
        lambda: _http_error(429),
        lambda: _sqlite_locked(),
    ],
    ids=["refused", "timeout", "503", "429", "500", "http-503", "http-429", "sqlite-locked"],
)
def test_transient_failures_are_retried(failure: Callable[[], Exception]) -> None:
    def flaky(n: int) -> str:
        if n == 1:
            raise failure()
        return "ok"

    fn, calls = _counted(flaky)
    assert tracking.retrying(fn, retry_seconds=30) == "ok" and len(calls) == 2


def _http_error(status: int) -> requests.HTTPError:
    reply = requests.Response()
    reply.status_code = status
    return requests.HTTPError(f"{status}", response=reply)


def _sqlite_locked() -> Exception:
    """A real "database is locked": another connection holds the write lock."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        db = f"{tmp}/lock.db"
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            sqlite3.connect(db, timeout=0).execute("CREATE TABLE t (x)")
        except sqlite3.OperationalError as err:
            return err
        finally:
            holder.close()
    raise AssertionError("the lock was not held")


def test_refusals_and_missing_resources_are_not_retried(sqlite_uri: str) -> None:
    c = tracking.client(sqlite_uri)
    fn, calls = _counted(lambda _: c.get_registered_model("no-such-model"))
    with pytest.raises(MlflowException) as err:
        tracking.retrying(fn, retry_seconds=30)
    assert err.value.error_code == "RESOURCE_DOES_NOT_EXIST" and len(calls) == 1
    for refused in ({"error_code": "PERMISSION_DENIED", "message": "no"}, {"error_code": "INVALID_PARAMETER_VALUE"}):
        assert not tracking.transient(RestException(refused))
    assert not tracking.transient(MlflowException("a client-side check failed"))
    assert not tracking.transient(_http_error(404)) and not tracking.transient(ValueError("bad"))


def test_a_real_outage_is_transient_and_its_points_are_spooled(tmp_path: Path) -> None:
    """MLflow's REST client wraps a refused connection in an MlflowException; it is retried, and the logger
    keeps the points in its spool."""
    dead = _dead_uri()
    fn, calls = _counted(lambda _: tracking.client(dead).get_experiment_by_name("x"))
    with pytest.raises(MlflowException) as err:
        tracking.retrying(fn, retry_seconds=1)
    assert tracking.transient(err.value) and len(calls) >= 2
    logger = tracking.RunLogger(dead, "run0000deadbeef", spool_dir=str(tmp_path / "spool"), retry_seconds=0.5)
    logger.log_metrics({"val_acc": 0.5}, step=1)
    assert logger.flush(timeout_s=60)
    assert '"val_acc", 0.5' in (tmp_path / "spool" / "run0000deadbeef.jsonl").read_text()


def _champion_store(uri: str, tmp_path: Path) -> None:
    c = tracking.client(uri)
    c.create_registered_model("m")
    version = c.create_model_version("m", (tmp_path / "model").as_uri())
    c.set_registered_model_alias("m", "champion", version.version)


def test_no_champion_only_when_the_model_or_alias_does_not_exist(sqlite_uri: str, tmp_path: Path) -> None:
    _champion_store(sqlite_uri, tmp_path)
    assert model_registry.alias_version(sqlite_uri, "m", "champion") == "1"
    assert model_registry.alias_version(sqlite_uri, "m", "challenger") is None
    assert model_registry.alias_version(sqlite_uri, "no-such-model", "champion") is None


def test_champion_lookup_on_an_unreachable_server_is_a_clear_error() -> None:
    with pytest.raises(UserError, match="unreachable for 1s looking up m@champion"):
        model_registry.alias_version(_dead_uri(), "m", "champion", retry_seconds=1)


@pytest.fixture
def answering() -> Iterator[Callable[[int, dict[str, Any]], tuple[str, list[str]]]]:
    """A real HTTP server that answers every request with one status and JSON body; counts requests."""
    servers: list[http.server.HTTPServer] = []

    def start(status: int, body: dict[str, Any]) -> tuple[str, list[str]]:
        seen: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                seen.append(self.path)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None: ...

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{server.server_address[1]}", seen

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_champion_lookup_refused_names_the_credential_variables(answering: Any) -> None:
    uri, seen = answering(403, {"error_code": "PERMISSION_DENIED", "message": "Permission denied"})
    with pytest.raises(UserError, match="MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"):
        model_registry.alias_version(uri, "m", "champion", retry_seconds=30)
    assert len(seen) == 1, "a refusal is not retried"


def test_a_503_from_a_real_server_is_retried(answering: Any) -> None:
    uri, seen = answering(503, {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "busy"})
    with pytest.raises(UserError, match="unreachable"):
        model_registry.alias_version(uri, "m", "champion", retry_seconds=1)
    assert len(seen) >= 2


def test_models_are_logged_registered_and_loaded_through_their_own_uri(tmp_path: Path) -> None:
    """With MLflow's global URI pointing elsewhere, a model is logged, registered and loaded by URI."""
    import mlflow
    import torch

    from raymlops.data import load_splits
    from raymlops.models.small_images import build_model
    from raymlops.post.evaluation import load_logged_model
    from raymlops.serving.batch_inference import model_classes
    from raymlops.training.model_io import log_model

    elsewhere = f"sqlite:///{tmp_path}/elsewhere.db"
    mlflow.set_tracking_uri(elsewhere)
    try:
        uri = f"sqlite:///{tmp_path}/mlflow.db"
        exp = tracking.ensure_experiment(uri, "errors", str(tmp_path / "artifacts"))
        run_id = tracking.find_or_create_run(uri, exp, "job", "job", {})
        splits = load_splits(
            DataConfig(name=DatasetName.synthetic, num_train=60, num_test=8, num_classes=10, image_size=32, val_fraction=0.1),
            seed=0,
        )
        model = build_model(ModelConfig(name=ModelName.fast_cnn, width=8), splits.channels, splits.num_classes).eval()
        model_uri = log_model(uri, run_id, model, splits)
        version = model_registry.register(uri, model_uri, "m", run_id, {"test_acc": 0.5})
        model_registry.promote(uri, "m", version)
        loaded = load_logged_model(uri, "models:/m@champion")
        x = torch.rand(2, splits.channels, 32, 32)
        assert torch.equal(loaded(x), model(x))
        assert model_classes(uri, f"runs:/{run_id}/model") == splits.classes
        assert mlflow.get_tracking_uri() == elsewhere, "nothing set the process-global URI"
        assert not tracking.client(elsewhere).search_registered_models()
    finally:
        mlflow.set_tracking_uri(None)


class _Result:
    """The two fields of a Tune Result that finish reads."""

    def __init__(self, error: Exception | None = None, metrics: dict[str, Any] | None = None):
        self.error, self.metrics = error, metrics


def test_a_search_with_failed_or_never_run_trials_is_incomplete_and_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    from raymlops.config.schema import Config, TuneConfig
    from raymlops.core.errors import Incomplete, cli
    from raymlops.post.finish import incomplete_reason, never_ran

    results = [_Result(metrics={"val_acc": 0.5}), _Result(RuntimeError("ActorDiedError: node 3 lost")), _Result()]
    rows, errors = [{"val_acc": 0.5}], [results[1]]
    assert never_ran(TuneConfig(num_samples=5), results, rows, errors) == 1 + 2  # one silent, two never created
    assert never_ran(TuneConfig(num_samples=1), [results[0]] * 4, rows * 4, []) == 0  # a grid makes more
    summary = {"errored": 1, "never_ran": 3, "trials": 1, "parent_run_id": "p1"}
    reason = incomplete_reason(Config(), summary, results)
    assert reason and "1 trial(s) failed after" in reason and "node 3 lost" in reason and "3 trial(s) never ran" in reason
    assert incomplete_reason(Config(), {**summary, "errored": 0, "never_ran": 0}, results) is None

    @cli
    def search(argv: list[str]) -> None:
        raise Incomplete(reason)

    with pytest.raises(SystemExit) as exit_info:
        search([])
    assert exit_info.value.code == 3
    assert capsys.readouterr().err.startswith("raymlops: incomplete: 1 trial(s) failed")
