"""Real faults, injected for real: a DDP worker SIGKILLed mid-training, the search driver's
process group SIGKILLed mid-search and resumed, and corrupt checkpoints.

Each job runs as `python -m raymlops.train|tune` in its own session with its own local Ray
cluster (ray.num_cpus=2), so the test can find and kill that job's processes and nobody else's.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
from conftest import overrides
from faultkit import alive, children, descendants, epoch_steps, finish, kill_tree, start_cli
from helpers import wait_until

from raymlops import tracking
from raymlops.config import Config, compose
from raymlops.core.names import TAG_RESTARTS
from raymlops.models.small_images import build_model
from raymlops.training import checkpoints, optim


def _train_workers(root: int) -> dict[int, str]:
    return {pid: cmd for pid, cmd in descendants(root).items() if cmd.startswith("ray::RayTrainWorker")}


def _checkpoint_dirs(root: Path, pattern: str = "*/checkpoint_*") -> list[Path]:
    return sorted(p for p in root.glob(pattern) if p.is_dir())


def _holds_file(pid: int, path: Path) -> bool:
    """Whether pid has path open (rank 0 keeps the SQLite tracking store open; other ranks never touch it)."""
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}") == str(path) for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


@pytest.mark.cluster
def test_ddp_worker_killed_resumes_same_run(tmp_path: Path, store: dict[str, str]) -> None:
    """Garble the newest checkpoint of a 2-worker job and SIGKILL its rank-0 Ray Train worker: the job
    restarts, detects the corrupt checkpoint, resumes from the one before, finishes, and continues
    the same MLflow run (epochs 1..4 once each, the restart recorded); num_to_keep checkpoints remain."""
    log = tmp_path / "train.log"
    epochs = 4
    proc = start_cli(
        "raymlops.train",
        overrides(
            store,
            "+experiment=smoke",
            "scaling.num_workers=2",
            f"train.epochs={epochs}",
            "data.num_train=4000",
            "data.image_size=32",  # smoke is 16 px: the kill was sized to land mid-epoch at 32 px
            "train.max_failures=1",
            "checkpoint.num_to_keep=2",
            "ray.num_cpus=2",
        ),
        log,
    )
    try:
        runs = tmp_path / "ray_results"
        ckpts = wait_until(
            lambda: (found := _checkpoint_dirs(runs)) and len(found) >= 2 and found,
            300,
            what="two checkpoints",
            interval_s=0.2,
            proc=proc,
            log=log,
        )
        workers = wait_until(
            lambda: (w := _train_workers(proc.pid)) and len(w) == 2 and w,
            30,
            what="two RayTrainWorker processes",
            proc=proc,
            log=log,
        )
        rank0 = [pid for pid in workers if _holds_file(pid, tmp_path / "mlflow.db")]
        victim = rank0[0] if rank0 else min(workers)
        newest = ckpts[-1]
        garbled_epoch = json.loads((newest / "manifest.json").read_text())["epoch"]
        blob = bytearray((newest / "state.pt").read_bytes())
        blob[len(blob) // 2] ^= 0xFF
        (newest / "state.pt").write_bytes(bytes(blob))
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        text = finish(proc, log, timeout_s=300)
    finally:
        if proc.poll() is None:
            kill_tree(proc)
    assert victim not in alive(workers)
    c = tracking.client(store["mlflow.tracking_uri"])
    exp = c.get_experiment_by_name("raymlops-smoke")
    runs_found = c.search_runs([exp.experiment_id])
    assert len(runs_found) == 1, "the restarted workers continued the same run"
    run = runs_found[0]
    assert run.info.status == "FINISHED"
    for key in ("val_acc", "train_loss", "val_loss", "lr"):
        assert epoch_steps(c, run.info.run_id, key) == list(range(1, epochs + 1)), f"{key}: no duplicated or missing epoch"
    assert int(run.data.tags[TAG_RESTARTS]) == 1
    restarts = c.get_metric_history(run.info.run_id, "restarts")
    assert [m.value for m in restarts] == [1.0]
    if garbled_epoch < epochs:  # the newest checkpoint at the kill was the one we garbled
        assert "checksum mismatch" in text and "restored from older checkpoint" in text
        assert restarts[0].step == garbled_epoch - 1, "resumed from the checkpoint before the corrupt one"
    assert "resumed from epoch" in text
    left = [p.name for p in _checkpoint_dirs(runs)]
    assert len(left) <= 2, f"checkpoint.num_to_keep=2, found {left}"
    print(
        f"fault: garbled checkpoint of epoch {garbled_epoch} + SIGKILL RayTrainWorker pid {victim} "
        f"({'rank 0' if rank0 else 'a worker'}); resumed from epoch {restarts[0].step}, finished "
        f"{time.monotonic() - killed_at:.0f}s later; val_acc steps {epoch_steps(c, run.info.run_id)}; {len(left)} checkpoints kept"
    )


@pytest.mark.cluster
def test_lane_worker_killed_mid_trial_resumes_same_run(tmp_path: Path, store: dict[str, str]) -> None:
    """SIGKILL rank 0 of a warm DDP lane once its trial has relayed a checkpoint to Tune: Ray Train restarts
    the lane's worker group (FailureConfig), the lane takes the same trial again from that checkpoint, and
    the trial finishes in the same child run (epochs 1..4 once each, the restart recorded)."""
    log, epochs = tmp_path / "search.log", 4
    args = overrides(
        store,
        "+experiment=smoke",
        "scaling.num_workers=2",
        f"train.epochs={epochs}",
        "data.num_train=4000",
        "data.image_size=32",  # smoke is 16 px: the kill was sized to land mid-epoch at 32 px
        "tune.num_samples=1",
        "scheduler=fifo",
        "train.max_failures=1",
        "ray.num_cpus=2",
        "evaluate.enabled=false",
    )
    proc = start_cli("raymlops.tune", args, log)
    try:
        results = tmp_path / "ray_results"
        wait_until(
            lambda: _checkpoint_dirs(results, "*/run_trial_*/checkpoint_*"),
            300,
            what="the trial's first checkpoint",
            interval_s=0.2,
            proc=proc,
            log=log,
        )
        workers = wait_until(
            lambda: (w := _train_workers(proc.pid)) and len(w) == 2 and w, 30, what="the lane's 2 workers", proc=proc, log=log
        )
        rank0 = [pid for pid in workers if _holds_file(pid, tmp_path / "mlflow.db")]
        victim = rank0[0] if rank0 else min(workers)
        os.kill(victim, signal.SIGKILL)
        text = finish(proc, log, timeout_s=300)
    finally:
        if proc.poll() is None:
            kill_tree(proc)
    c = tracking.client(store["mlflow.tracking_uri"])
    runs = list(_trial_runs(c, "raymlops-smoke").values())
    assert len(runs) == 1, "the restarted lane continued the trial's child run"
    run = runs[0]
    assert run.info.status == "FINISHED"  # type: ignore[attr-defined]
    for key in ("val_acc", "train_loss", "lr"):
        assert epoch_steps(c, run.info.run_id, key) == list(range(1, epochs + 1)), f"{key}: no duplicated or missing epoch"  # type: ignore[attr-defined]
    assert run.data.tags[TAG_RESTARTS] == "1"  # type: ignore[attr-defined]
    assert "resumed from epoch" in text
    lanes = [p for p in next(results.glob("smoke-*")).joinpath("lanes").iterdir() if p.name.startswith("lane")]
    assert len(lanes) == 1, f"one lane, restarted in place: {lanes}"
    print(
        f"fault: SIGKILL lane worker pid {victim} ({'rank 0' if rank0 else 'a worker'}); the trial finished on the restarted lane"
    )


def _trial_runs(c: object, experiment: str) -> dict[str, object]:
    """Trial child runs by run key, once the experiment exists."""
    exp = c.get_experiment_by_name(experiment)  # type: ignore[attr-defined]
    if exp is None:
        return {}
    runs = c.search_runs([exp.experiment_id], filter_string="tags.`raymlops.role` = 'trial'")  # type: ignore[attr-defined]
    return {r.data.tags["raymlops.run_key"]: r for r in runs}


def _newest_on_disk(trial_dir: Path) -> int:
    epochs = [
        json.loads((p / "manifest.json").read_text())["epoch"]
        for p in trial_dir.glob("checkpoint_*")
        if (p / "manifest.json").is_file()
    ]
    return max(epochs, default=0)


@pytest.mark.cluster
def test_search_driver_killed_then_resumed(tmp_path: Path, store: dict[str, str]) -> None:
    """SIGKILL the whole `raymlops.tune` process group (driver, lanes, their workers) once a 2-worker DDP
    trial has finished and another is mid-way; `tune.resume=true` starts new lanes and finishes the search
    without rerunning finished trials, the mid-way one from its newest checkpoint in the same child run."""
    samples, epochs = 2, 4
    args = overrides(
        store,
        "+experiment=smoke",
        f"tune.num_samples={samples}",
        f"train.epochs={epochs}",
        "data.num_train=3000",  # 16-px epochs of a few seconds each: long enough to be caught mid-way
        "ray.num_cpus=2",
        "evaluate.enabled=false",
        "scaling.num_workers=2",  # DDP trials on warm lanes: the flagship path, killed and resumed
        "scaling.cpus_per_worker=0.5",
        # One lane, FIFO: the second trial is mid-way for seconds after the first finished all its epochs (under
        # ASHA it was stopped at epoch 1 and the poll could miss the moment)
        "tune.max_concurrent_trials=1",
        "scheduler=fifo",
    )
    log1, log2 = tmp_path / "search.log", tmp_path / "resume.log"
    c = tracking.client(store["mlflow.tracking_uri"])

    def ready() -> dict[str, object] | None:
        runs = _trial_runs(c, "raymlops-smoke") if (tmp_path / "mlflow.db").exists() else {}
        done = [r for r in runs.values() if r.info.status == "FINISHED"]  # type: ignore[attr-defined]
        mid = [r for r in runs.values() if r.info.status == "RUNNING" and 0 < len(epoch_steps(c, r.info.run_id)) < epochs]  # type: ignore[attr-defined]
        return runs if done and mid else None

    proc = start_cli("raymlops.tune", args, log1)
    try:
        wait_until(ready, 300, what="a finished trial and one mid-way", proc=proc, log=log1)
        tree = descendants(proc.pid)
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and everything in its process group
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            kill_tree(proc)
    try:
        wait_until(
            lambda: not alive(tree),
            30,
            what="the killed search's Ray processes to exit with their driver",
            context=lambda: f"Ray processes outlived their driver: {alive(tree)}",
        )
    finally:
        for pid in alive(tree):  # only processes of the killed search's own Ray cluster
            os.kill(pid, signal.SIGKILL)
    before = {
        key: (
            r.info.run_id,
            r.info.status,
            r.info.start_time,
            [(m.step, m.timestamp) for m in c.get_metric_history(r.info.run_id, "val_acc")],
        )
        for key, r in _trial_runs(c, "raymlops-smoke").items()
    }  # type: ignore[attr-defined]
    search_dir = next((tmp_path / "ray_results").glob("smoke-*"))
    on_disk = {"_".join(d.name.split("_")[2:4]): _newest_on_disk(d) for d in search_dir.glob("run_trial_*")}

    text = finish(start_cli("raymlops.tune", [*args, "tune.resume=true"], log2), log2, timeout_s=400)
    assert f"Resuming search {search_dir.name}" in text
    exp = c.get_experiment_by_name("raymlops-smoke")
    parents = c.search_runs([exp.experiment_id], filter_string="tags.`raymlops.role` = 'search'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED", "the resumed search reuses its parent run"
    kids = {r.data.tags["raymlops.run_key"]: r for r in children(c, exp.experiment_id, parents[0].info.run_id)}
    assert len(kids) == samples, "total trials == tune.num_samples, one child run each"
    state = json.loads(max(search_dir.glob("experiment_state-*.json")).read_text())
    assert len(state["trial_data"]) == samples
    resumed = []
    for key, run in kids.items():
        steps = epoch_steps(c, run.info.run_id)
        assert steps == list(range(1, len(steps) + 1)) and steps, f"{key}: every epoch once, none missing: {steps}"
        assert run.info.status == "FINISHED"
        if key not in before:
            continue
        run_id, status, start, points = before[key]
        assert run.info.run_id == run_id and run.info.start_time == start, "the same child run continues"
        if status == "FINISHED":  # ended before the crash: not run again, not a single new point
            assert [(m.step, m.timestamp) for m in c.get_metric_history(run_id, "val_acc")] == points, f"{key} was rerun"
        elif points:  # mid-way at the crash: resumes from its newest checkpoint, loses at most the epoch in progress
            restored = [int(m.step) for m in c.get_metric_history(run_id, "restarts")]
            assert run.data.tags.get(TAG_RESTARTS) == "1" and len(restored) == 1, key
            assert restored[0] >= len(points) - 1, (
                f"{key}: logged {len(points)} epochs before the crash, resumed from {restored[0]}"
            )
            resumed.append((key, len(points), restored[0], on_disk.get(key.split("/")[-1])))
    assert resumed, "a trial was mid-way at the crash"
    kept = {d.name: len(_checkpoint_dirs(d, "checkpoint_*")) for d in search_dir.glob("run_trial_*")}
    assert max(kept.values()) <= 2, f"checkpoint.num_to_keep=2 per trial: {kept}"
    print(
        f"fault: SIGKILL search driver process group ({len(tree)} processes, all gone); resumed trials "
        f"(key, epochs logged at crash, resumed from, newest on disk): {resumed}"
    )


# ------------------------------------------------------------------ corrupt checkpoints (real models, no Ray)


def _checkpoints(tmp_path: Path, epochs: int) -> tuple[Config, Path, list[dict[str, object]]]:
    """A real model trained a step per epoch, checkpointed after each into folder/checkpoint_00000N."""
    import torch

    config = compose(["+experiment=smoke", f"checkpoint.dir={tmp_path / 'staging'}"])
    torch.manual_seed(0)
    model = build_model(config.model, 3, 10)
    optimizer, scheduler = optim.build_optimizer(config.optim, config.train, model, steps_per_epoch=1)
    folder, weights = tmp_path / "trial", []
    folder.mkdir()
    for epoch in range(1, epochs + 1):
        loss = model(torch.randn(4, 3, 32, 32)).logsumexp(1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        staged = checkpoints.save_checkpoint(
            config, model, optimizer, scheduler, epoch, [{"epoch": e} for e in range(1, epoch + 1)], "run1", 0
        )
        shutil.move(staged, folder / f"checkpoint_{epoch - 1:06d}")
        weights.append({k: v.clone() for k, v in model.state_dict().items()})
    return config, folder, weights


def _restore(config: Config, candidates: list[str]) -> tuple[dict[str, object], object]:
    model = build_model(config.model, 3, 10)
    optimizer, scheduler = optim.build_optimizer(config.optim, config.train, model, steps_per_epoch=1)
    return checkpoints.restore(candidates, model, optimizer, scheduler), model


def _same(model: object, weights: dict[str, object]) -> bool:
    import torch

    return all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())  # type: ignore[attr-defined]


def test_corrupt_latest_checkpoint_falls_back_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config, folder, weights = _checkpoints(tmp_path, epochs=3)
    latest = str(folder / "checkpoint_000002")
    candidates = checkpoints.checkpoint_candidates(latest)
    assert candidates == [str(folder / f"checkpoint_{i:06d}") for i in (2, 1, 0)]
    state, model = _restore(config, candidates)
    assert state["epoch"] == 3 and _same(model, weights[2])

    blob = bytearray((folder / "checkpoint_000002" / "state.pt").read_bytes())  # garble a byte in the middle
    blob[len(blob) // 2] ^= 0xFF
    (folder / "checkpoint_000002" / "state.pt").write_bytes(bytes(blob))
    with caplog.at_level(logging.WARNING, logger="raymlops.training"):
        state, model = _restore(config, checkpoints.checkpoint_candidates(latest))
    assert state["epoch"] == 2 and _same(model, weights[1]), "the previous checkpoint is used"
    assert "checksum mismatch" in caplog.text and "restored from older checkpoint" in caplog.text

    with open(folder / "checkpoint_000001" / "state.pt", "r+b") as fh:  # truncated (a half-written upload)
        fh.truncate(100)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="raymlops.training"):
        state, model = _restore(config, checkpoints.checkpoint_candidates(latest))
    assert state["epoch"] == 1 and _same(model, weights[0]) and caplog.text.count("unreadable") == 2

    (folder / "checkpoint_000000" / "manifest.json").unlink()  # no manifest: cannot be trusted either
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="raymlops.training"):
        state, _ = _restore(config, checkpoints.checkpoint_candidates(latest))
    assert state == {} and "no readable checkpoint among 3; starting from scratch" in caplog.text


def test_newer_checkpoint_than_the_launcher_knows_is_found(tmp_path: Path) -> None:
    """After a driver crash Tune may hand back an older checkpoint (or none) than the trial wrote last."""
    config, folder, weights = _checkpoints(tmp_path, epochs=3)
    for stale in (str(folder / "checkpoint_000000"), None):
        candidates = checkpoints.checkpoint_candidates(stale, str(folder))
        assert candidates[0] == str(folder / "checkpoint_000002")
        state, model = _restore(config, candidates)
        assert state["epoch"] == 3 and _same(model, weights[2])
    assert checkpoints.checkpoint_candidates(None, str(tmp_path / "missing")) == []


def test_a_trial_created_again_on_resume_finds_its_earlier_folder(tmp_path: Path) -> None:
    """A trial Tune's experiment state never recorded (created after its last snapshot, the driver then killed)
    is created again on resume, in a new folder; its checkpoints are found in the earlier folder of the same
    trial id, not in another trial's."""
    config, folder, weights = _checkpoints(tmp_path, epochs=2)  # the earlier run wrote epochs 1 and 2
    search = tmp_path / "smoke-1"
    earlier = search / "run_trial_f1d3e_00002_2_optim_lr=0.0330_2026-12-02_15-07-41"
    search.mkdir()
    shutil.move(folder, earlier)
    again = search / "run_trial_f1d3e_00002_2_optim_lr=0.0330_2026-12-02_15-09-11"
    other = search / "run_trial_f1d3e_00012_12_optim_lr=0.1000_2026-12-02_15-07-41"
    other.mkdir()  # `again` does not exist yet: Tune creates a trial's folder at its first report
    shutil.copytree(earlier / "checkpoint_000001", other / "checkpoint_000005")
    (other / "checkpoint_000005" / "manifest.json").write_text(json.dumps({"epoch": 6}))
    found = checkpoints.earlier_trial_folders(str(again), "f1d3e_00002")
    assert found == [str(earlier)], found
    candidates = checkpoints.checkpoint_candidates(None, str(again), found)
    assert candidates == [str(earlier / "checkpoint_000001"), str(earlier / "checkpoint_000000")]
    state, model = _restore(config, candidates)
    assert state["epoch"] == 2 and _same(model, weights[1])
    assert checkpoints.earlier_trial_folders(str(other), "f1d3e_00012") == []


