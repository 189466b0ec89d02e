"""The Session a launcher hands the loop (rank, device, how to report, what to restore), and its two builders:
one for a Ray Train DDP worker, one for a 1-worker Tune trial training inside its own actor.

The rank is decided here, once per process; the logger and the checkpoint writer ask `is_rank_zero`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from raymlops import ray_internals
from raymlops.models.device import choose_device
from raymlops.training.checkpoints import (
    DONE_MARKER,
    checkpoint_candidates,
    drop_unregistered,
    drop_unregistered_trial,
    earlier_trial_folders,
    epoch_of,
)

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger(__name__)
# The device of a session that trains nothing in its process (a DDP trial's Tune actor relaying its lane):
# no torch.device, so that actor never imports torch. The training loop is never handed such a session.
RELAY_NO_DEVICE: Any = None


@dataclass(frozen=True)
class Session:
    """What a launcher provides to the loop."""

    rank: int
    world_size: int
    device: torch.device  # RELAY_NO_DEVICE in a Tune actor that only relays a warm lane's reports
    report: Callable[[dict[str, Any], str | None], None]  # (metrics, local checkpoint dir or None)
    restore_dirs: list[str] = field(default_factory=list)  # newest first; a corrupt one falls back to the next
    prepare_model: Callable[[nn.Module], nn.Module] = lambda m: m
    # The last epoch the launcher has seen reported; a restored checkpoint newer than that (a killed
    # search driver whose snapshot lagged the disk) is reported again. -1: the launcher saw everything.
    known_epoch: int = -1
    stop_epoch: int | None = None  # the search already ended this trial at this epoch: train no further
    after_restore: Callable[[], None] | None = None  # called on every rank once the checkpoint is loaded
    # Ray Train's preemption notice (ray.train.get_preemption_info): not None once a node of this worker group
    # is being drained for preemption. A collective: every rank calls it at the same points. None: never asked
    # (a Tune-only trial, which Ray tells nothing).
    preemption: Callable[[], Any] | None = None
    nodes: int = 1  # how many Ray nodes this worker group spans (a DDP group may span several)

    @property
    def is_rank_zero(self) -> bool:
        """The one rank that writes checkpoints and talks to MLflow."""
        return self.rank == 0


def ray_train_session(device: str = "auto") -> Session:
    """The Session of a Ray Train V2 worker: its rank from Train, reports and checkpoints to Train; its device
    from Train in a DDP group, from train.device (`device`) when it is the only worker (MPS on a Mac)."""
    import ray.train
    import ray.train.torch

    _quiet_worker_loggers()
    ctx = ray.train.get_context()
    ckpt = ray.train.get_checkpoint()

    def report(metrics: dict[str, Any], ckpt_dir: str | None) -> None:
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(ckpt_dir) if ckpt_dir else None)

    def after_restore() -> None:
        if ckpt is None:
            return
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()  # every rank has read its checkpoint before rank 0 tidies the folder
        if ctx.get_world_rank() == 0:
            drop_unregistered(ckpt.path)

    train_device = ray.train.torch.get_device()
    prepare_model: Callable[[nn.Module], nn.Module] = ray.train.torch.prepare_model
    if ctx.get_world_size() == 1:  # no DDP group: train.device decides (Train's prepare_model would move it back)
        chosen = choose_device(device, gpu_allowed=train_device.type == "cuda")
        if chosen != train_device:
            train_device, prepare_model = chosen, _as_is
    return Session(
        rank=ctx.get_world_rank(),
        world_size=ctx.get_world_size(),
        device=train_device,
        report=report,
        restore_dirs=checkpoint_candidates(ckpt.path) if ckpt else [],
        prepare_model=prepare_model,
        after_restore=after_restore,
        preemption=ray.train.get_preemption_info,
        nodes=_worker_nodes(ctx.get_world_size(), train_device),
    )


def _worker_nodes(world_size: int, device: torch.device) -> int:
    """How many nodes the worker group spans: every rank's node id, gathered once per worker-group start (a
    collective on every rank, milliseconds). NCCL gathers on the current device: this worker's GPU."""
    import torch.distributed as dist

    if world_size == 1 or not (dist.is_available() and dist.is_initialized()):
        return 1
    import ray
    import torch

    if device.type == "cuda":
        torch.cuda.set_device(device)
    ids: list[Any] = [None] * world_size
    dist.all_gather_object(ids, ray.get_runtime_context().get_node_id())
    return len(set(ids))


def _quiet_worker_loggers() -> None:
    for name in ("alembic", "mlflow", "ray.train"):  # a line per report and per SQLite connection otherwise
        logging.getLogger(name).setLevel(logging.WARNING)
    ray_internals.quiet(ray_internals.train_v2_report_logger())  # "Reporting training result ..." per report


def tune_session(use_gpu: bool, trains_here: bool = True, device: str = "auto") -> Session:
    """The Session of a 1-worker Tune trial: rank 0 of 1, reports and checkpoints to Tune. A trial that only
    relays a warm lane's reports (`trains_here=False`) gets no device, and its actor never imports torch.

    A resumed search: Tune's record of this trial may lag the disk (see checkpoint_candidates), and a
    trial the search already ended has a done marker (search.callbacks) that keeps it from training on.
    """
    from ray import tune

    ckpt = tune.get_checkpoint()
    trial_dir = _trial_folder()
    known = epoch_of(ckpt.path) if ckpt else 0  # -1 (unreadable manifest): report nothing again
    # PBT's exploit hands this trial another trial's checkpoint: restore exactly that one, and leave this
    # trial's own (newer) checkpoints alone, which are neither a lagging record nor orphans then
    donated = bool(ckpt and trial_dir and not os.path.abspath(ckpt.path).startswith(os.path.abspath(trial_dir) + os.sep))
    first_checkpoint = [not donated]

    def report(metrics: dict[str, Any], ckpt_dir: str | None) -> None:
        started = time.time()
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(ckpt_dir) if ckpt_dir else None)
        if ckpt_dir and first_checkpoint[0]:
            first_checkpoint[0] = False
            if trial_dir and known >= 0:
                drop_unregistered_trial(trial_dir, known, started)

    done = epoch_of(trial_dir, DONE_MARKER) if trial_dir else None
    # created again on resume (Tune's state never recorded it): its checkpoints are in its earlier folder
    earlier = earlier_trial_folders(trial_dir, tune.get_context().get_trial_id()) if trial_dir and not ckpt else []
    return Session(
        rank=0,
        world_size=1,
        device=choose_device(device, gpu_allowed=use_gpu) if trains_here else RELAY_NO_DEVICE,
        report=report,
        restore_dirs=[ckpt.path] if donated and ckpt else checkpoint_candidates(ckpt.path if ckpt else None, trial_dir, earlier),
        known_epoch=known,
        stop_epoch=done if done and done > 0 else None,
    )


def _as_is(model: Any) -> Any:
    return model


def _trial_folder() -> str | None:
    """This trial's folder under storage_path when it is on local disk (None for s3:// and the like). Tune
    creates it at the trial's first report: a trial created again on resume has only its search's folder yet."""
    path = ray_internals.tune_trial_fs_path()
    if path is None:
        return None
    return path if os.path.isabs(path) and os.path.isdir(os.path.dirname(path)) else None
