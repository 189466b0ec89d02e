"""Security: credentials never leave the process (MLflow params and tags, printed output, logs,
error messages, files a run writes, Ray's own logs), the local Ray dashboard and MLflow server bind
127.0.0.1, and nothing from a config or an image folder is executed.

Run: .venv/bin/python -m pytest tests/test_security.py -q   (~40 s; one real search on a local Ray)
"""

from __future__ import annotations

import ast
import inspect
import json
import logging
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from helpers import free_port
from PIL import Image

from raymlops import config as config_mod
from raymlops import tracking
from raymlops.core.errors import UserError

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "raymlops"
PW = "pa55-Hunter2-inUri"  # a password inside a URI or a key=value pair
ENV_SECRETS = {  # credential env vars a user has set while running raymlops
    "AWS_SECRET_ACCESS_KEY": "awsSecretValue-9f8e7d",
    "MLFLOW_TRACKING_PASSWORD": "trackingPassword-1a2b3c",
    "MYAPP_API_TOKEN": "apiTokenValue-4d5e6f",
}
PG_URI = f"postgresql://mlflow:{PW}@db.internal:5432/mlflow"


def _env(**extra: str) -> dict[str, str]:
    drop = ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "RAYMLOPS_DEBUG", "RAYMLOPS_STORAGE_PATH")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(PYTHONUNBUFFERED="1", RAY_AUTH_MODE="disabled", **extra)
    return env


def _leaks(text: str) -> list[str]:
    return [s for s in (PW, *ENV_SECRETS.values()) if s in text]


def _files_with_secrets(*roots: Path) -> list[str]:
    hits = []
    needles = [s.encode() for s in (PW, *ENV_SECRETS.values())]
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink() and not path.is_socket():
                try:
                    blob = path.read_bytes()
                except OSError:
                    continue
                hits += [f"{path}: {n.decode()}" for n in needles if n in blob]
    return hits


# ------------------------------------------------------------------ one real search


