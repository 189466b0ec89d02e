"""The per-worker training loop: data, model, optimizer, epochs, metrics, checkpoints.

One function, `run_training`, serves every launcher: a Ray Train DDP worker
(`train_loop_per_worker`), a 1-worker Tune trial running in its own actor, and tests. The
launcher hands it a `Session` that says the rank, the device, how to report and what to restore.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from raymlops import data as data_mod
from raymlops import schema, tracking
from raymlops.models import build_model

log = logging.getLogger(__name__)
STATE_FILE, MANIFEST_FILE = "state.pt", "manifest.json"
DONE_MARKER = "raymlops_done.json"  # in a Tune trial's folder: the search ended this trial (at "epoch")


@dataclass
class Session:
    """What a launcher provides to the loop."""

    rank: int
    world_size: int
    device: torch.device
    report: Callable[[dict[str, Any], str | None], None]  # (metrics, local checkpoint dir or None)
    restore_dirs: list[str] = field(default_factory=list)  # newest first; a corrupt one falls back to the next
    prepare_model: Callable[[nn.Module], nn.Module] = lambda m: m
    # The last epoch the launcher has seen reported; a restored checkpoint newer than that (a killed
    # search driver whose snapshot lagged the disk) is reported again. -1: the launcher saw everything.
    known_epoch: int = -1
    stop_epoch: int | None = None  # the search already ended this trial at this epoch: train no further
    after_restore: Callable[[], None] | None = None  # called on every rank once the checkpoint is loaded


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train V2 entry point (one call per DDP worker)."""
    import ray.train
    import ray.train.torch

    noisy = ["alembic", "mlflow", "ray.train"]  # a line per report and per SQLite connection otherwise
    try:  # Ray Train V2 logs "Reporting training result ..." per report through a logger named by its file path
        from ray.train.v2._internal.execution import context as train_context

        noisy.append(train_context.__file__)
    except ImportError:
        pass
    for name in noisy:
        logging.getLogger(name).setLevel(logging.WARNING)
    ctx = ray.train.get_context()
    ckpt = ray.train.get_checkpoint()

    def report(metrics: dict[str, Any], ckpt_dir: str | None) -> None:
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(ckpt_dir) if ckpt_dir else None)

    def after_restore() -> None:
        if ckpt is None:
            return
        if dist.is_available() and dist.is_initialized():
            dist.barrier()  # every rank has read its checkpoint before rank 0 tidies the folder
        if ctx.get_world_rank() == 0:
            drop_unregistered(ckpt.path)

    session = Session(
        rank=ctx.get_world_rank(),
        world_size=ctx.get_world_size(),
        device=ray.train.torch.get_device(),
        report=report,
        restore_dirs=checkpoint_candidates(ckpt.path) if ckpt else [],
        prepare_model=ray.train.torch.prepare_model,
        after_restore=after_restore,
    )
    run_training(config, session)


def drop_unregistered(latest: str) -> None:
    """Delete checkpoint dirs that Ray Train never registered: written by a worker killed before the
    controller recorded them, so Train's num_to_keep pruning would never delete them."""
    folder = Path(latest).parent
    try:
        snapshot = (folder / "checkpoint_manager_snapshot.json").read_text()
    except OSError:
        return  # remote storage, or no snapshot yet: leave everything
    dirs = [p for p in folder.glob("checkpoint_*") if p.is_dir() and p.name != Path(latest).name]
    for path in dirs:
        if f'"{path.name}"' not in snapshot:  # every checkpoint Train tracks is named in its snapshot
            log.warning("removing %s: written just before a crash, never registered by Ray Train", path)
            shutil.rmtree(path, ignore_errors=True)


