"""The benchmarks: each runs raymlops and the bare tool it wraps side by side and returns (rows, ratio, goal).

NAME: overhead asha tracking throughput ddp ddp_search gpu; each prints its table and, last,
`NAME ratio=<median> goal=<goal>`; the figures go to .raymlops/bench/NAME-<time>.json.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from raymlops.bench.harness import CIFAR, alternate, local_ray, ratios, store
from raymlops.config.schema import Config, DataConfig, DatasetName, LrSchedule, ModelConfig, ModelName

# The smoke experiment at 32 px, the size every published figure was measured at (smoke itself is 16 px, for the tests)
SMOKE = ["+experiment=smoke", "data.image_size=32"]

# ------------------------------------------------------------------ overhead


def _tiny_cfg(n: int) -> list[str]:
    return [
        *SMOKE,
        "data.num_train=256",
        "data.num_test=64",
        "model.width=8",
        "train.epochs=2",
        "train.batch_size=64",
        f"tune.num_samples={n}",
        "tune.max_concurrent_trials=2",
        "scheduler=fifo",
        "search_space={}",
        "train.log_every_n_steps=0",
    ]


def _bare_tune(n: int, storage: str) -> dict[str, float]:
    """The same tiny training as a bare Ray Tune function trainable: no MLflow, no checkpoints."""
    from ray import tune

    def trainable(config: dict[str, Any]) -> None:
        import torch

        from raymlops.data import synthetic
        from raymlops.models.small_images import build_model

        (x, y), _, _ = synthetic(256, 64)
        model = build_model(ModelConfig(name=ModelName.fast_cnn, width=8), 3, 10)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        for epoch in range(1, 3):
            t0 = time.perf_counter()
            for i in range(0, len(y), 64):
                loss = torch.nn.functional.cross_entropy(model(x[i : i + 64].float() / 255), y[i : i + 64])
                opt.zero_grad()
                loss.backward()
                opt.step()
            tune.report({"epoch": epoch, "loss": float(loss), "epoch_time_s": time.perf_counter() - t0})

    tuner = tune.Tuner(
        tune.with_resources(trainable, {"CPU": 1}),
        param_space={"i": tune.grid_search(list(range(n)))},
        tune_config=tune.TuneConfig(max_concurrent_trials=2, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    )
    results = tuner.fit()
    train_s = 0.0
    for i in range(len(results)):
        frame: Any = results[i].metrics_dataframe
        train_s += float(frame["epoch_time_s"].sum())
    return {"train_s": train_s}


def _search_trials(argv: list[str], tmp: str) -> tuple[Any, list[Any]]:
    """Run `raymlops.tune argv` on the store under tmp; the MLflow client and the search's child runs."""
    from raymlops import tracking
    from raymlops.tune import main as tune_main

    summary = tune_main([*argv, *store(tmp)])
    c = tracking.client(f"sqlite:///{tmp}/mlflow.db")
    runs = c.search_runs(
        [c.get_experiment_by_name("raymlops-smoke").experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{summary['parent_run_id']}'",
    )
    return c, runs


def _raymlops_search(extra: list[str], tmp: str) -> dict[str, float]:
    c, runs = _search_trials([*_tiny_cfg(int(extra[0])), *extra[1:]], tmp)
    return {"train_s": sum(m.value for r in runs for m in c.get_metric_history(r.info.run_id, "epoch_time_s"))}


def bench_overhead(repeats: int, quick: bool) -> tuple[list[dict[str, Any]], float, str]:
    n = 4 if quick else 16
    local_ray()
    with tempfile.TemporaryDirectory() as tmp:
        counter = iter(range(10_000))
        # One MLflow store per side across rounds, as a user's .raymlops/mlflow.db: creating a SQLite store
        # (MLflow's schema migrations, ~1.5 s) happens once per machine, not once per search.
        rows = alternate(
            {
                "raymlops": lambda: _raymlops_search([str(n)], f"{tmp}/r"),
                "bare_tune": lambda: _bare_tune(n, f"{tmp}/b{next(counter)}"),
            },
            repeats,
        )
        n2 = 2 if quick else 4
        ddp = alternate(
            {
                "raymlops_2worker": lambda: _raymlops_search(
                    [str(n2), "scaling.num_workers=2", "scaling.cpus_per_worker=0.5"], f"{tmp}/d{next(counter)}"
                )
            },
            1,
        )
    for row in rows:
        trials = n
        row["overhead_s_per_trial"] = (row["wall_s"] * 2 - row["train_s"]) / trials  # 2 trials run at a time
    for row in ddp:
        row["overhead_s_per_trial"] = (row["wall_s"] * 2 - row["train_s"] / 2) / n2  # train_s counts rank 0 only
    rows += ddp
    return rows, statistics.median(ratios(rows, "wall_s", "raymlops", "bare_tune")), "<=1.15"


# ------------------------------------------------------------------ asha


def bench_asha(repeats: int, quick: bool) -> tuple[list[dict[str, Any]], float, str]:
    # max_t=9 with reduction factor 3 gives ASHA rungs at 1, 3 and 9 epochs
    n, epochs = (8, 3) if quick else (32, 9)
    data = (
        ["data=imagefolder", f"data.root={CIFAR}", "data.subset=2000", "data.augment=false"]
        if CIFAR.is_dir()
        else ["data.num_train=2000"]
    )
    # 1,000 images to train on, 1,000 to rank by: with 100 validation images (10% of 1,000, the first
    # version of this benchmark) one image is a whole point and "within 0.5 points" means "identical"
    data.append("data.val_fraction=0.5")
    local_ray()
    with tempfile.TemporaryDirectory() as tmp:
        counter = iter(range(10_000))

        def run(scheduler: str) -> dict[str, float]:
            from raymlops.tune import main as tune_main

            folder = f"{tmp}/{scheduler}{next(counter)}"
            summary = tune_main(
                [
                    *SMOKE,
                    *data,
                    "model.width=8",
                    f"train.epochs={epochs}",
                    "train.batch_size=64",
                    f"tune.num_samples={n}",
                    f"scheduler={scheduler}",
                    "scheduler.grace_period=1",
                    "train.seed=7",
                    "train.log_every_n_steps=0",
                    *store(folder),
                ]
            )
            from raymlops import tracking

            c = tracking.client(f"sqlite:///{folder}/mlflow.db")
            runs = c.search_runs(
                [c.get_experiment_by_name("raymlops-smoke").experiment_id],
                filter_string=f"tags.`mlflow.parentRunId` = '{summary['parent_run_id']}'",
            )
            return {
                "epochs": float(sum(len(c.get_metric_history(r.info.run_id, "val_acc")) for r in runs)),
                "best_val_acc": float(summary["best_val_acc"]),
            }

        rows = alternate({"asha": lambda: run("asha"), "fifo": lambda: run("fifo")}, repeats)
    epoch_ratio = statistics.median(ratios(rows, "epochs", "asha", "fifo"))
    for r in sorted({row["round"] for row in rows}):
        pair = {row["side"]: row for row in rows if row["round"] == r}
        pair["asha"]["acc_gap_points"] = 100 * (pair["fifo"]["best_val_acc"] - pair["asha"]["best_val_acc"])
        pair["asha"]["wall_ratio"] = pair["asha"]["wall_s"] / pair["fifo"]["wall_s"]
    return rows, epoch_ratio, "<=0.30 (and acc_gap_points <= 0.5)"


# ------------------------------------------------------------------ tracking, throughput


def _loop_config(tmp: str, tracking_on: bool, epochs: int) -> tuple[Config, Any, Any]:
    """A smoke config, the run contract to log to (None: MLflow off) and a 1-worker CPU session."""
    import torch

    from raymlops import config as C
    from raymlops import tracking
    from raymlops.config.contract import Launch
    from raymlops.training.session import Session

    cfg = C.compose(
        [
            *SMOKE,
            "data.num_train=3000",
            "model.width=16",
            f"train.epochs={epochs}",
            "train.batch_size=64",
            "train.log_every_n_steps=50",
            *store(tmp),
        ]
    )
    run = None
    if tracking_on:
        uri = cfg.mlflow.tracking_uri
        launch = Launch(uri, tracking.ensure_experiment(uri, "bench", f"{tmp}/art"), False, {"CPU": 1.0}, {}, 1)
        run = launch.run("train", f"bench-{time.time_ns()}", "bench", log_model=False)
    session = Session(rank=0, world_size=1, device=torch.device("cpu"), report=lambda m, d: None)
    return cfg, run, session


def bench_tracking(repeats: int, quick: bool) -> tuple[list[dict[str, Any]], float, str]:
    from raymlops.training.loop import run_training

    epochs = 2 if quick else 4
    with tempfile.TemporaryDirectory() as tmp:

        def side(on: bool) -> dict[str, float]:
            cfg, run, session = _loop_config(tmp, on, epochs)
            t0 = time.perf_counter()
            run_training(cfg, run, session)
            return {"loop_s": time.perf_counter() - t0}

        side(False)  # warm-up: data generation and first-touch allocations
        rows = alternate({"mlflow_on": lambda: side(True), "mlflow_off": lambda: side(False)}, repeats)
    return rows, statistics.median(ratios(rows, "loop_s", "mlflow_on", "mlflow_off")), "<=1.02"


def _bare_pytorch(epochs: int) -> dict[str, float]:
    """A plain loop on the same model, data, batch size and per-batch preprocessing."""
    import torch

    from raymlops.data import load_splits, normalise
    from raymlops.models.small_images import build_model

    torch.manual_seed(0)
    s = load_splits(DataConfig(name=DatasetName.synthetic, num_train=3000, num_test=200), 0)
    model = build_model(ModelConfig(name=ModelName.fast_cnn, width=16), 3, 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    mean, std = torch.tensor(s.mean).view(1, -1, 1, 1), torch.tensor(s.std).view(1, -1, 1, 1)
    seen, t_train = 0, 0.0
    for _ in range(epochs):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(len(s.train_y))
        for i in range(0, len(perm), 64):
            b = perm[i : i + 64]
            loss = torch.nn.functional.cross_entropy(model(normalise(s.train_x[b], mean, std)), s.train_y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += len(b)
        model.eval()
        with torch.no_grad():
            model(normalise(s.val_x, mean, std))
        t_train += time.perf_counter() - t0
    return {"samples_per_s": seen / t_train}


def bench_throughput(repeats: int, quick: bool) -> tuple[list[dict[str, Any]], float, str]:
    import torch

    from raymlops.training.loop import run_training
    from raymlops.training.session import Session

    epochs = 2 if quick else 3
    torch.set_num_threads(1)

    def ours() -> dict[str, float]:
        with tempfile.TemporaryDirectory() as tmp:
            cfg, _, _ = _loop_config(tmp, False, epochs)
            cfg.train.lr_schedule = LrSchedule.none
            points: list[dict[str, Any]] = []
            session = Session(rank=0, world_size=1, device=torch.device("cpu"), report=lambda m, d: points.append(m))
            run_training(cfg, None, session)
            return {"samples_per_s": statistics.median(p["samples_per_s"] for p in points)}

    rows = alternate({"raymlops": ours, "bare_pytorch": lambda: _bare_pytorch(epochs)}, repeats)
    return rows, statistics.median(ratios(rows, "samples_per_s", "raymlops", "bare_pytorch")), ">=0.90"


# ------------------------------------------------------------------ ddp


TORCHRUN_SCRIPT = """
import json, os, sys, time, torch, torch.distributed as dist
from raymlops import config as C
from raymlops.training.loop import run_training
from raymlops.training.session import Session
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
cfg = C.compose(json.loads(sys.argv[1]))
points = []
def prepare(m):
    return torch.nn.parallel.DistributedDataParallel(m)
run_training(cfg, None, Session(rank=rank, world_size=world, device=torch.device("cpu"), report=lambda m, d: points.append(m), prepare_model=prepare))
if rank == 0:
    print("TRAIN_S", sum(p["epoch_time_s"] for p in points), flush=True)
dist.destroy_process_group()
"""


def bench_ddp(repeats: int, quick: bool) -> tuple[list[dict[str, Any]], float, str]:
    epochs = 2 if quick else 3
    args = [
        *SMOKE,
        "data.num_train=3000",
        "model.width=16",
        f"train.epochs={epochs}",
        "train.batch_size=64",
        "scaling.num_workers=2",
        "train.log_every_n_steps=0",
        "scaling.cpus_per_worker=1",
    ]
    local_ray()
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "ddp_torchrun.py"
        script.write_text(TORCHRUN_SCRIPT)

        def ray_train() -> dict[str, float]:
            from raymlops import config as C
            from raymlops.config.contract import Launch
            from raymlops.launch.job import torch_trainer

            cfg = C.compose([*args, *store(f"{tmp}/r{time.time_ns()}")])
            launch = Launch("", "", False, {"CPU": 1.0}, {}, 1)
            t0 = time.perf_counter()
            trainer = torch_trainer(cfg, None, launch, f"bench-ddp-{time.time_ns()}", cfg.storage_path)
            result = trainer.fit()
            df = result.metrics_dataframe
            train_s = float(df["epoch_time_s"].sum()) if df is not None and "epoch_time_s" in df else float("nan")
            return {"train_s": train_s, "start_to_end_s": time.perf_counter() - t0}

        def torchrun() -> dict[str, float]:
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            cmd = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                "--nproc_per_node",
                "2",
                str(script),
                json.dumps([*args, *store(f"{tmp}/t{time.time_ns()}")]),
            ]
            t0 = time.perf_counter()
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=True).stdout
            train_s = float(next(line.split()[1] for line in out.splitlines() if line.startswith("TRAIN_S")))
            return {"train_s": train_s, "start_to_end_s": time.perf_counter() - t0}

        rows = alternate({"ray_train": ray_train, "torchrun": torchrun}, repeats)
    return rows, statistics.median(ratios(rows, "train_s", "ray_train", "torchrun")), "<=1.15"


# ------------------------------------------------------------------ ddp_search


def _ddp_search_cfg(n: int) -> list[str]:
    return [
        *SMOKE,
        "data.num_train=2000",
        "data.num_test=200",
        "train.epochs=1",
        "scaling.num_workers=2",
        "scaling.cpus_per_worker=1",
        f"tune.num_samples={n}",
        "tune.max_concurrent_trials=1",
        "scheduler=fifo",
        "~search_space",
        "train.log_every_n_steps=0",
    ]


def _documented_loop(config: dict[str, Any]) -> None:
    """Ray's Train V2 guide: a DDP worker loop that prepares the model and reports each epoch."""
    import ray.train
    import ray.train.torch
    import torch

    from raymlops.data import synthetic
    from raymlops.models.small_images import build_model

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    (x, y), _, _ = synthetic(2000, 200)
    model = ray.train.torch.prepare_model(build_model(ModelConfig(name=ModelName.fast_cnn, width=16), 3, 10))
    opt = torch.optim.SGD(model.parameters(), lr=config["lr"], momentum=0.9)
    t0 = time.perf_counter()
    shard_x, shard_y = x[rank::world], y[rank::world]
    for i in range(0, len(shard_y), 32):
        loss = torch.nn.functional.cross_entropy(model(shard_x[i : i + 32].float() / 255), shard_y[i : i + 32])
        opt.zero_grad()
        loss.backward()
        opt.step()
    ray.train.report({"epoch": 1, "loss": float(loss), "epoch_time_s": time.perf_counter() - t0})


def _documented_search(n: int, storage: str) -> dict[str, float]:
    """Ray's documented Tune -> TorchTrainer pattern: a function trainable per trial builds a TorchTrainer
    of 2 DDP workers with TuneReportCallback (the same resources as raymlops' trials)."""
    import ray.train
    from ray import tune
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    def driver(config: dict[str, Any]) -> None:
        trainer = TorchTrainer(
            _documented_loop,
            train_loop_config=config,
            scaling_config=ray.train.ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
            run_config=ray.train.RunConfig(
                name=f"documented-{tune.get_context().get_trial_id()}",
                storage_path=storage,
                callbacks=[TuneReportCallback()],  # type: ignore[list-item]  # a Train V2 UserCallback
            ),
        )
        trainer.fit()

    tuner = tune.Tuner(
        tune.with_resources(driver, {"CPU": 0, "memory": 64 * 1024**2}),
        param_space={"lr": 0.1, "i": tune.grid_search(list(range(n)))},
        tune_config=tune.TuneConfig(max_concurrent_trials=1),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    )
    results = tuner.fit()
    frames: list[Any] = [results[i].metrics_dataframe for i in range(len(results))]
    return {"train_s": sum(float(frame["epoch_time_s"].sum()) for frame in frames)}


def _warm_search(n: int, tmp: str) -> dict[str, float]:
    """raymlops' search of the same trials on warm lanes; the launch overhead per trial after the lane's first,
    from the child runs' end times: (last end - first end - their training time) / (n - 1)."""
    c, runs = _search_trials(_ddp_search_cfg(n), tmp)
    runs.sort(key=lambda r: r.info.end_time)
    train = {r.info.run_id: sum(m.value for m in c.get_metric_history(r.info.run_id, "epoch_time_s")) for r in runs}
    later = runs[1:]
    span = (runs[-1].info.end_time - runs[0].info.end_time) / 1000
    overhead = (span - sum(train[r.info.run_id] for r in later)) / max(len(later), 1)
    return {"train_s": sum(train.values()), "overhead_s_per_trial_after_first": overhead}


def bench_ddp_search(repeats: int, quick: bool) -> tuple[list[dict[str, Any]], float, str]:
    """The same 2-worker DDP trials, one at a time: raymlops on warm lanes vs Ray's documented pattern."""
    n = 3 if quick else 6
    local_ray()
    with tempfile.TemporaryDirectory() as tmp:
        counter = iter(range(10_000))
        rows = alternate(
            {
                "raymlops_warm": lambda: _warm_search(n, f"{tmp}/w{next(counter)}"),
                "ray_documented": lambda: _documented_search(n, f"{tmp}/d{next(counter)}"),
            },
            repeats,
        )
    for row in rows:
        row["trials"] = n
    return rows, statistics.median(ratios(rows, "wall_s", "raymlops_warm", "ray_documented")), "<=0.30"


# ------------------------------------------------------------------ gpu


def _gpu_data() -> DataConfig:
    """The real CIFAR-10 copy when it is beside the repository, else a synthetic set of the same size."""
    if CIFAR.is_dir():
        return DataConfig(name=DatasetName.imagefolder, root=str(CIFAR), val_fraction=0.0)
    return DataConfig(name=DatasetName.synthetic, num_train=50000, num_test=10000, val_fraction=0.0)


def bench_gpu(repeats: int, quick: bool) -> tuple[list[dict[str, Any]], float, str]:
    """Fast CIFAR-10 recipe on one GPU (data resident on the GPU, bf16, channels_last, label
    smoothing, flip TTA): mean test accuracy over seeds and training seconds (CUDA events)."""
    import torch

    if not torch.cuda.is_available():
        print("gpu: skipped, no CUDA device")
        return [], float("nan"), ">=0.94 test acc in <=10 s"
    from raymlops.data import augment, load_splits, normalise
    from raymlops.models.small_images import build_model
    from raymlops.training.ops import predict

    data = _gpu_data()
    s = load_splits(data, 0)
    dev = torch.device("cuda")
    x, y, tx, ty = (t.to(dev) for t in (s.train_x, s.train_y, s.test_x, s.test_y))
    mean, std = torch.tensor(s.mean, device=dev).view(1, -1, 1, 1), torch.tensor(s.std, device=dev).view(1, -1, 1, 1)
    rows = []
    for seed in range(2 if quick else 5):
        torch.manual_seed(seed)
        model = build_model(ModelConfig(name=ModelName.fast_cnn, width=64), 3, 10).to(dev).to(memory_format=torch.channels_last)
        epochs, bs = 10, 512
        steps = epochs * ((len(y) + bs - 1) // bs)
        opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9, nesterov=True, weight_decay=5e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, 0.2, total_steps=steps, pct_start=0.2)
        gen = torch.Generator().manual_seed(seed)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(epochs):
            perm = torch.randperm(len(y), device=dev)
            for i in range(0, len(y), bs):
                b = perm[i : i + bs]
                xb = normalise(augment(x[b], gen), mean, std).contiguous(memory_format=torch.channels_last)
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    loss = torch.nn.functional.cross_entropy(model(xb), y[b], label_smoothing=0.2)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
        end.record()
        torch.cuda.synchronize()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = predict(model, tx, mean, std, 2048, channels_last=True, tta_flip=True)
        rows.append(
            {
                "round": seed,
                "side": "fast_cnn",
                "train_s": start.elapsed_time(end) / 1000,
                "test_acc": float((logits.argmax(1) == ty).float().mean()),
            }
        )
    return rows, statistics.mean(r["test_acc"] for r in rows), ">=0.94 test acc in <=10 s (train_s)"


BENCHES: dict[str, Callable[[int, bool], tuple[list[dict[str, Any]], float, str]]] = {
    "overhead": bench_overhead,
    "asha": bench_asha,
    "tracking": bench_tracking,
    "throughput": bench_throughput,
    "ddp": bench_ddp,
    "ddp_search": bench_ddp_search,
    "gpu": bench_gpu,
}
