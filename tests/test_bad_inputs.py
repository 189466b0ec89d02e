"""Bad input fails fast: exit status 2, one paragraph naming the bad value and a valid alternative,
no traceback (unless RAYMLOPS_DEBUG=1), in bounded time, and (all but the resource cases) before Ray
starts. Each preflight and Ray case runs the real CLI in a subprocess, a few at a time; the config
cases run the same entry points' `main` one after another in one subprocess (Hydra's ~1 s import is
paid once, not 30 times), each with its own stdout, stderr, exit status and wall time. The two
resource cases start a local Ray, so they carry the `ray` mark.

Run: .venv/bin/python -m pytest tests/test_bad_inputs.py -q
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from helpers import free_port
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
PARALLEL = 4  # config errors take ~0.5 s of CPU, data/tracker ones ~4 s (torch + MLflow imports), Ray ones ~15 s


class Case(NamedTuple):
    id: str
    entry: str  # raymlops.<entry>
    args: list[str]  # overrides; {tmp} is this module's temp dir, {dead} a URL nothing listens on
    words: list[str]  # each must be in the error paragraph: the bad value and a valid alternative
    stage: str = "config"  # config (< 1 s) | preflight (data, storage, tracker: no Ray) | ray (starts a local cluster)


S = "+search_space.optim.lr="
RAY_SMALL = ["ray.num_cpus=2"]
CASES = [
    # unknown choices
    Case("unknown_model", "tune", ["model.name=resnet50"], ["model.name='resnet50'", "resnet18"]),
    Case("unknown_model_group", "train", ["model=resnet50"], ["model=resnet50", "model=resnet18", "fast_cnn"]),
    Case("unknown_dataset", "tune", ["data.name=imagenet"], ["data.name='imagenet'", "cifar10"]),
    Case("unknown_dataset_group", "train", ["data=imagenet"], ["data=imagenet", "synthetic"]),
    Case("unknown_scheduler", "tune", ["scheduler=bohb"], ["scheduler=bohb", "asha", "hyperband"]),
    Case("unknown_scheduler_name", "tune", ["scheduler.name=bohb"], ["scheduler.name='bohb'", "asha"]),
    Case("unknown_search_alg", "tune", ["search_alg=hyperopt"], ["search_alg=hyperopt", "optuna", "random"]),
    Case("unknown_experiment", "tune", ["+experiment=nope"], ["+experiment=nope", "quickstart"]),
    # unknown or misspelled keys
    Case("misspelled_key", "tune", ["optim.lrr=0.1"], ["'optim.lrr'", "'optim.lr'"]),
    Case("misspelled_key_train", "train", ["train.epoch=3"], ["'train.epoch'", "'train.epochs'"]),
    Case("unknown_new_key", "tune", ["+foo.bar=1"], ["'foo.bar'", "Top-level sections", "optim"]),
    Case("unknown_key_in_section", "tune", ["+optim.foo=1"], ["'optim.foo'", "optim.lr"]),
    Case("target_key_refused", "tune", ["+model._target_=os.system"], ["'model._target_'", "model.name=resnet18"]),
    Case("dashed_option", "tune", ["--lr=0.1"], ["'--lr=0.1'", "optim.lr=0.1"]),
    Case("imagefolder_without_root", "train", ["data=imagefolder"], ["data.root", "data.root=/path/to/images"]),
    # values out of range
    Case("zero_lr", "tune", ["optim.lr=0"], ["optim.lr=0 ", "optim.lr=0.01"]),
    Case("negative_lr", "train", ["optim.lr=-0.1"], ["optim.lr=-0.1", "optim.lr=0.01"]),
    Case("zero_epochs", "tune", ["train.epochs=0"], ["train.epochs=0 ", "train.epochs=10"]),
    Case("negative_epochs", "train", ["train.epochs=-3"], ["train.epochs=-3", "train.epochs=10"]),
    Case("zero_batch_size", "train", ["train.batch_size=0"], ["train.batch_size=0 ", "positive integer"]),
    Case("negative_batch_size", "train", ["train.batch_size=-64"], ["train.batch_size=-64", "positive integer"]),
    Case(
        "batch_not_divisible",
        "train",
        ["scaling.num_workers=3", "train.batch_size=64"],
        ["train.batch_size=64", "scaling.num_workers=3", "train.batch_size=63"],
    ),
    Case("num_samples_zero", "tune", ["tune.num_samples=0"], ["tune.num_samples=0 ", "tune.num_samples=10"]),
    Case("num_samples_negative", "tune", ["tune.num_samples=-5"], ["tune.num_samples=-5", "tune.num_samples=10"]),
    Case("metric_never_reported", "tune", ["tune.metric=accuracy"], ["tune.metric='accuracy'", "tune.metric=val_acc"]),
    Case("bad_mode", "tune", ["tune.mode=maximize"], ["tune.mode='maximize'", "max or min"]),
    # population, multi-objective and warm-started searches
    Case("pbt_with_a_searcher", "tune", ["scheduler=pbt", "search_alg=optuna"], ["scheduler=pbt", "search_alg=random"]),
    Case(
        "pb2_with_a_choice",
        "tune",
        ["scheduler=pb2", "+search_space.model.width={type:choice,values:[8,16]}"],
        ["model.width", "scheduler=pbt"],
    ),
    Case(
        "pbt_interval_past_the_end",
        "tune",
        ["scheduler=pbt", "scheduler.perturbation_interval=2"],
        ["perturbation_interval=2", "train.epochs=2"],
    ),
    Case(
        "pbt_with_cold_ddp_trials",
        "tune",
        ["scheduler=pbt", "scaling.num_workers=2", "scaling.warm_workers=false"],
        ["scheduler=pbt", "scaling.warm_workers=true"],
    ),
    Case("objective_never_reported", "tune", ["tune.objectives={val_acc:max,flops:min}"], ["'flops'", "latency_ms"]),
    Case(
        "metric_not_an_objective",
        "tune",
        ["tune.objectives={latency_ms:min,params_m:min}"],
        ["tune.metric=val_acc", "latency_ms"],
    ),
    Case("select_bad_bound", "tune", ["registry.select={constraints:{latency_ms:{below:5}}}"], ["latency_ms", "{le: 5.0}"]),
    Case("warm_start_random", "tune", ["search_alg.warm_start=latest"], ["search_alg.warm_start", "search_alg=optuna"]),
    # search space
    Case("space_lower_ge_upper", "tune", [S + "{type:uniform,lower:0.5,upper:0.1}"], ["lower=0.5", "upper=0.1", "lower: 0.1"]),
    Case("loguniform_nonpositive", "tune", [S + "{type:loguniform,lower:0,upper:0.1}"], ["loguniform", "(got 0)", "lower: 1e-5"]),
    Case("space_unknown_type", "tune", [S + "{type:normal,lower:0,upper:1}"], ["type='normal'", "loguniform"]),
    Case(
        "space_unknown_key",
        "tune",
        ["+search_space.optim.betas={type:uniform,lower:0,upper:1}"],
        ["'optim.betas'", "optim.lr"],
    ),
    # data, storage and tracker: found by the preflight, still before Ray starts
    Case(
        "dataset_missing_offline",
        "train",
        ["data=cifar10", "data.download=false", "data.root={tmp}/no-cifar"],
        ["data.root={tmp}/no-cifar", "data.download=true", "data.name=imagefolder"],
        "preflight",
    ),
    Case(
        "imagefolder_missing",
        "train",
        ["data=imagefolder", "data.root={tmp}/missing"],
        ["data.root={tmp}/missing does not exist", "train/<class>"],
        "preflight",
    ),
    Case(
        "imagefolder_no_classes",
        "train",
        ["data=imagefolder", "data.root={tmp}/empty"],
        ["{tmp}/empty/train holds no class folders", "train/<class_name>/"],
        "preflight",
    ),
    Case(
        "imagefolder_class_mismatch",
        "train",
        ["data=imagefolder", "data.root={tmp}/mismatch"],
        ["only in train: ['dog']", "only in test: ['cow']", "same class folders"],
        "preflight",
    ),
    Case(
        "imagefolder_all_corrupt",
        "train",
        ["data=imagefolder", "data.root={tmp}/corrupt"],
        ["No readable images under {tmp}/corrupt/train", "0.png", "Replace or delete"],
        "preflight",
    ),
    Case(
        "unreachable_tracker",
        "tune",
        ["mlflow.tracking_uri={dead}"],
        ["mlflow.tracking_uri={dead} is unreachable", "make mlflow-server", "mlflow=local"],
        "preflight",
    ),
    Case(
        "tracker_unknown_scheme",
        "tune",
        ["mlflow.tracking_uri=mlfow://127.0.0.1:5000"],
        ["mlfow://", "sqlite:///.raymlops/mlflow.db"],
        "preflight",
    ),
    Case(
        "tracker_sqlite_unwritable",
        "train",
        ["mlflow.tracking_uri=sqlite:///{tmp}/a-file/mlflow.db"],
        ["{tmp}/a-file", "mlflow.tracking_uri=sqlite:///.raymlops/mlflow.db"],
        "preflight",
    ),
    Case(
        "unwritable_storage",
        "tune",
        ["storage_path={tmp}/a-file/results"],
        ["storage_path={tmp}/a-file/results is not writable", "storage_path=/tmp/raymlops_results"],
        "preflight",
    ),
    Case(
        "resume_nothing",
        "tune",
        ["tune.resume=true"],
        ["tune.resume=true", "no interrupted 'smoke' search", "without tune.resume"],
        "preflight",
    ),
    Case(
        "resume_unknown_name",
        "tune",
        ["tune.resume=smoke-20000101-000000"],
        ["tune.resume=smoke-20000101-000000", "{tmp}/results/smoke-20000101-000000", "drop tune.resume"],
        "preflight",
    ),
    # resources: need the cluster's size, so these start a local Ray (seconds, not the endless retries of Ray Train)
    Case(
        "infeasible_workers",
        "train",
        ["scaling.num_workers=16", "train.batch_size=64", *RAY_SMALL],
        ["can never be scheduled", "16 worker(s)", "lower scaling.num_workers"],
        "ray",
    ),
    Case(
        "infeasible_gpus",
        "tune",
        ["scaling.use_gpu=true", "scaling.gpus_per_worker=64", *RAY_SMALL],  # 64 GPUs per worker: infeasible on any box
        ["can never be scheduled", "GPU", "scaling.use_gpu=false"],
        "ray",
    ),
]
LIMIT_S = {"config": 30, "preflight": 60, "ray": 120}  # wall seconds on a loaded 2-core machine; typical: 1, 5, 25


def _image_tree(root: Path, train: list[str], test: list[str], corrupt: bool = False) -> None:
    for part, classes in (("train", train), ("test", test)):
        (root / part).mkdir(parents=True, exist_ok=True)
        for cls in classes:
            (root / part / cls).mkdir(parents=True, exist_ok=True)
            for i in range(3):
                path = root / part / cls / f"{i}.png"
                if corrupt:
                    path.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
                else:
                    Image.new("RGB", (32, 32), (i * 40, 90, 200)).save(path)


def _fixtures(tmp: Path) -> dict[str, str]:
    _image_tree(tmp / "empty", [], [])
    _image_tree(tmp / "mismatch", ["cat", "dog"], ["cat", "cow"])
    _image_tree(tmp / "corrupt", ["cat"], ["cat"], corrupt=True)
    (tmp / "a-file").write_text("a regular file, so nothing can be created beneath it (root ignores chmod)")
    return {"tmp": str(tmp), "dead": f"http://127.0.0.1:{free_port()}"}


def _fill(text: str, subs: dict[str, str]) -> str:
    for name, value in subs.items():  # not str.format: search-space overrides hold braces
        text = text.replace("{" + name + "}", value)
    return text


def _env() -> dict[str, str]:
    drop = ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "RAYMLOPS_DEBUG", "RAYMLOPS_STORAGE_PATH", "RAYMLOPS_CONF_DIR")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(PYTHONUNBUFFERED="1", RAY_AUTH_MODE="disabled")
    return env


def _command(case: Case, tmp: Path, subs: dict[str, str]) -> list[str]:
    base = [
        "+experiment=smoke",
        f"mlflow.tracking_uri=sqlite:///{tmp}/mlflow.db",
        f"mlflow.artifact_location={tmp}/artifacts",
        f"mlflow.spool_dir={tmp}/spool",
        f"storage_path={tmp}/results",
    ]
    args = [_fill(a, subs) for a in case.args]
    given = {a.split("=")[0].lstrip("+") for a in args}
    return [sys.executable, "-m", f"raymlops.{case.entry}", *[b for b in base if b.split("=")[0].lstrip("+") not in given], *args]


# One process, every config case: `python -m raymlops.<entry> ARGS` is `raymlops.<entry>.main(ARGS)` (errors.cli).
CONFIG_RUNNER = """
import contextlib, importlib, io, json, sys, time
out = []
for entry, args in json.load(sys.stdin):
    o, e, rc = io.StringIO(), io.StringIO(), 0
    started = time.monotonic()
    with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
        try:
            importlib.import_module("raymlops." + entry).main(args)
        except SystemExit as exit_:
            rc = exit_.code if isinstance(exit_.code, int) else 1
        except BaseException:
            import traceback
            traceback.print_exc()
            rc = 1
    out.append({"rc": rc, "out": o.getvalue(), "err": e.getvalue(), "seconds": time.monotonic() - started})
