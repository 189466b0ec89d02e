"""Bad input fails fast: exit status 2, one paragraph naming the bad value and a valid alternative,
no traceback (unless RAYMLOPS_DEBUG=1), in bounded time. Each case runs the real CLI in a subprocess;
all cases start at once so the whole file takes about as long as the slowest case."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _image_tree(root: Path, train: list[str], test: list[str], corrupt: bool = False) -> Path:
    for part, classes in (("train", train), ("test", test)):
        (root / part).mkdir(parents=True, exist_ok=True)
        for cls in classes:
            (root / part / cls).mkdir(parents=True, exist_ok=True)
            for i in range(3):
                path = root / part / cls / f"{i}.png"
                if corrupt:
                    path.write_bytes(b"\x89PNG garbage")
                else:
                    Image.new("RGB", (32, 32), (i * 40, 90, 200)).save(path)
    return root


# (id, entry module, overrides, words the message must contain, seconds allowed)
def _cases(tmp: Path) -> list[tuple[str, str, list[str], list[str], float]]:
    dead = f"http://127.0.0.1:{_free_port()}"
    blocker = tmp / "a-file"
    blocker.write_text("not a directory")
    return [
        ("unknown_model", "tune", ["model.name=resnet50"], ["model.name='resnet50'", "fast_cnn"], 60),
        ("unknown_dataset", "tune", ["data.name=imagenet"], ["data.name='imagenet'", "cifar10"], 60),
        ("unknown_scheduler", "tune", ["scheduler=pbt"], ["scheduler", "asha"], 60),
        ("unknown_search_alg", "tune", ["search_alg=hyperopt"], ["search_alg", "optuna"], 60),
        ("misspelled_key", "tune", ["optim.lrr=0.1"], ["lrr", "optim.lr"], 60),
        ("unknown_new_key", "tune", ["+optim.foo=1"], ["optim.foo"], 60),
        ("target_key_refused", "tune", ["+model._target_=os.system"], ["model._target_"], 60),
        ("zero_lr", "tune", ["optim.lr=0"], ["optim.lr=0", "positive"], 60),
        ("negative_lr", "train", ["optim.lr=-0.1"], ["optim.lr=-0.1"], 60),
        ("zero_epochs", "tune", ["train.epochs=0"], ["train.epochs=0"], 60),
        ("negative_batch", "train", ["train.batch_size=-64"], ["train.batch_size=-64"], 60),
        (
            "batch_not_divisible",
            "train",
            ["scaling.num_workers=3", "train.batch_size=64"],
            ["train.batch_size=64", "scaling.num_workers=3", "train.batch_size=63"],
            60,
        ),
        (
            "space_lower_ge_upper",
            "tune",
            ["+search_space.optim.lr={type:uniform,lower:0.5,upper:0.1}"],
            ["lower=0.5", "upper=0.1"],
            60,
        ),
        (
            "loguniform_nonpositive",
            "tune",
            ["+search_space.optim.lr={type:loguniform,lower:0,upper:0.1}"],
            ["loguniform", "lower > 0"],
            60,
        ),
        (
            "space_unknown_type",
            "tune",
            ["+search_space.optim.lr={type:normal,lower:0,upper:1}"],
            ["type='normal'", "loguniform"],
            60,
        ),
        (
            "space_unknown_key",
            "tune",
            ["+search_space.optim.betas={type:uniform,lower:0,upper:1}"],
            ["optim.betas", "optim.lr"],
            60,
        ),
        ("num_samples_zero", "tune", ["tune.num_samples=0"], ["tune.num_samples=0"], 60),
        ("metric_never_reported", "tune", ["tune.metric=accuracy"], ["tune.metric='accuracy'", "val_acc"], 60),
        ("unknown_experiment", "tune", ["+experiment=nope"], ["nope", "quickstart"], 60),
        (
            "infeasible_workers",
            "train",
            ["scaling.num_workers=16", "train.batch_size=64", "ray.num_cpus=2", "ray.include_dashboard=false"],
            ["can never be scheduled", "scaling.num_workers"],
            180,
        ),
        (
            "infeasible_gpus",
            "tune",
            ["scaling.use_gpu=true", "ray.num_cpus=2", "ray.include_dashboard=false"],
            ["can never be scheduled", "use_gpu=false"],
            180,
        ),
        (
            "dataset_missing_offline",
            "train",
            ["data=cifar10", "data.download=false", f"data.root={tmp}/no-cifar"],
            [f"{tmp}/no-cifar", "data.name=imagefolder"],
            60,
        ),
        (
            "imagefolder_missing",
            "train",
            ["data=imagefolder", f"data.root={tmp}/missing"],
            ["does not exist", "train/<class>"],
            60,
        ),
        (
            "imagefolder_no_classes",
            "train",
            ["data=imagefolder", f"data.root={_image_tree(tmp / 'empty', [], [])}"],
            ["no class folders"],
            60,
        ),
        (
            "imagefolder_class_mismatch",
            "train",
            ["data=imagefolder", f"data.root={_image_tree(tmp / 'mismatch', ['cat', 'dog'], ['cat', 'cow'])}"],
            ["only in train: ['dog']", "only in test: ['cow']"],
            60,
        ),
        (
            "imagefolder_all_corrupt",
            "train",
            ["data=imagefolder", f"data.root={_image_tree(tmp / 'corrupt', ['cat'], ['cat'], corrupt=True)}"],
            ["No readable images", "0.png"],
            60,
        ),
        ("unreachable_tracker", "tune", [f"mlflow.tracking_uri={dead}"], ["unreachable", "make mlflow-server"], 60),
        (
            "unwritable_storage",
            "tune",
            [f"storage_path={blocker}/results"],
            ["storage_path=", "not writable", "storage_path=/tmp"],
            60,
        ),
        ("resume_nothing", "tune", ["tune.resume=true"], ["tune.resume=true", "no interrupted"], 60),
    ]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "RAYMLOPS_DEBUG")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("bad")
    base = [
        f"mlflow.tracking_uri=sqlite:///{tmp}/mlflow.db",
        f"mlflow.artifact_location={tmp}/art",
        f"mlflow.spool_dir={tmp}/spool",
        f"storage_path={tmp}/results",
    ]
    jobs = []
    for case_id, entry, args, words, limit in _cases(tmp):
        keys = {a.split("=")[0] for a in args}
        cmd = [
            sys.executable,
            "-m",
            f"raymlops.{entry}",
            "+experiment=smoke",
            *[b for b in base if b.split("=")[0] not in keys],
            *args,
        ]
        if "+experiment=nope" in args:
            cmd.remove("+experiment=smoke")
        jobs.append((case_id, cmd, words, limit))

    def run(job: tuple[str, list[str], list[str], float]) -> tuple[str, dict[str, Any]]:
        case_id, cmd, words, limit = job
        started = time.monotonic()
        try:
            proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=limit + 60)
            rc, out, err = proc.returncode, proc.stdout, proc.stderr
        except subprocess.TimeoutExpired as exc:
            rc, out, err = -9, str(exc.stdout or ""), str(exc.stderr or "")
        return case_id, {"rc": rc, "out": out, "err": err, "seconds": time.monotonic() - started, "words": words, "limit": limit}

    # A few at a time: each case's own wall time is what the test bounds (2 cores here).
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(pool.map(run, jobs))
    return results


CASE_IDS = [
    "unknown_model",
    "unknown_dataset",
    "unknown_scheduler",
    "unknown_search_alg",
    "misspelled_key",
    "unknown_new_key",
    "target_key_refused",
    "zero_lr",
    "negative_lr",
    "zero_epochs",
    "negative_batch",
    "batch_not_divisible",
    "space_lower_ge_upper",
    "loguniform_nonpositive",
    "space_unknown_type",
    "space_unknown_key",
    "num_samples_zero",
    "metric_never_reported",
    "unknown_experiment",
    "infeasible_workers",
    "infeasible_gpus",
    "dataset_missing_offline",
    "imagefolder_missing",
    "imagefolder_no_classes",
    "imagefolder_class_mismatch",
    "imagefolder_all_corrupt",
    "unreachable_tracker",
    "unwritable_storage",
    "resume_nothing",
]


def test_every_case_is_checked(outcomes: dict[str, Any]) -> None:
    assert sorted(outcomes) == sorted(CASE_IDS) and len(CASE_IDS) >= 20


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_bad_input(outcomes: dict[str, Any], case_id: str) -> None:
    r = outcomes[case_id]
    text = r["out"] + r["err"]
    assert r["rc"] == 2, f"exit status {r['rc']}; output:\n{text[-2000:]}"
    assert "Traceback" not in text, text[-2000:]
    errors = [line for line in r["err"].splitlines() if line.startswith("raymlops: error:")]
    assert len(errors) == 1, r["err"][-2000:]
    for word in r["words"]:
        assert word in errors[0], f"{word!r} not in: {errors[0]}"
    assert r["seconds"] < r["limit"], f"took {r['seconds']:.0f}s"


def test_debug_flag_shows_traceback() -> None:
    env = {**_env(), "RAYMLOPS_DEBUG": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "raymlops.tune", "+experiment=smoke", "model.name=resnet50"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "UserError" in proc.stderr
