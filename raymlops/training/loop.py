"""The training loop every launcher runs, as a recipe: setup, one epoch at a time, save and report, finish.

`run_training` serves a Ray Train DDP worker (`train_loop_per_worker`), a 1-worker Tune trial in
its own actor, benchmarks and tests; the launcher's Session says the rank, the device, how to
report and what to restore; the RunContract says which MLflow run to log to (None: log nothing).
"""

from __future__ import annotations

import logging
import shutil
import time
from typing import Any

import torch
from torch import nn

from raymlops.config.contract import RunContract
from raymlops.config.objectives import needs_costs
from raymlops.config.schema import Config
from raymlops.core import names
from raymlops.data import augment, load_splits, normalise
from raymlops.models.small_images import build_model
from raymlops.tracking import NullLogger, now_ms, retry_or_none
from raymlops.training.checkpoints import restore, save_checkpoint
from raymlops.training.costs import model_costs
from raymlops.training.model_io import log_model
from raymlops.training.notices import preemption_line
from raymlops.training.ops import all_reduce, autocast, batches, evaluate_shard, unwrap
from raymlops.training.optim import build_optimizer, steps_per_epoch
from raymlops.training.session import Session, ray_train_session
from raymlops.training.tracked_run import open_tracker, start_tracking
from raymlops.training.training_state import Progress

log = logging.getLogger(__name__)


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train V2 entry point (one call per DDP worker): {"config": ..., "run": RunContract or None}."""
    config = loop_config["config"]
    run_training(config, loop_config["run"], ray_train_session(config.train.device))


def run_training(config: Config, run: RunContract | None, session: Session) -> dict[str, Any]:
    """Train for train.epochs (resuming from a checkpoint if given); return the last epoch's metrics."""
    recipe = Recipe(config, run, session)
    try:
        for epoch in range(recipe.progress.epoch + 1, recipe.last_epoch + 1):
            recipe.save_and_report(recipe.train_epoch(epoch))
    except BaseException:  # stopped or paused by Tune (SystemExit in its report), or failed: a reused actor
        recipe.tracker.detach(timeout_s=5.0)  # keeps no system-metrics thread of this run going
        raise
    return recipe.finish()


