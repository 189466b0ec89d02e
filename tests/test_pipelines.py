"""pipelines/: the Airflow DAGs import in the Airflow venv (DagBag), `airflow dags test daily_training` runs end
to end as Ray jobs on a local Ray cluster (slow), and a failed step leaves its MLflow run FAILED with the reason.

The Airflow venv is `make airflow-install`'s .venv-airflow (.ci/run makes it); without it these tests skip.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import REPO
from helpers import free_port, wait_until

from raymlops import tracking
from raymlops.core import names

AIRFLOW_BIN = REPO / ".venv-airflow" / "bin"
needs_airflow = pytest.mark.skipif(
    not (AIRFLOW_BIN / "airflow").exists(),
    reason=f"no Airflow venv at {AIRFLOW_BIN.parent}: run `make airflow-install` (.ci/run does)",
)
DAGS = REPO / "pipelines" / "dags"
TINY = [  # cifar10_fast's recipe on tiny synthetic data: the pipeline, not the accuracy, is under test
    "data.name=synthetic",
    "data.num_train=600",
    "data.num_test=200",
    "data.augment=false",
    "model.width=8",
    "train.epochs=1",
    "train.batch_size=64",
]


def airflow_env(tmp_path: Path, uri: str) -> dict[str, str]:
    return {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "RAYMLOPS_REPO": str(REPO),
        "RAYMLOPS_PYTHON": sys.executable,  # the raymlops venv: the one running these tests
        "MLFLOW_TRACKING_URI": uri,
        "RAYMLOPS_STORAGE_PATH": str(tmp_path / "ray_results"),
        "PYTHONWARNINGS": "ignore",
        "AIRFLOW__CORE__DEFAULT_TASK_RETRIES": "0",  # a failure fails the test now, not after a retry_delay
    }


@needs_airflow
def test_dags_import_in_airflow(tmp_path: Path) -> None:
    script = (
        "import json; from airflow.models.dagbag import DagBag; b = DagBag(include_examples=False); "
        "print(json.dumps({'errors': {k: v[-300:] for k, v in b.import_errors.items()}, "
        "'dags': {d.dag_id: [t.task_id for t in d.tasks] for d in b.dags.values()}}))"
    )
    out = subprocess.run(
        [str(AIRFLOW_BIN / "python"), "-c", script],
        env=airflow_env(tmp_path, f"sqlite:///{tmp_path}/mlflow.db"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    bag = json.loads(out.stdout.strip().splitlines()[-1])
    assert bag["errors"] == {}
    assert bag["dags"]["daily_training"] == ["find_newest_data", "train", "evaluate", "register", "promote_if_better"]
    assert bag["dags"]["weekly_tuning"] == ["find_newest_data", "tune", "champion_decision"]
    assert bag["dags"]["champion_evaluation"] == [
        "find_holdout",
        "evaluate_champion",
        "check_against_registration",
        "check_drift_alert",
    ]


def test_failed_step_leaves_its_runs_failed_with_the_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """run_raymlops (plain Python: no Airflow needed) on a command that fails: the run the task had opened is
    closed FAILED with the error as raymlops.failure_reason; a finished child run keeps FINISHED."""
    sys.path.insert(0, str(DAGS))
    import raymlops_steps

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("RAYMLOPS_PYTHON", sys.executable)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ti = type("TI", (), {"dag_id": "daily_training", "run_id": "manual__1", "task_id": "train", "try_number": 2})()
    tag = {names.TAG_PIPELINE_RUN: "daily_training/manual__1/train/try2"}
    c = tracking.client(uri)
    exp = tracking.ensure_experiment(uri, "raymlops-pipeline", str(tmp_path / "artifacts"))
    top = c.create_run(exp, tags=tag).info.run_id
    done = c.create_run(exp, tags={**tag, names.TAG_PARENT: top}).info.run_id
    c.set_terminated(done, "FINISHED")
    other = c.create_run(exp, tags={names.TAG_PIPELINE_RUN: "daily_training/manual__1/train/try1"}).info.run_id
    with pytest.raises(raymlops_steps.RaymlopsStepFailed, match="no_such_experiment"):
        raymlops_steps.run_raymlops("train", ["+experiment=no_such_experiment"], {"ti": ti})
    failed = c.get_run(top)
    assert failed.info.status == "FAILED"
    assert "no_such_experiment" in failed.data.tags[names.TAG_FAILURE]
    assert c.get_run(done).info.status == "FINISHED", "a finished trial of the task keeps its state"
    assert c.get_run(other).info.status == "RUNNING", "another try's runs are not touched"


def _start_ray_head(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    # every fixed default port free too: another Ray on the machine (a developer's tests) holds 52365 and 10001
    port, dash, agent, client = (free_port() for _ in range(4))
    cmd = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", f"--port={port}"]
    cmd += [f"--dashboard-port={dash}", "--dashboard-host=127.0.0.1", "--num-cpus=2", "--disable-usage-stats"]
    cmd += [f"--dashboard-agent-listen-port={agent}", f"--ray-client-server-port={client}"]
    cmd += ["--include-dashboard=true", f"--temp-dir={tmp}"]
    log = open(tmp / "ray-head.log", "wb")  # noqa: SIM115 (closed with the process)
    env = {**os.environ, "RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{dash}"}  # this cluster's state API, not another's
    head = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    return head, f"http://127.0.0.1:{dash}"


def _wait_for_job_agent(address: str, timeout_s: float = 120) -> None:
    """Until the head takes a job: its dashboard answers before the node's job agent has registered ("No
    available agent to submit job"), and a loaded machine widens that gap to tens of seconds."""
    ray = str(Path(sys.executable).parent / "ray")
    probe = [ray, "job", "submit", "--address", address, "--no-wait", "--", "true"]
    wait_until(
        lambda: subprocess.run(probe, capture_output=True, timeout=60).returncode == 0,
        timeout_s,
        what=f"the local Ray head at {address} to take a job",
        interval_s=2,
    )


