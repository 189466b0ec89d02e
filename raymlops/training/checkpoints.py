"""Checkpoints: writing and verifying them (sha256 manifest), finding the newest readable one, and tidying
the ones a killed process left behind that Ray never registered.

A checkpoint carries the job's or trial's resolved config beside the weights, so whatever loads
it later (evaluation after a search) rebuilds nothing from the search's records.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raymlops import ray_internals
from raymlops.config.schema import Config
from raymlops.config.tree import to_dict
from raymlops.core.redact import redact

if TYPE_CHECKING:
    from torch import nn

# torch is imported where weights are read or written: a DDP trial's Tune actor and the lane broker use the
# folder helpers below and never load torch (2-3 s of CPU per process on a small machine).

log = logging.getLogger(__name__)
STATE_FILE, MANIFEST_FILE = "state.pt", "manifest.json"
DONE_MARKER = "raymlops_done.json"  # in a Tune trial's folder: the search ended this trial (at "epoch")


def save_checkpoint(
    config: Config,
    model: nn.Module,
    optimizer: Any,
    scheduler: Any,
    epoch: int,
    history: list[dict[str, Any]],
    run_id: str | None,
    restarts: int,
    step_points: list[list[float]] | None = None,
) -> str:
    """Write model/optimizer/scheduler/epoch, the logged points and the resolved config, with a sha256
    manifest, into a fresh local dir."""
    base = config.checkpoint.dir
    if base:
        Path(base).mkdir(parents=True, exist_ok=True)
    import torch

    from raymlops.training.ops import unwrap

    out = Path(tempfile.mkdtemp(prefix="raymlops-ckpt-", dir=base))
    state = {
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": epoch,
        "history": history,
        "step_points": step_points or [],
        "run_id": run_id,
        "restarts": restarts,
        "config": redact(to_dict(config)),  # the job's or trial's resolved config (credentials masked): what made these weights
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
    import torch

    state: dict[str, Any] = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=False)
    return state


def restore(candidates: list[str], model: nn.Module, optimizer: Any, scheduler: Any) -> dict[str, Any]:
    """Load the newest readable checkpoint into model/optimizer/scheduler; warn about corrupt ones."""
    from raymlops.training.ops import unwrap

    for i, path in enumerate(candidates):
        try:
            state = load_any(path)
        except Exception as err:
            log.warning("checkpoint %s is unreadable (%s); trying the previous one", path, err)
            continue
        if i:
            log.warning("restored from older checkpoint %s (epoch %d) after %d corrupt one(s)", path, state["epoch"], i)
        unwrap(model).load_state_dict(state["model"])
        fresh = _hyperparameters(optimizer, scheduler)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _keep_hyperparameters(optimizer, scheduler, fresh)
        return state
    if candidates:
        log.warning("no readable checkpoint among %d; starting from scratch", len(candidates))
    return {}


def _hyperparameters(optimizer: Any, scheduler: Any) -> dict[str, Any]:
    """What this run's config set on a freshly built optimizer and schedule (before a checkpoint overwrites it)."""
    groups = [{k: g[k] for k in ("lr", "weight_decay") if k in g} for g in optimizer.param_groups]
    return {"groups": groups, "base_lrs": list(getattr(scheduler, "base_lrs", []))}


def _keep_hyperparameters(optimizer: Any, scheduler: Any, fresh: dict[str, Any]) -> None:
    """The config wins over the checkpoint for lr and weight decay: a PBT trial restarts from another trial's
    checkpoint with perturbed values, which optimizer.load_state_dict would silently undo. The current lr keeps
    its place in the schedule (scaled by new base / old base); a plain restart changes nothing."""
    old_bases = list(getattr(scheduler, "base_lrs", []))
    for i, (group, new) in enumerate(zip(optimizer.param_groups, fresh["groups"], strict=False)):
        if "weight_decay" in new:
            group["weight_decay"] = new["weight_decay"]
        if i < len(old_bases) and i < len(fresh["base_lrs"]) and old_bases[i] and old_bases[i] != fresh["base_lrs"][i]:
            ratio = fresh["base_lrs"][i] / old_bases[i]
            group["lr"] *= ratio
            group["initial_lr"] = fresh["base_lrs"][i]
    if fresh["base_lrs"] and hasattr(scheduler, "base_lrs"):
        scheduler.base_lrs = list(fresh["base_lrs"])


