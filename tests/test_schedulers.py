"""PromotionASHA's decisions, driven the way Tune's controller drives a scheduler (no cluster needed).

The end-to-end pause/resume of real trials (one MLflow run per trial, every epoch once) is covered by
the `asha` searches in test_search_e2e.py, whose 1-worker trials use this scheduler.
"""

from __future__ import annotations

from typing import Any

import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from raymlops.config import compose
from raymlops.core.errors import UserError
from raymlops.search.promotion_asha import PromotionASHA
from raymlops.search.schedulers import asha_mode, build_scheduler


class _Trial:
    def __init__(self, trial_id: str, quality: float) -> None:
        self.trial_id, self.quality, self.status, self.epoch = trial_id, quality, Trial.PENDING, 0


class _Searcher:
    """Hands out trials while fewer than max_concurrent are live, like BasicVariantGenerator."""

    def __init__(self, qualities: list[float], max_concurrent: int) -> None:
        self.todo = [_Trial(str(i), q) for i, q in enumerate(qualities)]
        self.max_concurrent, self._live_trials = max_concurrent, set()

    def next_trial(self) -> _Trial | None:
        if self.todo and len(self._live_trials) < self.max_concurrent:
            trial = self.todo.pop(0)
            self._live_trials.add(trial.trial_id)
            return trial
        return None

    def is_finished(self) -> bool:
        return not self.todo

    def on_trial_complete(self, trial_id: str) -> None:
        self._live_trials.discard(trial_id)


class _Controller:
    """The parts of Tune's controller a scheduler sees."""

    def __init__(self, searcher: _Searcher) -> None:
        self.search_alg, self.trials = searcher, []  # type: list[_Trial]

    def get_trials(self) -> list[_Trial]:
        return self.trials

    def stop_trial(self, trial: _Trial) -> None:
        trial.status = Trial.TERMINATED
        self.search_alg.on_trial_complete(trial.trial_id)


def _search(qualities: list[float], max_t: int, slots: int = 2) -> tuple[_Controller, PromotionASHA, int]:
    """Run a whole search: each step every running trial trains one epoch and reports quality * epoch."""
    sched = PromotionASHA(max_t=max_t, grace_period=1, reduction_factor=3, metric="val_acc", mode="max")
    ctl = _Controller(_Searcher(qualities, max_concurrent=slots))
    epochs = 0
    for _ in range(10_000):
        while (trial := ctl.search_alg.next_trial()) is not None:
            ctl.trials.append(trial)
        while sum(t.status == Trial.RUNNING for t in ctl.trials) < slots:
            chosen = sched.choose_trial_to_run(ctl)
            if chosen is None:
                break
            chosen.status = Trial.RUNNING
        running = [t for t in ctl.trials if t.status == Trial.RUNNING]
        idle = not running and ctl.search_alg.is_finished() and sched.choose_trial_to_run(ctl) is None
        if idle and all(t.status == Trial.TERMINATED for t in ctl.trials):
            return ctl, sched, epochs
        assert running or any(t.status == Trial.PENDING for t in ctl.trials), "search stalled with trials paused"
        for trial in running:
            trial.epoch += 1
            epochs += 1
            decision = sched.on_trial_result(
                ctl, trial, {"training_iteration": trial.epoch, "val_acc": trial.quality * trial.epoch / max_t}
            )
            if decision == TrialScheduler.PAUSE:
                trial.status = Trial.PAUSED
            elif decision == TrialScheduler.STOP or trial.epoch == max_t:
                ctl.stop_trial(trial)
    raise AssertionError("search did not end")


def test_rungs_follow_grace_and_reduction_factor() -> None:
    assert PromotionASHA(max_t=9, grace_period=1, reduction_factor=3).rungs == [1, 3]
    assert PromotionASHA(max_t=27, grace_period=1, reduction_factor=3).rungs == [1, 3, 9]
    assert PromotionASHA(max_t=8, grace_period=2, reduction_factor=2).rungs == [2, 4]
    assert PromotionASHA(max_t=1, grace_period=1, reduction_factor=3).rungs == []
    with pytest.raises(ValueError, match="grace_period"):
        PromotionASHA(max_t=4, grace_period=0)