print(json.dumps(out))
"""


def _run_config_cases(cases: list[Case], tmp: Path, subs: dict[str, str]) -> dict[str, dict[str, Any]]:
    commands = {c.id: _command(c, tmp, subs) for c in cases}
    payload = json.dumps([[c.entry, commands[c.id][3:]] for c in cases])
    limit = LIMIT_S["config"] * len(cases)
    proc = subprocess.run(
        [sys.executable, "-c", CONFIG_RUNNER], input=payload, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=limit
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.splitlines()[-1])
    return {c.id: {**r, "cmd": commands[c.id]} for c, r in zip(cases, results, strict=True)}


def _run(cmd: list[str], limit: float) -> dict[str, Any]:
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=limit)
        rc, out, err = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:  # subprocess.run kills the child; its Ray, if any, exits with it
        rc, out, err = -9, _text(exc.stdout), _text(exc.stderr)
    return {"rc": rc, "out": out, "err": err, "seconds": time.monotonic() - started, "cmd": cmd}


def _text(raw: str | bytes | None) -> str:
    return raw.decode(errors="replace") if isinstance(raw, bytes) else raw or ""


class Outcomes:
    """Runs the cases a group at a time, on first request: the Ray group (marked `ray`, so
    `make test-fast` leaves it out) only when one of its tests is selected."""

    def __init__(self, tmp: Path):
        self.tmp, self.subs = tmp, _fixtures(tmp)
        self.results: dict[str, dict[str, Any]] = {}

    def get(self, case: Case) -> dict[str, Any]:
        if case.id not in self.results:
            group = [c for c in CASES if (c.stage == "ray") == (case.stage == "ray")]
            in_one = [c for c in group if c.stage == "config"]
            with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
                configs = pool.submit(_run_config_cases, in_one, self.tmp, self.subs) if in_one else None
                futures = {
                    c.id: pool.submit(_run, _command(c, self.tmp, self.subs), LIMIT_S[c.stage] + 30)
                    for c in group
                    if c.stage != "config"
                }
                self.results.update({case_id: f.result() for case_id, f in futures.items()})
                self.results.update(configs.result() if configs else {})
        return {**self.results[case.id], "words": [_fill(w, self.subs) for w in case.words]}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> Outcomes:
    return Outcomes(tmp_path_factory.mktemp("bad"))


def test_at_least_twenty_distinct_bad_inputs() -> None:
    assert len({c.id for c in CASES}) == len(CASES) >= 22


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=[pytest.mark.ray] if c.stage == "ray" else []) for c in CASES])
def test_bad_input(outcomes: Outcomes, case: Case) -> None:
    r = outcomes.get(case)
    text = r["out"] + r["err"]
    where = f"{' '.join(r['cmd'][2:])}\n--- output tail:\n{text[-3000:]}"
    assert r["rc"] == 2, f"exit status {r['rc']} for {where}"
    assert "Traceback" not in text, where
    errors = [line for line in text.splitlines() if "raymlops: error:" in line]
    assert len(errors) == 1 and errors[0].startswith("raymlops: error: "), where
    last = [line for line in r["err"].splitlines() if line.strip()][-1]
    assert last == errors[0], f"the error paragraph must close stderr: {where}"  # one paragraph, nothing after it
    for word in r["words"]:
        assert word in errors[0], f"{word!r} not in: {errors[0]}"
    assert r["seconds"] < LIMIT_S[case.stage], f"took {r['seconds']:.1f}s (limit {LIMIT_S[case.stage]}s)"
    if case.stage != "ray":
        assert "Ray started" not in text and "joined" not in r["out"], f"Ray started before the check: {where}"


def test_debug_flag_shows_the_traceback() -> None:
    """RAYMLOPS_DEBUG=1 turns the one-paragraph message back into Python's traceback."""
    env = {**_env(), "RAYMLOPS_DEBUG": "1"}
    cmd = [sys.executable, "-m", "raymlops.tune", "+experiment=smoke", "model.name=resnet50"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "Traceback" in proc.stderr, proc.stderr[-2000:]
    assert "raymlops.core.errors.UserError: model.name='resnet50'" in proc.stderr