def load_any(path: str) -> dict[str, Any]:
    if "://" not in path:
        return load_state(path)
    import ray.train

    with ray.train.Checkpoint(path).as_directory() as local:
        return load_state(local)


def checkpoint_candidates(latest: str | None, folder: str | None = None, earlier: list[str] | None = None) -> list[str]:
    """Checkpoint dirs to try, newest epoch first: the launcher's latest and every checkpoint_* dir beside
    it (or in folder, or in the earlier folders of the same trial) on local disk, ordered by the epoch in
    their manifests.

    A sibling newer than the launcher's latest exists when the launcher's record lags the disk: Tune
    snapshots its experiment state every ~10 s, so a search driver killed in between resumes a trial
    from an older checkpoint than the trial last wrote; this finds the newer one. A trial created after
    the last snapshot is created again on resume, in a new folder: its checkpoints are in the earlier one.
    """
    parent = Path(folder) if folder else Path(latest).parent if latest and "://" not in latest else None
    folders = [d for d in [parent, *map(Path, earlier or [])] if d is not None and d.is_dir()]
    if not folders:
        return [latest] if latest else []
    found = [p for d in folders for p in d.glob("checkpoint_*") if p.is_dir()]
    if latest and Path(latest) not in found:
        found.append(Path(latest))
    return [str(p) for p in sorted(found, key=lambda p: (epoch_of(str(p)), p == Path(latest or ""), p.name), reverse=True)]


def earlier_trial_folders(trial_dir: str, trial_id: str) -> list[str]:
    """Other folders of this trial beside trial_dir (Tune names them <trainable>_<trial_id>_<index>_..._<time>):
    left by a run of the trial that Tune's experiment state never recorded before its driver died."""
    folder, marker = Path(trial_dir), f"_{trial_id}_"
    if not trial_id or marker not in folder.name:
        return []
    prefix = folder.name[: folder.name.index(marker) + len(marker)]
    return sorted(str(p) for p in folder.parent.glob(f"{prefix}*") if p.is_dir() and p != folder)


def epoch_of(folder: str, name: str = MANIFEST_FILE) -> int:
    """The "epoch" in a checkpoint's manifest or a done marker; -1 when absent or unreadable."""
    if "://" in folder:
        return -1
    try:
        return int(json.loads(Path(folder, name).read_text())["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return -1


def drop_unregistered(latest: str) -> None:
    """Delete checkpoint dirs that Ray Train never registered: written by a worker killed before the
    controller recorded them, so Train's num_to_keep pruning would never delete them."""
    folder = Path(latest).parent
    dirs = sorted(p.name for p in folder.glob("checkpoint_*") if p.is_dir() and p.name != Path(latest).name)
    for name in ray_internals.unregistered_by_train(folder, dirs) or []:  # None: remote storage, or no snapshot yet
        log.warning("removing %s: written just before a crash, never registered by Ray Train", folder / name)
        shutil.rmtree(folder / name, ignore_errors=True)


def drop_unregistered_trial(trial_dir: str, known: int, before: float) -> None:
    """After a trial's first checkpoint since it (re)started is registered, delete the checkpoints that a
    killed driver never registered: newer than the one Tune restored (epoch `known`) and written before
    this run. Tune's num_to_keep pruning only deletes checkpoints it knows, so they would stay for good."""
    for path in Path(trial_dir).glob("checkpoint_*"):
        try:
            orphan = epoch_of(str(path)) > known and (path / MANIFEST_FILE).stat().st_mtime < before
        except OSError:
            continue
        if orphan:
            log.warning("removing %s: written just before the search driver died, never registered by Tune", path)
            shutil.rmtree(path, ignore_errors=True)