def test_successive_halving_budget_and_the_best_trial_survives() -> None:
    qualities = [((i * 7919) % 32) / 32 for i in range(32)]  # a permutation: trial 9 is the best
    ctl, sched, epochs = _search(qualities, max_t=9)
    assert all(t.status == Trial.TERMINATED for t in ctl.trials)
    full = [t for t in ctl.trials if t.epoch == 9]
    # 32 at rung 1 -> 10 promoted to rung 3 -> 3 promoted to 9 epochs: 32 + 10*2 + 3*6 = 70 epochs
    assert len(sched.recorded[1]) == 32 and len(sched.recorded[3]) == 10 and len(full) == 3
    assert epochs == 70
    assert max(ctl.trials, key=lambda t: t.quality) in full
    assert not ctl.search_alg._live_trials, "paused trials were handed back to the searcher's live count"


def test_paused_trials_do_not_block_the_searcher_and_late_arrivals_promote() -> None:
    """The two best trials come first and must wait (fewer than 3 rivals at rung 1), 2 live at most:
    the searcher still suggests the rest, and their arrivals promote the waiting trials."""
    qualities = [0.5, 0.9] + [0.1 - i / 100 for i in range(10)]
    ctl, sched, epochs = _search(qualities, max_t=3)
    survivors = {t.trial_id for t in ctl.trials if t.epoch == 3}
    assert survivors == {"0", "1", "2", "3"}  # the best floor(12 / 3) = 4 at rung 1, each paused first
    # every trial paused at rung 1 but the last, stopped at once: no later arrival could promote it
    assert sched.num_promoted == 4 and sched.num_paused == 11 and sched.num_stopped == 8
    assert epochs == 12 + 4 * 2


def test_trials_paused_before_a_driver_restart_are_resumed_not_dropped() -> None:
    """After tune.resume=true, Tune hands back PAUSED trials this scheduler has no record of: they run on to
    their next rung and are judged there, instead of being stopped unseen at the end."""
    sched = PromotionASHA(max_t=9, metric="val_acc", mode="max")
    ctl = _Controller(_Searcher([], 2))
    restored, fresh = _Trial("0", 0.5), _Trial("1", 0.5)
    restored.status = Trial.PAUSED
    ctl.trials = [restored, fresh]
    assert sched.choose_trial_to_run(ctl) is restored


def test_min_mode_ranks_low_values_first() -> None:
    sched = PromotionASHA(max_t=3, metric="val_loss", mode="min")
    ctl = _Controller(_Searcher([], 3))
    trials = [_Trial(str(i), 0) for i in range(3)]
    ctl.trials = trials
    for trial in trials:
        trial.status = Trial.RUNNING
    losses = (3, 2, 1)
    decisions = [sched.on_trial_result(ctl, t, {"training_iteration": 1, "val_loss": losses[i]}) for i, t in enumerate(trials)]
    # the first two wait (too few rivals yet); the third, with the lowest loss, is the top third of three
    assert decisions == [TrialScheduler.PAUSE, TrialScheduler.PAUSE, TrialScheduler.CONTINUE]


def _cfg(*overrides: str) -> dict[str, Any]:
    return compose(["+experiment=smoke", *overrides])  # validated: a bad value raises here