def checkpoint_candidates(latest: str | None, folder: str | None = None) -> list[str]:
    """Checkpoint dirs to try, newest epoch first: the launcher's latest and every checkpoint_* dir beside
    it (or in folder) on local disk, ordered by the epoch in their manifests.

    A sibling newer than the launcher's latest exists when the launcher's record lags the disk: Tune
    snapshots its experiment state every ~10 s, so a search driver killed in between resumes a trial
    from an older checkpoint than the trial last wrote; this finds the newer one.
    """
    parent = Path(folder) if folder else Path(latest).parent if latest and "://" not in latest else None
    if parent is None or not parent.is_dir():
        return [latest] if latest else []
    found = [p for p in parent.glob("checkpoint_*") if p.is_dir()]
    if latest and Path(latest) not in found:
        found.append(Path(latest))
    return [str(p) for p in sorted(found, key=lambda p: (_manifest_epoch(p), p == Path(latest or ""), p.name), reverse=True)]


def _manifest_epoch(path: Path) -> int:
    try:
        return int(json.loads((path / MANIFEST_FILE).read_text())["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return -1  # unreadable: tried last, and restore() says why it is skipped


# ------------------------------------------------------------------ the loop


def run_training(config: dict[str, Any], session: Session) -> dict[str, Any]:
    """Train for train.epochs (resuming from a checkpoint if given); return the last epoch's metrics."""
    train_cfg, rt = config["train"], config.get("runtime", {})
    torch.manual_seed(train_cfg["seed"] + session.rank)
    torch.set_num_threads(max(1, round(config["scaling"]["cpus_per_worker"])))
    device = session.device
    splits = data_mod.load_splits(config["data"], seed=train_cfg["seed"])
    model = build_model(config["model"], splits.channels, splits.num_classes)
    if train_cfg.get("channels_last"):
        model = model.to(memory_format=torch.channels_last)
    model = session.prepare_model(model.to(device))
    steps_per_epoch = _steps_per_epoch(len(splits.train_y), train_cfg["batch_size"], session.world_size)
    optimizer, scheduler = build_optimizer(config, model, steps_per_epoch)
    state = restore(session.restore_dirs, model, optimizer, scheduler)
    start_epoch, history = state.get("epoch", 0), state.get("history", [])
    step_points: list[list[float]] = state.get("step_points", [])  # [step, value, logged_at_ms] up to the checkpoint
    restarts = state.get("restarts", -1) + 1 if state else 0

    run_id, pending, fresh = (state["run_id"], None, False) if state.get("run_id") else _open_run(config, session.rank)
    tracker = tracking.logger_for(
        session.rank,
        rt.get("tracking_uri", ""),
        run_id,
        create=pending,
        spool_dir=config["mlflow"]["spool_dir"],
        retry_seconds=config["mlflow"]["retry_seconds"],
    )
    already = _start_tracking(tracker, config, session, history, step_points, restarts, fresh)
    if 0 <= session.known_epoch < start_epoch:
        trained = (model, optimizer, scheduler)
        _report_again(config, session, trained, history, step_points, session.known_epoch, tracker.run_id, restarts)
    last_epoch = min(train_cfg["epochs"], session.stop_epoch or train_cfg["epochs"])
    if session.after_restore:
        session.after_restore()

    mean = torch.tensor(splits.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(splits.std, device=device).view(1, -1, 1, 1)
    tensors = {k: getattr(splits, k).to(device, non_blocking=True) for k in ("train_x", "train_y", "val_x", "val_y")}
    loss_fn = nn.CrossEntropyLoss(label_smoothing=train_cfg["label_smoothing"])
    aug_gen = torch.Generator().manual_seed(train_cfg["seed"] * 1000 + session.rank)
    amp = _autocast(train_cfg.get("amp", "auto"), device)
    global_step = start_epoch * steps_per_epoch
    metrics: dict[str, Any] = history[-1] if history else {}

    for epoch in range(start_epoch + 1, last_epoch + 1):
        t0 = time.perf_counter()
        model.train()
        loss_sum, seen = torch.zeros((), device=device), 0
        for xb, yb in _batches(tensors["train_x"], tensors["train_y"], train_cfg, session, epoch):
            xb = data_mod.augment(xb, aug_gen) if config["data"].get("augment") else xb
            xb = data_mod.normalise(xb, mean, std)
            if train_cfg.get("channels_last"):
                xb = xb.contiguous(memory_format=torch.channels_last)
            with amp:
                loss = loss_fn(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            global_step += 1
            loss_sum += loss.detach() * len(yb)
            seen += len(yb)
            every = train_cfg.get("log_every_n_steps") or 0
            if every and global_step % every == 0 and global_step not in already.get(schema.STEP_METRIC, set()):
                point = [global_step, loss.item(), tracking.now_ms()]
                step_points.append(point)
                tracker.log_metrics({schema.STEP_METRIC: point[1]}, step=global_step, timestamp_ms=point[2])
        train_loss, _, n_train = _all_reduce(loss_sum, torch.zeros((), device=device), seen, device)
        val_loss, val_acc = evaluate_shard(model, tensors["val_x"], tensors["val_y"], mean, std, train_cfg, session, loss_fn)
        elapsed = time.perf_counter() - t0
        metrics = {
            "epoch": epoch,
            "train_loss": train_loss / max(n_train, 1),
            "val_loss": val_loss,
            "val_acc": val_acc,
            "lr": optimizer.param_groups[0]["lr"],
            "epoch_time_s": elapsed,
            "samples_per_s": n_train / elapsed,
            schema.LOGGED_AT: tracking.now_ms(),
        }
        history.append(metrics)
        if epoch not in already.get("val_acc", set()):
            tracker.log_metrics({k: metrics[k] for k in schema.EPOCH_METRICS}, step=epoch, timestamp_ms=metrics[schema.LOGGED_AT])
        # No flush here: the training loop never waits on MLflow. A point still queued when the process
        # dies is not lost: the checkpoint holds every point with its timestamp, and a restart (or the
        # search's bookkeeper) writes back what MLflow lacks, idempotently.
        ckpt_dir = None
        if session.rank == 0:
            ckpt_dir = save_checkpoint(
                config, model, optimizer, scheduler, epoch, history, tracker.run_id, restarts, step_points=step_points
            )
        session.report({**metrics, "mlflow_run_id": tracker.run_id or "", "restarts": restarts, "node_id": _node_id()}, ckpt_dir)
        if ckpt_dir:
            shutil.rmtree(ckpt_dir, ignore_errors=True)

    if session.rank == 0 and rt.get("log_model") and tracker.run_id:
        tracker.flush(timeout_s=60.0)
        try:
            tracking.retrying(
                lambda: log_model(rt["tracking_uri"], tracker.run_id or "", _unwrap(model), splits),
                config["mlflow"]["retry_seconds"],
            )
        except Exception as err:
            if not tracking.transient(err):
                raise
            log.warning(
                "MLflow unreachable: the model was not logged to run %s (%s); it is in the checkpoint under %s",
                tracker.run_id,
                str(err)[:200],
                config["storage_path"],
            )
    tracker.close("FINISHED" if rt.get("close_run", True) else "RUNNING")
    return metrics


def _node_id() -> str:
    try:
        import ray

        return str(ray.get_runtime_context().get_node_id()) if ray.is_initialized() else ""
    except Exception:
        return ""


def _open_run(config: dict[str, Any], rank: int) -> tuple[str | None, dict[str, Any] | None, bool]:
    """Rank 0 opens (or, after a restart, finds) the job's or trial's MLflow run: (run id, None, created
    just now), or (None, how to open it, False) when the tracker stays down past mlflow.retry_seconds;
    training goes on."""
    rt = config.get("runtime", {})
    if rank != 0 or not rt.get("experiment_id"):
        return None, None, False
    tags = {schema.TAG_ROLE: rt.get("role", "train"), **rt.get("lineage", {})}
    if rt.get("parent_run_id"):
        tags[schema.TAG_PARENT] = rt["parent_run_id"]
    spec = {
        "experiment_id": rt["experiment_id"],
        "run_key": rt["run_key"],
        "run_name": rt.get("run_name", rt["run_key"]),
        "tags": tags,
    }
    try:
        run_id, created = tracking.retrying(
            lambda: tracking.open_run(rt["tracking_uri"], **spec), config["mlflow"]["retry_seconds"]
        )
        return run_id, None, created
    except Exception as err:
        if not tracking.transient(err):
            raise
        log.warning(
            "MLflow unreachable (%s): run %s is opened when the tracker returns; points wait in the spool",
            str(err)[:200],
            rt["run_key"],
        )
        return None, spec, False


def _start_tracking(
    tracker: Any,
    config: dict[str, Any],
    session: Session,
    history: list[dict[str, Any]],
    step_points: list[list[float]],
    restarts: int,
    fresh: bool = False,
) -> dict[str, set[int]]:
    """Params on first start; after a restart, backfill epochs and steps the checkpoint has but MLflow lacks.

    Returns the steps already logged, so a re-run epoch is never logged twice.
    """
    if type(tracker) is tracking.NullLogger:
        return {}
    # a run created just now has no points: no need to ask MLflow (two queries per trial otherwise)
    found = {"val_acc": set(), schema.STEP_METRIC: set()} if fresh else _logged_steps(tracker, config)
    already = found or {"val_acc": set(), schema.STEP_METRIC: set()}
    if restarts == 0 and not already["val_acc"]:
        tracker.log_params({**tracking.config_params(config), "world_size": session.world_size})
        tracker.set_tags({"world_size": session.world_size})
    for point in history if found is not None else []:  # unknown what MLflow has: the spool holds the rest
        if point["epoch"] not in already["val_acc"]:
            tracker.log_metrics(
                {k: point[k] for k in schema.EPOCH_METRICS}, step=point["epoch"], timestamp_ms=point.get(schema.LOGGED_AT)
            )
            already["val_acc"].add(point["epoch"])
    for step, value, logged_at in step_points if found is not None else []:
        if int(step) not in already[schema.STEP_METRIC]:
            tracker.log_metrics({schema.STEP_METRIC: value}, step=int(step), timestamp_ms=int(logged_at))
            already[schema.STEP_METRIC].add(int(step))
    if restarts:
        tracker.set_tags({schema.TAG_RESTARTS: restarts})
        tracker.log_metrics({"restarts": restarts}, step=len(history))
        log.warning(  # a restart after a failure, or a trial the scheduler paused and now resumes
            "resumed from epoch %d (resume %d); MLflow run %s continues", len(history), restarts, tracker.run_id
        )
    return already


def _logged_steps(tracker: Any, config: dict[str, Any]) -> dict[str, set[int]] | None:
    """The epochs and steps the run already has in MLflow; None when that cannot be known (tracker down)."""
    if not tracker.run_id:
        return None
    uri, keys = config["runtime"]["tracking_uri"], ("val_acc", schema.STEP_METRIC)
    try:
        return tracking.retrying(
            lambda: {key: tracking.logged_steps(uri, tracker.run_id, key) for key in keys}, config["mlflow"]["retry_seconds"]
        )
    except Exception as err:
        if not tracking.transient(err):
            raise
        log.warning(
            "MLflow unreachable (%s): epochs the checkpoint holds are not compared with run %s", str(err)[:200], tracker.run_id
        )
        return None


def _report_again(
    config: dict[str, Any],
    session: Session,
    trained: tuple[nn.Module, Any, Any],
    history: list[dict[str, Any]],
    step_points: list[list[float]],
    known_epoch: int,
    run_id: str | None,
    restarts: int,
) -> None:
    """Report the restored epochs after known_epoch to a launcher that lost them (MLflow has them already),
    the last one with a checkpoint, so its results, scheduler and checkpoint record match the disk again."""
    points = history[known_epoch:]
    log.warning(
        "the launcher knew epochs up to %d but the newest checkpoint holds %d; reporting epochs %s again",
        known_epoch,
        len(history),
        [p["epoch"] for p in points],
    )
    for i, point in enumerate(points):
        ckpt_dir = None
        if i == len(points) - 1 and session.rank == 0:
            ckpt_dir = save_checkpoint(config, *trained, point["epoch"], history, run_id, restarts, step_points=step_points)
        session.report({**point, "mlflow_run_id": run_id or "", "restarts": restarts, "node_id": _node_id()}, ckpt_dir)
        if ckpt_dir:
            shutil.rmtree(ckpt_dir, ignore_errors=True)


# ------------------------------------------------------------------ pieces


def _steps_per_epoch(n: int, global_batch: int, world: int) -> int:
    per_worker = global_batch // world
    return max(1, math.ceil(math.ceil(n / world) / per_worker))


def _batches(x: torch.Tensor, y: torch.Tensor, train_cfg: dict[str, Any], session: Session, epoch: int) -> Any:
    """This rank's shard of a seeded epoch permutation (DistributedSampler semantics), in batches."""
    from torch.utils.data import DistributedSampler

    indices: Any = range(len(y))  # a range is a valid map-style dataset of indices
    sampler: DistributedSampler[int] = DistributedSampler(
        indices, num_replicas=session.world_size, rank=session.rank, shuffle=True, seed=train_cfg["seed"], drop_last=False
    )
    sampler.set_epoch(epoch)
    idx = torch.tensor(list(iter(sampler)), device=x.device)
    per_worker = train_cfg["batch_size"] // session.world_size
    for i in range(0, len(idx), per_worker):
        b = idx[i : i + per_worker]
        yield x[b], y[b]


def build_optimizer(config: dict[str, Any], model: nn.Module, steps_per_epoch: int) -> tuple[Any, Any]:
    opt, train_cfg = config["optim"], config["train"]
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in model.parameters():
        (decay if p.ndim > 1 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": opt["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}]
    if opt["name"] == "sgd":
        optimizer: Any = torch.optim.SGD(
            groups, lr=opt["lr"], momentum=opt["momentum"], nesterov=bool(opt.get("nesterov")) and opt["momentum"] > 0
        )
    else:
        optimizer = torch.optim.AdamW(groups, lr=opt["lr"], betas=(opt["momentum"], 0.999))
    total = max(1, train_cfg["epochs"] * steps_per_epoch)
    warmup = int(train_cfg.get("warmup_epochs", 0) * steps_per_epoch)
    kind = train_cfg.get("lr_schedule", "cosine")

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if kind == "none":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if kind == "onecycle":  # linear decay to zero after warm-up
            return max(0.0, 1.0 - progress)
        return 0.5 * (1 + math.cos(math.pi * progress))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _autocast(amp: Any, device: torch.device) -> Any:
    use = device.type == "cuda" if amp == "auto" else bool(amp) and device.type == "cuda"
    return torch.autocast("cuda", dtype=torch.bfloat16) if use else nullcontext()


def _all_reduce(loss_sum: torch.Tensor, correct: torch.Tensor, n: int, device: torch.device) -> tuple[float, float, int]:
    t = torch.stack([loss_sum.float(), correct.float(), torch.tensor(float(n), device=device)])
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return float(t[0]), float(t[1]), int(t[2])


@torch.no_grad()
def predict(
    model: nn.Module,
    x: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    batch_size: int,
    channels_last: bool = False,
    tta_flip: bool = False,
) -> torch.Tensor:
    """Logits for uint8 images x, in batches (optionally averaged with the flipped image)."""
    model.eval()
    out = []
    for i in range(0, len(x), batch_size):
        xb = data_mod.normalise(x[i : i + batch_size], mean, std)
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        logits = model(xb).float()
        if tta_flip:
            logits = (logits + model(xb.flip(3)).float()) / 2
        out.append(logits)
    return torch.cat(out) if out else torch.zeros(0)


def evaluate_shard(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    train_cfg: dict[str, Any],
    session: Session,
    loss_fn: nn.Module,
) -> tuple[float, float]:
    """Validation loss and accuracy over all ranks (each rank scores a strided shard)."""
    xs, ys = x[session.rank :: session.world_size], y[session.rank :: session.world_size]
    net = _unwrap(model)
    with _autocast(train_cfg.get("amp", "auto"), session.device):
        logits = predict(net, xs, mean, std, train_cfg.get("eval_batch_size", 1024), bool(train_cfg.get("channels_last")))
    loss = loss_fn(logits, ys) * len(ys) if len(ys) else torch.zeros((), device=x.device)
    correct = (logits.argmax(1) == ys).sum() if len(ys) else torch.zeros((), device=x.device)
    loss_sum, n_correct, n = _all_reduce(loss, correct, len(ys), x.device)
    return loss_sum / max(n, 1), n_correct / max(n, 1)


def _unwrap(model: nn.Module) -> nn.Module:
    inner = getattr(model, "module", model)  # DDP wraps the model in .module
    assert isinstance(inner, nn.Module)
    return inner


# ------------------------------------------------------------------ checkpoints


def save_checkpoint(
    config: dict[str, Any],
    model: nn.Module,
    optimizer: Any,
    scheduler: Any,
    epoch: int,
    history: list[dict[str, Any]],
    run_id: str | None,
    restarts: int,
    step_points: list[list[float]] | None = None,
) -> str:
    """Write model/optimizer/scheduler/epoch, the logged points, with a sha256 manifest into a fresh local dir."""
    base = config.get("checkpoint", {}).get("dir")
    if base:
        Path(base).mkdir(parents=True, exist_ok=True)
    out = Path(tempfile.mkdtemp(prefix="raymlops-ckpt-", dir=base))
    state = {
        "model": _unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": epoch,
        "history": history,
        "step_points": step_points or [],
        "run_id": run_id,
        "restarts": restarts,
        "model_config": config["model"],
        "data_name": config["data"]["name"],
    }
    torch.save(state, out / STATE_FILE)
    digest = hashlib.sha256((out / STATE_FILE).read_bytes()).hexdigest()
    (out / MANIFEST_FILE).write_text(json.dumps({"sha256": digest, "epoch": epoch}))
    return str(out)


def load_state(path: str) -> dict[str, Any]:
    """A checkpoint's state after its sha256 check; raises ValueError if it is corrupt."""
    root = Path(path)
    manifest = json.loads((root / MANIFEST_FILE).read_text())
    blob = (root / STATE_FILE).read_bytes()
    if hashlib.sha256(blob).hexdigest() != manifest["sha256"]:
        raise ValueError(f"checksum mismatch in {root / STATE_FILE}")
    import io

    state: dict[str, Any] = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=False)
    return state


def restore(candidates: list[str], model: nn.Module, optimizer: Any, scheduler: Any) -> dict[str, Any]:
    """Load the newest readable checkpoint into model/optimizer/scheduler; warn about corrupt ones."""
    for i, path in enumerate(candidates):
        try:
            state = _load_any(path)
        except Exception as err:
            log.warning("checkpoint %s is unreadable (%s); trying the previous one", path, err)
            continue
        if i:
            log.warning("restored from older checkpoint %s (epoch %d) after %d corrupt one(s)", path, state["epoch"], i)
        _unwrap(model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        return state
    if candidates:
        log.warning("no readable checkpoint among %d; starting from scratch", len(candidates))
    return {}


def _load_any(path: str) -> dict[str, Any]:
    if "://" not in path:
        return load_state(path)
    import ray.train

    with ray.train.Checkpoint(path).as_directory() as local:
        return load_state(local)


def log_model(tracking_uri: str, run_id: str, model: nn.Module, splits: data_mod.Splits) -> str:
    """Log the model as an MLflow PyTorch model with signature and input example; return its URI."""
    import mlflow
    import mlflow.pytorch
    import torchvision
    from mlflow.models import infer_signature

    model = model.to("cpu").float().eval()
    example = data_mod.normalise(
        splits.test_x[:2], torch.tensor(splits.mean).view(1, -1, 1, 1), torch.tensor(splits.std).view(1, -1, 1, 1)
    )
    with torch.no_grad():
        out = model(example)
    signature = infer_signature(example.numpy(), out.numpy())
    mlflow.set_tracking_uri(tracking_uri)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pytorch.log_model(
            model,
            name="model",
            serialization_format="pickle",
            signature=signature,
            input_example=example.numpy(),
            pip_requirements=[
                f"torch=={torch.__version__.split('+')[0]}",
                f"torchvision=={torchvision.__version__.split('+')[0]}",
            ],
            metadata={"classes": splits.classes, "mean": splits.mean, "std": splits.std},
        )
    return str(info.model_uri)