@pytest.mark.slow
@pytest.mark.cluster
def test_ddp_trials_keep_num_to_keep_checkpoints(tmp_path: Path, store: dict[str, str]) -> None:
    """2-worker DDP trials (a TorchTrainer per trial, scaling.warm_workers=false): each trial's Ray Train run under train_runs/ and
    its Tune trial folder keep at most checkpoint.num_to_keep checkpoints; epochs logged once."""
    log = tmp_path / "search.log"
    args = overrides(
        store,
        "+experiment=smoke",
        "scheduler=fifo",
        "tune.num_samples=2",
        "train.epochs=3",  # one checkpoint more than num_to_keep
        "scaling.num_workers=2",
        "scaling.cpus_per_worker=0.5",
        "scaling.warm_workers=false",  # the TorchTrainer-per-trial path keeps its own Ray Train runs
        "checkpoint.num_to_keep=2",
        "ray.num_cpus=2",
        "evaluate.enabled=false",
    )
    finish(start_cli("raymlops.tune", args, log), log, timeout_s=600)
    search_dir = next((tmp_path / "ray_results").glob("smoke-*"))
    train_runs = {d.name: len(_checkpoint_dirs(d, "checkpoint_*")) for d in (search_dir / "train_runs").iterdir() if d.is_dir()}
    trials = {d.name: len(_checkpoint_dirs(d, "checkpoint_*")) for d in search_dir.glob("run_trial_*")}
    assert len(train_runs) == 2 and set(train_runs.values()) == {2}, f"train_runs: {train_runs}"
    assert max(trials.values()) <= 2, f"Tune trial folders: {trials}"
    c = tracking.client(store["mlflow.tracking_uri"])
    for run in _trial_runs(c, "raymlops-smoke").values():
        assert epoch_steps(c, run.info.run_id) == [1, 2, 3]  # type: ignore[attr-defined]
    print(f"checkpoints kept: train_runs {train_runs}, Tune trial folders {trials}")