class Recipe:
    """One job's or trial's training, set up in the constructor: data, model, optimizer, restored
    checkpoint, MLflow run; then `train_epoch`, `save_and_report` per epoch, and `finish`."""

    def __init__(self, config: Config, run: RunContract | None, session: Session):
        self.config, self.run, self.session, self.train_cfg = config, run, session, config.train
        torch.manual_seed(self.train_cfg.seed + session.rank)
        torch.set_num_threads(max(1, round(config.scaling.cpus_per_worker)))
        self.splits = load_splits(config.data, seed=self.train_cfg.seed)
        self.model = self._build_model()
        self.steps_per_epoch = steps_per_epoch(len(self.splits.train_y), self.train_cfg.batch_size, session.world_size)
        self.optimizer, self.scheduler = build_optimizer(config.optim, config.train, self.model, self.steps_per_epoch)
        self.progress = Progress.from_state(restore(session.restore_dirs, self.model, self.optimizer, self.scheduler))
        self.tracker: NullLogger = open_tracker(config.mlflow, config.scheduler.name, run, session, self.progress.run_id)
        self.already = start_tracking(self.tracker, config, session, self.progress, self.splits)
        self._prepare_tensors()  # before any report: a re-report needs the cost figures (and their val images)
        self.last_epoch = min(self.train_cfg.epochs, session.stop_epoch or self.train_cfg.epochs)
        if 0 <= session.known_epoch < self.progress.epoch:
            self._report_again(session.known_epoch)
        if session.after_restore:
            session.after_restore()

    def _build_model(self) -> nn.Module:
        model = build_model(self.config.model, self.splits.channels, self.splits.num_classes)
        if self.train_cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return self.session.prepare_model(model.to(self.session.device))

    def _prepare_tensors(self) -> None:
        device, seed = self.session.device, self.train_cfg.seed
        self.mean = torch.tensor(self.splits.mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(self.splits.std, device=device).view(1, -1, 1, 1)
        self.tensors = {
            k: getattr(self.splits, k).to(device, non_blocking=True) for k in ("train_x", "train_y", "val_x", "val_y")
        }
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=self.train_cfg.label_smoothing)
        self.aug_gen = torch.Generator().manual_seed(seed * 1000 + self.session.rank)
        self.amp = autocast(self.train_cfg.amp, device)
        self.global_step = self.progress.epoch * self.steps_per_epoch
        self.metrics: dict[str, Any] = self.progress.history[-1] if self.progress.history else {}
        self.costs: dict[str, float] | None = None if needs_costs(self.config.tune, self.config.registry) else {}

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        """One pass over this rank's shard, then validation over all ranks; the epoch's metrics, logged."""
        t0 = time.perf_counter()
        device, cfg = self.session.device, self.train_cfg
        self.model.train()
        loss_sum, seen = torch.zeros((), device=device), 0
        for xb, yb in batches(self.tensors["train_x"], self.tensors["train_y"], cfg, self.session, epoch):
            loss = self._step(xb, yb)
            loss_sum += loss.detach() * len(yb)
            seen += len(yb)
            self._log_step(loss)
        train_loss, _, n_train = all_reduce(loss_sum, torch.zeros((), device=device), seen, device)
        val_loss, val_acc = evaluate_shard(
            self.model, self.tensors["val_x"], self.tensors["val_y"], self.mean, self.std, cfg, self.session, self.loss_fn
        )
        elapsed = time.perf_counter() - t0
        metrics = {
            "epoch": epoch,
            "train_loss": train_loss / max(n_train, 1),
            "val_loss": val_loss,
            "val_acc": val_acc,
            "lr": self.optimizer.param_groups[0]["lr"],
            "epoch_time_s": elapsed,
            "samples_per_s": n_train / elapsed,
            names.LOGGED_AT: now_ms(),
        }
        self.progress.history.append(metrics)
        self.progress.epoch, self.metrics = epoch, metrics
        if epoch not in self.already.get("val_acc", set()):
            self.tracker.log_metrics(
                {k: metrics[k] for k in names.EPOCH_METRICS}, step=epoch, timestamp_ms=metrics[names.LOGGED_AT]
            )
        # No flush here: the training loop never waits on MLflow. A point still queued when the process
        # dies is not lost: the checkpoint holds every point with its timestamp, and a restart (or the
        # search's bookkeeper) writes back what MLflow lacks, idempotently.
        return metrics

    def _step(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        xb = augment(xb, self.aug_gen) if self.config.data.augment else xb
        xb = normalise(xb, self.mean, self.std)
        if self.train_cfg.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with self.amp:
            loss = self.loss_fn(self.model(xb), yb)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        self.global_step += 1
        return loss

    def _log_step(self, loss: torch.Tensor) -> None:
        every, step = self.train_cfg.log_every_n_steps or 0, self.global_step
        if every and step % every == 0 and step not in self.already.get(names.STEP_METRIC, set()):
            point = [step, loss.item(), now_ms()]
            self.progress.step_points.append(point)
            self.tracker.log_metrics({names.STEP_METRIC: point[1]}, step=step, timestamp_ms=int(point[2]))

    def save_and_report(self, metrics: dict[str, Any], with_checkpoint: bool = True) -> None:
        """Rank 0 checkpoints (weights, progress, config); every rank reports the metrics to its launcher."""
        ckpt_dir = None
        if with_checkpoint and self.session.is_rank_zero:
            p = self.progress
            ckpt_dir = save_checkpoint(
                self.config, self.model, self.optimizer, self.scheduler, metrics["epoch"], p.history, self.tracker.run_id,
                p.restarts, step_points=p.step_points,
            )  # fmt: skip
        extra = {"mlflow_run_id": self.tracker.run_id or "", "restarts": self.progress.restarts, "node_id": _node_id()}
        extra.update(self._costs(metrics["epoch"]))
        self.session.report({**metrics, **extra}, ckpt_dir)
        if ckpt_dir:
            shutil.rmtree(ckpt_dir, ignore_errors=True)
        if with_checkpoint:
            self._wait_out_preemption(metrics["epoch"])

    def _wait_out_preemption(self, epoch: int) -> None:
        """A node of this worker group is being drained for preemption (`ray drain-node` with
        DRAIN_NODE_REASON_PREEMPTION, as the autoscaler and KubeRay send a spot reclaim): the epoch just reported
        is checkpointed, and an epoch begun now would be lost with the node. Train no further here; at the
        drain deadline Ray Train restarts the worker group on the nodes left (charged to
        FailureConfig.max_preemption_failures, unlimited, not to train.max_failures) and the trial resumes from
        this epoch. The last epoch needs no move."""
        if self.session.preemption is None or epoch >= self.last_epoch:
            return
        info = self.session.preemption()
        if info is None:
            return
        if self.session.is_rank_zero:
            log.warning("%s", preemption_notice(info, epoch, self.tracker.run_id))
            self.tracker.flush(timeout_s=10.0)  # this epoch's points reach MLflow before the node goes
        while True:  # until Ray Train ends this worker group at the deadline
            time.sleep(1.0)

    def _costs(self, epoch: int) -> dict[str, float]:
        """latency_ms / params_m of the trained model, measured once (after its first epoch here) when needed."""
        if self.costs is None:
            sample = normalise(self.tensors["val_x"][:1], self.mean, self.std)
            if self.train_cfg.channels_last:
                sample = sample.contiguous(memory_format=torch.channels_last)
            self.costs = model_costs(unwrap(self.model), sample, int(self.config.tune.latency_runs))
            self.tracker.log_metrics(self.costs, step=epoch)
        return self.costs

    def _report_again(self, known_epoch: int) -> None:
        """Report the restored epochs after known_epoch to a launcher that lost them (MLflow has them already),
        the last one with a checkpoint, so its results, scheduler and checkpoint record match the disk again."""
        points = self.progress.history[known_epoch:]
        log.warning(
            "the launcher knew epochs up to %d but the newest checkpoint holds %d; reporting epochs %s again",
            known_epoch,
            len(self.progress.history),
            [p["epoch"] for p in points],
        )
        for i, point in enumerate(points):
            self.save_and_report(point, with_checkpoint=i == len(points) - 1)

    def finish(self) -> dict[str, Any]:
        """Log the model (jobs; a search logs its best trial's), close the run; the last epoch's metrics."""
        run, run_id = self.run, self.tracker.run_id
        if run and run.log_model and run_id:
            self.tracker.flush(timeout_s=60.0)
            uri, splits, model = run.launch.tracking_uri, self.splits, unwrap(self.model)
            retry_or_none(
                lambda: log_model(uri, run_id, model, splits),
                self.config.mlflow.retry_seconds,
                f"the model was not logged to run {run_id}; it is in the checkpoint under {self.config.storage_path}",
            )
        self.tracker.close("FINISHED")
        return self.metrics


def _node_id() -> str:
    try:
        import ray

        return str(ray.get_runtime_context().get_node_id()) if ray.is_initialized() else ""
    except Exception:
        return ""


def preemption_notice(info: Any, epoch: int, run_id: str | None, now_s: float | None = None) -> str:
    """The console line for a preemption notice (a ray.train.PreemptionInfo) at a checkpointed epoch."""
    return preemption_line(list(info.preempted_node_ids), info.deadline_ms, epoch, run_id, now_s=now_s)