def test_mode_auto_promotes_in_process_trials_and_stops_ddp_trials() -> None:
    from ray.tune.schedulers import ASHAScheduler

    assert asha_mode(_cfg().scheduler, _cfg().scaling) == "promote" and isinstance(build_scheduler(_cfg()), PromotionASHA)
    ddp = _cfg("scaling.num_workers=2")
    assert asha_mode(ddp.scheduler, ddp.scaling) == "stop" and isinstance(build_scheduler(ddp), ASHAScheduler)
    assert isinstance(build_scheduler(_cfg("scheduler.mode=stop")), ASHAScheduler)
    assert isinstance(build_scheduler(_cfg("scaling.num_workers=2", "scheduler.mode=promote")), PromotionASHA)
    with pytest.raises(UserError, match=r"scheduler\.mode='halve'"):
        _cfg("scheduler.mode=halve")


# ------------------------------------------------------------------ moving off a draining node (1-worker trials)


class _Placed(_Trial):
    """A trial with the resources Tune would reserve for it (update_resources as Tune's Trial has it)."""

    def __init__(self, trial_id: str) -> None:
        from ray import tune

        super().__init__(trial_id, 0.5)
        self.placement_group_factory = tune.PlacementGroupFactory([{"CPU": 1.0}])

    def update_resources(self, resources: Any) -> None:
        assert self.status != Trial.RUNNING, "Tune refuses new resources for a running trial"
        self.placement_group_factory = resources


def test_a_trial_on_a_draining_node_is_paused_and_resumed_first_off_that_node(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Only 1-worker trials get the move (Ray Train moves DDP lanes); the scheduler's own decisions come first:
    a STOP stays a STOP, the last epoch is not moved, a node not draining changes nothing."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from raymlops import ray_internals
    from raymlops.search.drain_moves import MovesOffDrainingNodes

    draining = {"bad" * 18 + "00": 0}
    monkeypatch.setattr(ray_internals, "draining_nodes", lambda: dict(draining))
    assert not isinstance(build_scheduler(_cfg("scaling.num_workers=2")), MovesOffDrainingNodes)
    sched = build_scheduler(_cfg("scheduler=fifo", "train.epochs=3"))
    assert isinstance(sched, FIFOScheduler) and isinstance(sched, MovesOffDrainingNodes)
    ctl = _Controller(_Searcher([], max_concurrent=2))
    moved, other = _Placed("moved"), _Placed("other")
    ctl.trials = [other, moved]
    for t in ctl.trials:
        t.status = Trial.RUNNING
    on = {"node_id": "bad" * 18 + "00", "mlflow_run_id": "r1"}
    assert sched.on_trial_result(ctl, other, {"epoch": 1, "node_id": "a" * 56}) == TrialScheduler.CONTINUE
    assert sched.on_trial_result(ctl, other, {"epoch": 3, **on}) == TrialScheduler.CONTINUE, "its last epoch: done"
    with caplog.at_level("WARNING"):
        assert sched.on_trial_result(ctl, moved, {"epoch": 1, **on}) == TrialScheduler.PAUSE
    assert "node badbadbadbad is being preempted (gone soon): trial moved checkpointed at epoch 1 (MLflow run r1)" in caplog.text
    assert "resumes from epoch 2 on the nodes left" in caplog.text
    moved.status = Trial.PAUSED
    ctl.trials.append(_Placed("new"))  # a PENDING trial waits: the moved one has epochs to keep
    assert sched.choose_trial_to_run(ctl) is moved
    pgf = moved.placement_group_factory
    assert pgf.bundles == [{"CPU": 1.0}] and pgf != other.placement_group_factory, "no cached actor fits it"
    assert pgf._bound.kwargs["bundle_label_selector"] == [{"ray.io/node-id": f"!in({'bad' * 18}00)"}]
    sched.on_trial_complete(ctl, moved, {})
    assert sched.choose_trial_to_run(ctl) is ctl.trials[-1] and not sched.moving

    asha = build_scheduler(_cfg("scheduler=asha", "scheduler.mode=stop", "train.epochs=3"))
    monkeypatch.setattr(ASHAScheduler, "on_trial_result", lambda *_: TrialScheduler.STOP)
    assert asha.on_trial_result(ctl, other, {"epoch": 1, **on}) == TrialScheduler.STOP, "the scheduler's STOP stands"
