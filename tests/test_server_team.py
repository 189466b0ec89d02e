"""A tracking server a team shares, for real: one PostgreSQL + `mlflow server --app-name basic-auth` over
HTTPS (a self-signed pair for 127.0.0.1), least privilege (NO_PERMISSIONS by default), users and grants
made with `python -m raymlops.server user|grant|revoke`; READ / EDIT / MANAGE / nothing tried as each
user; a search over https; backup, wipe, restore into a fresh folder, and everything back.

One server for the module (starting one costs ~15 s idle, far more on a loaded 2-core machine)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import postgres_state_dir
from helpers import free_port

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parent.parent
ADMIN = ("admin", "Adm1n-team-Pa55-xyz")
USERS = {"reader": "READ", "editor": "EDIT", "manager": "MANAGE"}
PASSWORDS = {name: f"{name}-Pa55-{name[::-1]}-42" for name in [*USERS, "outsider"]}
EXPERIMENT = "raymlops-smoke"  # +experiment=smoke with mlflow=server


def _clean_env(**extra: str) -> dict[str, str]:
    drop = (
        "RAY_ADDRESS",
        "MLFLOW_TRACKING_URI",  # earlier tests in this process set it (mlflow.set_tracking_uri)
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
        "MLFLOW_TRACKING_SERVER_CERT_PATH",
    )
    return {**{k: v for k, v in os.environ.items() if k not in drop}, **extra}


def _server(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "raymlops.server", *args],
        cwd=REPO,
        env=env or _clean_env(),
        timeout=300,
        capture_output=True,
        text=True,
        check=True,
    )


@contextlib.contextmanager
def as_user(team: dict[str, Any], name: str, password: str | None = None) -> Iterator[Any]:
    """This process talks to the server as `name` (MLflow's client reads the credentials per request)."""
    from mlflow.tracking import MlflowClient

    saved = {
        k: os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_SERVER_CERT_PATH")
    }
    os.environ.update(
        MLFLOW_TRACKING_USERNAME=name,
        MLFLOW_TRACKING_PASSWORD=password or (ADMIN[1] if name == ADMIN[0] else PASSWORDS[name]),
        MLFLOW_TRACKING_SERVER_CERT_PATH=team["cert"],
    )
    try:
        yield MlflowClient(team["uri"])
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _cli(team: dict[str, Any], user: str, *args: str, **env: str) -> None:
    """`python -m raymlops.server ARGS --state STATE` in this process, as `user`."""
    from raymlops.server.cli import main

    with as_user(team, user), pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        main([*args, "--state", str(team["state"])])


def _start(state: Path, *extra: str) -> None:
    _server(
        "start",
        "--state",
        str(state),
        *extra,
        env=_clean_env(MLFLOW_TRACKING_USERNAME=ADMIN[0], MLFLOW_TRACKING_PASSWORD=ADMIN[1]),
    )


@pytest.fixture(scope="module")
def team() -> Iterator[dict[str, Any]]:
    state = postgres_state_dir("team")
    port, pg_port = free_port(), free_port()
    info: dict[str, Any] = {
        "state": state,
        "uri": f"https://127.0.0.1:{port}",
        "cert": str(state / "tls" / "server.crt"),
        "pg_port": pg_port,
    }
    try:
        _start(
            state,
            "--port",
            str(port),
            "--pg-port",
            str(pg_port),
            "--auth",
            "--default-permission",
            "NO_PERMISSIONS",
            "--tls-self-signed",
        )
        with as_user(info, ADMIN[0]) as admin:
            info["experiment_id"] = admin.create_experiment(EXPERIMENT)
        for name in PASSWORDS:
            _cli(info, ADMIN[0], "user", "add", name, RAYMLOPS_USER_PASSWORD=PASSWORDS[name])
        for name, permission in USERS.items():
            _cli(info, ADMIN[0], "grant", name, "--experiment", EXPERIMENT, "--permission", permission)
        yield info
    finally:
        _server("stop", "--state", str(state))
        shutil.rmtree(state, ignore_errors=True)


def _tune(team: dict[str, Any], user: str, tmp_path: Path, *extra: str, cert: bool = True) -> subprocess.CompletedProcess[str]:
    env = _clean_env(MLFLOW_TRACKING_URI=team["uri"], MLFLOW_TRACKING_USERNAME=user, MLFLOW_TRACKING_PASSWORD=PASSWORDS[user])
    if cert:
        env["MLFLOW_TRACKING_SERVER_CERT_PATH"] = team["cert"]
    args = ["+experiment=smoke", "mlflow=server", f"storage_path={tmp_path}/results", f"mlflow.spool_dir={tmp_path}/spool"]
    return subprocess.run(
        [sys.executable, "-m", "raymlops.tune", *args, "ray.num_cpus=2", *extra],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_users_and_permissions(team: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mlflow.exceptions import MlflowException

    from raymlops.core.errors import UserError
    from raymlops.server import users
    from raymlops.tracking import check_reachable

    exp_id = team["experiment_id"]
    capsys.readouterr()
    _cli(team, ADMIN[0], "user", "list")
    listed = capsys.readouterr().out.split()
    assert {"admin", *PASSWORDS} <= set(listed), listed
    # EDIT logs; it may not delete the experiment
    with as_user(team, "editor") as editor:
        run_id = editor.create_run(exp_id).info.run_id
        editor.log_metric(run_id, "loss", 0.5, step=1)
        with pytest.raises(MlflowException, match="Permission denied"):
            editor.delete_experiment(exp_id)
    # READ reads; it may not log, and raymlops.tune stops before Ray with one clear line
    with as_user(team, "reader") as reader:
        assert run_id in {r.info.run_id for r in reader.search_runs([exp_id])}
        with pytest.raises(MlflowException, match="Permission denied"):
            reader.log_metric(run_id, "loss", 0.4, step=2)
    proc = _tune(team, "reader", tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"user reader may not write to experiment {EXPERIMENT}" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "results").exists(), "it stopped before preflight went on (storage, data, Ray)"
    # no permission: nothing of the experiment is visible
    with as_user(team, "outsider") as outsider:
        assert exp_id not in {e.experiment_id for e in outsider.search_experiments()}
        with pytest.raises(MlflowException, match="Permission denied"):
            outsider.get_run(run_id)
    # MANAGE deletes and grants (and revokes) for others
    with as_user(team, "manager") as manager:
        manager.delete_run(run_id)
    _cli(team, "manager", "grant", "outsider", "--experiment", EXPERIMENT, "--permission", "READ")
    with as_user(team, "outsider") as outsider:
        assert outsider.get_experiment(exp_id).name == EXPERIMENT
    _cli(team, "manager", "revoke", "outsider", "--experiment", EXPERIMENT)
    with as_user(team, "outsider") as outsider, pytest.raises(MlflowException, match="Permission denied"):
        outsider.get_experiment(exp_id)
    # a wrong password: the existing clear error, no password in it
    with as_user(team, "editor", "not-the-Pa55word-9"), pytest.raises(UserError, match="rejected the credentials") as err:
        check_reachable(team["uri"])
    assert "not-the-Pa55word-9" not in str(err.value)
    # remove a user; a second `user add` of the same name is refused in one line
    _cli(team, ADMIN[0], "user", "add", "tmp-user", RAYMLOPS_USER_PASSWORD="tmp-Pa55-word-77")
    _cli(team, ADMIN[0], "user", "remove", "tmp-user")
    with as_user(team, ADMIN[0]):
        assert "tmp-user" not in {u["username"] for u in users.list_users(team["uri"])}


def test_search_over_https_and_no_password_anywhere(team: dict[str, Any], tmp_path: Path) -> None:
    proc = _tune(team, "editor", tmp_path, "tune.num_samples=1", "tune.max_concurrent_trials=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    with as_user(team, "editor") as editor:
        runs = editor.search_runs([team["experiment_id"]], filter_string="tags.`raymlops.role` = 'trial'")
        assert len(runs) == 1 and all(editor.get_metric_history(r.info.run_id, "val_acc") for r in runs)
        logged = [str(v) for r in runs for v in (*r.data.params.values(), *r.data.tags.values())]
    # without the CA bundle the client stops with a message naming the variable
    from raymlops.core.errors import UserError
    from raymlops.tracking import check_reachable

    with pytest.raises(UserError, match="MLFLOW_TRACKING_SERVER_CERT_PATH"):
        check_reachable(team["uri"])
    # no password in params, tags, output, ps, or any file of the state folder (PostgreSQL keeps hashes)
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    files = [p for p in team["state"].rglob("*") if p.is_file()]
    contents = b"".join(p.read_bytes() for p in files)
    for password in [ADMIN[1], *PASSWORDS.values()]:
        assert not any(password in v for v in logged)
        assert password not in proc.stdout + proc.stderr and password not in ps
        assert password.encode() not in contents


TABLE_DIGESTS = """SELECT string_agg(format('%s %s', tablename, (xpath('/row/d/text()', query_to_xml(format(
  'SELECT count(*) || '' '' || md5(coalesce(string_agg(t::text, ''|'' ORDER BY t::text), '''')) AS d FROM %I t',
  tablename), false, true, '')))[1]::text), ', ' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'"""


def _table_digests(pg_port: int) -> dict[str, str]:
    """Row count and md5 of all rows of every table of both databases: every run, param, tag, metric
    point, model version, alias, user and permission, in two queries."""
    from raymlops.server.postgres import AUTH_DB, TRACKING_DB, psql

    return {db: psql(pg_port, db, TABLE_DIGESTS) for db in (TRACKING_DB, AUTH_DB)}


def _through_the_server(team: dict[str, Any], run_id: str, tmp: Path) -> dict[str, Any]:
    """What the (restored) server serves: runs, one run's metric points and artifact, the alias, users, grants."""
    from mlflow.entities import ViewType

    from raymlops.server import users

    with as_user(team, ADMIN[0]) as c:
        runs = sorted(r.info.run_id for r in c.search_runs([team["experiment_id"]], run_view_type=ViewType.ALL))
        points = [(m.step, m.value) for m in c.get_metric_history(run_id, "acc")]
        weights = Path(c.download_artifacts(run_id, "model/weights.txt", str(tmp))).read_text()
        alias = c.get_model_version_by_alias("team-model", "champion").run_id
        auth = users.auth_client(team["uri"])
        grants = {u: auth.get_user_permission(u, "experiment", team["experiment_id"]).permission for u in PASSWORDS}
        grants["manager on team-model"] = auth.get_user_permission("manager", "registered_model", "team-model").permission
        names = sorted(u["username"] for u in users.list_users(team["uri"]))
    return {"runs": runs, "points": points, "weights": weights, "alias": alias, "grants": grants, "users": names}


def _files(folder: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*") if p.is_file())


def test_backup_wipe_restore(team: dict[str, Any], tmp_path: Path) -> None:
    with as_user(team, ADMIN[0]) as admin:  # a run, metric points, an artifact, a model with an alias, a model grant
        run_id = admin.create_run(team["experiment_id"], run_name="for-backup").info.run_id
        for step in range(5):
            admin.log_metric(run_id, "acc", 0.1 * step, step=step)
        (tmp_path / "weights.txt").write_text("w" * 100)
        admin.log_artifact(run_id, str(tmp_path / "weights.txt"), "model")
        admin.create_registered_model("team-model")
        admin.create_model_version("team-model", f"runs:/{run_id}/model", run_id=run_id)
        admin.set_registered_model_alias("team-model", "champion", "1")
    _cli(team, ADMIN[0], "grant", "manager", "--model", "team-model", "--permission", "MANAGE")
    before, digests = _through_the_server(team, run_id, tmp_path / "before"), _table_digests(team["pg_port"])
    assert before["runs"] and before["points"] == [(s, 0.1 * s) for s in range(5)] and before["alias"] == run_id
    assert before["grants"] == {**USERS, "outsider": "NO_PERMISSIONS", "manager on team-model": "MANAGE"}
    artifacts = _files(team["state"] / "mlartifacts")
    backup = tmp_path / "backup"
    _server("backup", "--state", str(team["state"]), "--to", str(backup))
    # wipe: both processes stopped and the whole state folder gone
    _server("stop", "--state", str(team["state"]))
    shutil.rmtree(team["state"])
    fresh = postgres_state_dir("restored")
    port, pg_port = free_port(), free_port()
    try:
        _server("restore", "--from", str(backup), "--state", str(fresh), "--port", str(port), "--pg-port", str(pg_port))
        _start(fresh)  # auth, TLS and the default permission come back from the backup's settings
        restored = {**team, "state": fresh, "uri": f"https://127.0.0.1:{port}", "cert": str(fresh / "tls" / "server.crt")}
        assert _through_the_server(restored, run_id, tmp_path / "after") == before
        assert _table_digests(pg_port) == digests
        assert _files(fresh / "mlartifacts") == artifacts and artifacts
    finally:
        _server("stop", "--state", str(fresh))
        shutil.rmtree(fresh, ignore_errors=True)