@pytest.mark.ray
def test_a_real_search_leaks_no_credential(tmp_path: Path) -> None:
    """A whole search (trial, evaluation, registry) with credential env vars set: the secrets appear in
    no output, no MLflow param or tag, no file the run wrote and none of Ray's session logs; the
    dashboard it prints and the `mlflow ui` it suggests are on 127.0.0.1."""
    ray_tmp = Path(tempfile.mkdtemp(prefix="rsec", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cmd = [
        sys.executable, "-m", "raymlops.tune", "+experiment=smoke", "tune.num_samples=1", "train.epochs=1", "ray.num_cpus=2",
        "ray.include_dashboard=true",  # the dashboard line it prints is checked below
        f"mlflow.tracking_uri={uri}", f"mlflow.artifact_location={tmp_path}/artifacts",
        f"mlflow.spool_dir={tmp_path}/spool", f"storage_path={tmp_path}/results",
    ]  # fmt: skip
    try:
        proc = subprocess.run(
            cmd, cwd=tmp_path, env=_env(RAY_TMPDIR=str(ray_tmp), **ENV_SECRETS), capture_output=True, text=True, timeout=300
        )
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, output[-3000:]
        assert not _leaks(output), output[-3000:]
        dashboard = re.search(r"dashboard: (\S+)", proc.stdout)
        assert dashboard and dashboard.group(1).startswith("http://127.0.0.1:"), proc.stdout[-2000:]
        assert "mlflow ui --backend-store-uri" in proc.stdout and "--host 127.0.0.1" in proc.stdout
        assert not _files_with_secrets(tmp_path)  # MLflow DB, artifacts, checkpoints, Tune's results
        # Ray's own session logs: raymlops sends no credential to a local cluster (its workers inherit the
        # environment). Ray Tune itself forwards AWS_* keys to trial actors (ray/tune/execution/class_cache.py)
        # and Ray's runtime_env agent logs that env at INFO: the one known exception (README, Security).
        aws = {ENV_SECRETS["AWS_SECRET_ACCESS_KEY"]}
        ray_hits = [
            h
            for h in _files_with_secrets(ray_tmp)
            if not (h.split(": ")[0].endswith("runtime_env_agent.log") and h.split(": ")[1] in aws)
        ]
        assert not ray_hits

        client = tracking.client(uri)
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
        assert len(runs) >= 2  # the search's parent run and the trial's child run
        logged = json.dumps([{**r.data.params, **r.data.tags} for r in runs])
        assert "raymlops.command" in logged and "optim.lr" in logged  # what was checked is really there
        assert not _leaks(logged)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


# ------------------------------------------------------------------ redaction, path by path


def test_params_and_tags_reach_mlflow_redacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A credentialed tracking URI on the command line, secret-looking keys and env values in params and
    tags: the real SQLite store holds only `***` (checked in the database file's bytes too)."""
    for name, value in ENV_SECRETS.items():
        monkeypatch.setenv(name, value)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    argv = ["+experiment=smoke", f"mlflow.tracking_uri={PG_URI}", f"storage_path={tmp_path}/results"]
    config = config_mod.compose(argv)  # composing contacts nothing
    experiment = tracking.ensure_experiment(uri, "security", str(tmp_path / "artifacts"))
    run_id = tracking.find_or_create_run(uri, experiment, "sec-1", "sec-1", tracking.lineage(config, argv))
    logger = tracking.RunLogger(uri, run_id, spool_dir=str(tmp_path / "spool"), retry_seconds=10)
    logger.log_params(
        {**tracking.config_params(config), "db_password": PW, "note": f"token={PW}", "aws": ENV_SECRETS["AWS_SECRET_ACCESS_KEY"]}
    )
    logger.set_tags({"api_token": PW, "last_error": f"cannot reach {PG_URI} with {ENV_SECRETS['MYAPP_API_TOKEN']}"})
    assert logger.flush()
    logger.close()

    run = tracking.client(uri).get_run(run_id)
    params, tags = run.data.params, run.data.tags
    assert not _leaks(json.dumps({**params, **tags}))
    assert params["mlflow.tracking_uri"] == "postgresql://mlflow:***@db.internal:5432/mlflow"
    assert params["db_password"] == "***" and params["note"] == "token=***" and params["aws"] == "***"
    assert "mlflow:***@db.internal" in tags["raymlops.command"] and "mlflow:***@" in tags["raymlops.overrides"]
    assert tags["api_token"] == "***" and "mlflow:***@" in tags["last_error"]
    assert not _files_with_secrets(tmp_path)


def test_log_lines_are_redacted(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The entry points' log formatter masks URI passwords, key=value credentials and secret env values,
    whichever library logs them."""
    from raymlops.core.console import setup_logging

    for name, value in ENV_SECRETS.items():
        monkeypatch.setenv(name, value)
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        setup_logging()
        logging.getLogger("raymlops.launch.job").warning("connecting to %s", PG_URI)
        logging.getLogger("mlflow.store").error("login failed: password=%s key %s", PW, ENV_SECRETS["AWS_SECRET_ACCESS_KEY"])
        logging.getLogger("ray.tune").warning("runtime env %s", {"MYAPP_API_TOKEN": ENV_SECRETS["MYAPP_API_TOKEN"]})
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    err = capsys.readouterr().err
    assert "mlflow:***@db.internal" in err and "password=***" in err
    assert not _leaks(err), err


def test_unreachable_credentialed_tracker_message_is_redacted() -> None:
    """The real CLI against `http://user:PASSWORD@127.0.0.1:<nothing listening>`: exit 2, the message
    shows `user:***@`, the password appears nowhere in the output."""
    dead = f"http://user:{PW}@127.0.0.1:{free_port()}"
    proc = subprocess.run(
        [sys.executable, "-m", "raymlops.tune", "+experiment=smoke", f"mlflow.tracking_uri={dead}"],
        cwd=REPO, env=_env(**ENV_SECRETS), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output[-2000:]
    assert "raymlops: error: mlflow.tracking_uri=http://user:***@127.0.0.1:" in proc.stderr
    assert not _leaks(output) and "Traceback" not in output


def test_error_paragraph_is_redacted() -> None:
    """Whatever text a UserError carries, the CLI wrapper masks credentials before printing it."""
    code = (
        "from raymlops.core.errors import cli, UserError\n"
        "import os\n"
        "@cli\n"
        "def main(argv):\n"
        f"    raise UserError('cannot open {PG_URI}; password={PW}; key ' + os.environ['AWS_SECRET_ACCESS_KEY'])\n"
        "main([])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=_env(**ENV_SECRETS), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("raymlops: error: cannot open postgresql://mlflow:***@db.internal"), proc.stderr
    assert "password=***" in proc.stderr and not _leaks(proc.stdout + proc.stderr)


# ------------------------------------------------------------------ listening addresses


def test_local_ray_dashboard_binds_localhost_by_default() -> None:
    """The composed default and what cluster.connect hands ray.init (the real run above checks the URL Ray prints)."""
    from raymlops.launch import cluster

    config = config_mod.compose(["+experiment=quickstart"])
    assert config.ray.dashboard_host == "127.0.0.1"
    source = inspect.getsource(cluster.connect)
    assert "host = rcfg.dashboard_host" in source and "dashboard_host=host" in source
    start = inspect.getsource(cluster.start_local_cluster)
    assert 'dashboard_host: str = "127.0.0.1"' in start and "dashboard_host=dashboard_host" in start


def test_mlflow_server_binds_localhost_by_default() -> None:
    if not (PACKAGE / "server").is_dir():
        pytest.skip("raymlops/server/ (make mlflow-server) is not in this checkout")
    from raymlops import server

    assert server.HOST == "127.0.0.1"
    source = inspect.getsource(server.start_mlflow)
    assert re.search(r'"--host",\s*HOST,', source), "mlflow server must be started with --host HOST"
    assert "listen_addresses={HOST}" in inspect.getsource(server.postgres)  # PostgreSQL too
    recipe = re.search(r"^mlflow-server:.*\n\t(.*)$", (REPO / "Makefile").read_text(), re.MULTILINE)
    assert recipe and "raymlops.server start" in recipe.group(1) and "--host" not in recipe.group(1)


def test_mlflow_server_admin_password_only_in_its_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The auth config file holds no password; the admin's reaches `mlflow server` via its environment, not argv."""
    from raymlops.server.processes import Settings, auth_env, server_args

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ENV_SECRETS["MLFLOW_TRACKING_PASSWORD"])
    env = auth_env(tmp_path, Settings(auth=True, pg_port=5999, default_permission="NO_PERMISSIONS"))
    ini = tmp_path / "basic_auth.ini"
    assert ENV_SECRETS["MLFLOW_TRACKING_PASSWORD"] not in ini.read_text() and "admin_password" not in ini.read_text()
    assert "default_permission = NO_PERMISSIONS" in ini.read_text() and "/mlflow_auth" in ini.read_text()
    assert ini.stat().st_mode & 0o077 == 0
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] == ENV_SECRETS["MLFLOW_TRACKING_PASSWORD"]
    assert not any(ENV_SECRETS["MLFLOW_TRACKING_PASSWORD"] in a for a in server_args("postgresql://x", "/a", auth=True))


def test_user_passwords_never_come_from_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    from raymlops.server import users
    from raymlops.server.cli import parser

    with pytest.raises(SystemExit):
        parser().parse_args(["user", "add", "bob", "--password", "x"])
    monkeypatch.setenv(users.PASSWORD_ENV, "from-the-Env-123")
    assert users.new_password("bob") == "from-the-Env-123"
    monkeypatch.delenv(users.PASSWORD_ENV)
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    with pytest.raises(UserError, match=users.PASSWORD_ENV):
        users.new_password("bob")


# ------------------------------------------------------------------ nothing is executed


FORBIDDEN_CALLS = {"instantiate", "get_class", "get_method", "get_object", "import_module", "unsafe_load", "full_load",
                   "yaml.load", "pickle.load", "pickle.loads", "builtins.eval", "builtins.exec"}  # fmt: skip
FORBIDDEN_BUILTINS = {"eval", "exec", "compile", "__import__"}  # called by bare name (model.eval() is fine)


def _calls(tree: ast.AST) -> list[tuple[str, ast.Call]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
            out.append((f"{owner}.{name}" if owner else name, node))
    return out


def test_package_never_instantiates_or_evaluates_config() -> None:
    """No hydra.utils.instantiate / _target_, eval/exec, dynamic imports or unsafe YAML/pickle loads in the
    package: config values are plain data, and components are chosen by name from fixed tables."""
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hydra.utils"):
                problems.append(f"{path.name}:{node.lineno} imports hydra.utils")
        for name, call in _calls(tree):
            bare = isinstance(call.func, ast.Name)
            if name in FORBIDDEN_CALLS or name.rsplit(".", 1)[-1] in FORBIDDEN_CALLS or (bare and name in FORBIDDEN_BUILTINS):
                problems.append(f"{path.name}:{call.lineno} calls {name}")
        if (
            "_target_" in path.read_text() and path.relative_to(PACKAGE).as_posix() != "config/keys.py"
        ):  # only names it to refuse it
            problems.append(f"{path.name} mentions _target_")
    assert not problems, problems


def test_image_folder_cache_is_loaded_weights_only() -> None:
    """The decoded-image cache lives beside the images (data.root/.cache); it is read with weights_only=True."""
    tree = ast.parse((PACKAGE / "data" / "sources.py").read_text())
    loads = [c for name, c in _calls(tree) if name == "torch.load"]
    assert loads and all(
        any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True for k in c.keywords)
        for c in loads
    )


@pytest.mark.parametrize(
    "override",
    [
        "+model._target_=os.system",
        "+_target_=builtins.exec",
        "+data._target_=torchvision.datasets.ImageFolder",
        "+search_space.model._target_={type:choice,values:[os.system]}",
    ],
)
def test_target_keys_are_refused(override: str) -> None:
    with pytest.raises(UserError) as err:
        config_mod.compose(["+experiment=smoke", override])
    assert "_target_" in str(err.value)


class _Payload:
    """Unpickling this runs `touch MARKER`: what a planted cache file would try."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_planted_pickle_in_an_image_folder_is_not_executed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Someone who can write to an image folder replaces its decode cache with a pickle that runs a
    command: loading the folder does not run it, warns, and decodes the images again."""
    from raymlops.data import image_folder

    root = tmp_path / "images"
    for part in ("train", "test"):
        for cls in ("cat", "dog"):
            (root / part / cls).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (16, 16), (i * 90, 40, 200)).save(root / part / cls / f"{i}.png")
    (root / "train" / "cat" / "evil.py").write_text(f"open({str(tmp_path / 'py-ran')!r}, 'w')\n")  # not an image: never read
    image_folder(root, 16, None)
    caches = list((root / ".cache").glob("imagefolder-*.pt"))
    assert len(caches) == 1
    marker = tmp_path / "pickle-ran"
    caches[0].write_bytes(pickle.dumps(_Payload(marker)))
    with caplog.at_level(logging.WARNING, logger="raymlops.data"):
        (train_x, train_y), _, classes = image_folder(root, 16, None)
    assert not marker.exists() and not (tmp_path / "py-ran").exists()
    assert "rebuilding unreadable data cache" in caplog.text
    assert classes == ["cat", "dog"] and len(train_y) == 4 and tuple(train_x.shape[1:]) == (3, 16, 16)