def _stop(head: subprocess.Popen[bytes]) -> None:
    """Only this test's Ray processes: the head's own session (never `ray stop`, which stops every cluster here)."""
    for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(head.pid, sig)
        except ProcessLookupError:
            return
        try:
            head.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
    try:
        os.killpg(head.pid, signal.SIGKILL)  # workers of the head's raylet, still in its session
    except ProcessLookupError:
        pass


@pytest.mark.slow
@needs_airflow
def test_airflow_dags_test_daily_training_on_local_ray(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = airflow_env(tmp_path, uri)
    ray_tmp = Path(tempfile.mkdtemp(prefix="rmaf-"))  # short: Ray's socket paths must stay under 107 bytes
    head, address = _start_ray_head(ray_tmp)
    try:
        started = time.monotonic()
        subprocess.run([str(AIRFLOW_BIN / "airflow"), "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
        _wait_for_job_agent(address)
        conf = {
            "data_root": "",
            "overrides": [*TINY, f"mlflow.artifact_location={tmp_path}/artifacts", f"mlflow.spool_dir={tmp_path}/spool"],
        }
        env.update(RAY_ADDRESS=address, RAYMLOPS_JOB_PYTHON=sys.executable)
        dag_started = time.monotonic()
        out = subprocess.run(
            [str(AIRFLOW_BIN / "airflow"), "dags", "test", "daily_training", "-c", json.dumps(conf)],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        print(f"airflow db migrate + Ray head: {dag_started - started:.0f} s; dags test: {time.monotonic() - dag_started:.0f} s")
    finally:
        _stop(head)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    assert "state=success" in out.stdout + out.stderr
    assert "Job 'raymlops-train-" in out.stdout + out.stderr, "training ran as a Ray job on RAY_ADDRESS"
    _check_registered(uri)


def _check_registered(uri: str) -> None:
    c = tracking.client(uri)
    champion = c.get_model_version_by_alias("raymlops-cifar10", names.ALIAS_CHAMPION)
    assert str(c.get_model_version_by_alias("raymlops-cifar10", names.ALIAS_CANDIDATE).version) == str(champion.version) == "1"
    assert "first champion" in champion.tags[names.TAG_DECISION]
    train_run = c.get_run(champion.tags["raymlops.run_id"])
    assert train_run.info.status == "FINISHED" and train_run.data.tags[names.TAG_ROLE] == "train"
    assert train_run.data.tags[names.TAG_PIPELINE_RUN].startswith("daily_training/manual__")
    evaluation = c.get_run(champion.tags["evaluation_run_id"])
    assert evaluation.data.tags[names.TAG_ROLE] == "evaluate"
    assert float(champion.tags["test_acc"]) == pytest.approx(evaluation.data.metrics["test_acc"])
    _check_regression_rule(uri, float(champion.tags["test_acc"]))


def _check_regression_rule(uri: str, recorded: float) -> None:
    """champion_evaluation's last step, on the model the DAG left: within the margin passes, below it fails (exit 3)
    and tags the version."""
    from raymlops.registry import EXIT_REGRESSION
    from raymlops.registry import main as registry_main

    base = ["--tracking-uri", uri, "check", "raymlops-cifar10", "--max-drop", "0.05"]
    registry_main([*base, "--test-acc", str(recorded - 0.04)])
    with pytest.raises(SystemExit) as exit_info:
        registry_main([*base, "--test-acc", str(recorded - 0.06)])
    assert exit_info.value.code == EXIT_REGRESSION
    assert "below the" in tracking.client(uri).get_model_version("raymlops-cifar10", "1").tags[names.TAG_REGRESSION]
