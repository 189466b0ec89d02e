"""Promotion-based ASHA: Li et al. 2020 ("A System for Massively Parallel Hyperparameter Tuning").

Ray Tune's ASHAScheduler stops a trial that reaches a rung below the rung's 1 - 1/rf percentile of
the results recorded *so far*; the first trials to reach a rung meet few rivals and go on, so more
epochs are spent than successive halving needs. Here a trial reaching a rung continues only if it is
in the top floor(n / rf) of the n trials recorded at that rung; otherwise Tune pauses it (checkpoint
kept, resources freed) and it is resumed from that checkpoint if later arrivals push it into the top.
Trials still paused once nothing can run or arrive are stopped (early), as ASHA's losers.

This pays a save and a restore per resumed trial, which is cheap for trials that train inside their
Tune actor (1 worker) and dear for DDP trials (a new worker group each time): `scheduler.mode=auto`
uses it only for the former.
"""

from __future__ import annotations

from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from raymlops import ray_internals


class PromotionASHA(FIFOScheduler):
    """Asynchronous successive halving with promotions (pause/resume) instead of stops."""

    def __init__(
        self,
        max_t: int,
        grace_period: int = 1,
        reduction_factor: float = 3,
        time_attr: str = "training_iteration",
        metric: str | None = None,
        mode: str | None = None,
    ) -> None:
        super().__init__()
        if grace_period < 1 or max_t < grace_period or reduction_factor <= 1:
            raise ValueError(
                f"need 1 <= grace_period <= max_t and reduction_factor > 1, got {grace_period}, {max_t}, {reduction_factor}"
            )
        self._rf = reduction_factor
        self._time_attr = time_attr
        self._metric, self._mode = metric, mode
        self.rungs: list[int] = []
        milestone = float(grace_period)
        while round(milestone) < max_t:
            if not self.rungs or round(milestone) > self.rungs[-1]:
                self.rungs.append(round(milestone))
            milestone *= reduction_factor
        self.recorded: dict[int, dict[str, float]] = {r: {} for r in self.rungs}  # rung -> trial_id -> score
        self.waiting: dict[str, int] = {}  # paused trial_id -> the rung it waits at
        self._parked: set[str] = set()  # paused trials taken out of the searcher's live count
        self.num_paused = self.num_promoted = self.num_stopped = 0

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        if (self._metric and metric) or (self._mode and mode):
            return False
        self._metric = metric or self._metric
        self._mode = mode or self._mode
        return True

    def _score(self, result: dict[str, Any]) -> float | None:
        value = result.get(self._metric) if self._metric else None
        if value is None:
            return None
        return float(value) if self._mode != "min" else -float(value)

    def top(self, rung: int) -> list[str]:
        """The trials at this rung that have earned a promotion: the best floor(n / rf) of n recorded."""
        scores = self.recorded[rung]
        return sorted(scores, key=lambda tid: -scores[tid])[: int(len(scores) // self._rf)]

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> str:
        rung, score = result.get(self._time_attr), self._score(result)
        if rung not in self.recorded or score is None:
            return TrialScheduler.CONTINUE
        self.recorded[rung][trial.trial_id] = score
        if trial.trial_id in self.top(rung):
            return TrialScheduler.CONTINUE
        if self._nothing_else_can_run(tune_controller, trial):
            self.num_stopped += 1
            return TrialScheduler.STOP
        self.waiting[trial.trial_id] = rung
        self.num_paused += 1
        self._park(tune_controller, trial.trial_id)
        return TrialScheduler.PAUSE

    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        trials = tune_controller.get_trials()
        paused = {t.trial_id: t for t in trials if t.status == Trial.PAUSED}
        for rung in reversed(self.rungs):  # the furthest rung first, as in Li et al.'s get_job
            for tid in self.top(rung):
                if self.waiting.get(tid) == rung and tid in paused:
                    del self.waiting[tid]
                    self.num_promoted += 1
                    self._unpark(tune_controller, tid)
                    return paused[tid]
        for tid, trial in paused.items():
            if tid not in self.waiting:  # paused under an earlier driver (a resumed search): judged again at its next rung
                return trial
        for trial in trials:
            if trial.status == Trial.PENDING:
                return trial
        if paused and self._nothing_else_can_run(tune_controller, None):
            for tid, trial in paused.items():  # nothing can arrive at their rungs any more: they lost
                self.waiting.pop(tid, None)
                self._unpark(tune_controller, tid)
                self.num_stopped += 1
                tune_controller.stop_trial(trial)
        return None

    def _nothing_else_can_run(self, tune_controller: Any, current: Trial | None) -> bool:
        """No trial but `current` is running or pending and the searcher has nothing more to suggest,
        so no later arrival at any rung can promote a paused trial."""
        busy = [t for t in tune_controller.get_trials() if t.status in (Trial.PENDING, Trial.RUNNING) and t is not current]
        return not busy and bool(tune_controller.search_alg.is_finished())

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> None:
        self.waiting.pop(trial.trial_id, None)

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        self.waiting.pop(trial.trial_id, None)

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        self.waiting.pop(trial.trial_id, None)

    # A paused trial holds no resources, but Tune's search algorithms count it as live against
    # max_concurrent_trials; without this, `max_concurrent_trials` paused trials would stop the search
    # from suggesting the new trials that are needed to promote them.
    def _live_set(self, tune_controller: Any) -> set[str] | None:
        return ray_internals.searcher_live_trials(tune_controller.search_alg)

    def _park(self, tune_controller: Any, trial_id: str) -> None:
        live = self._live_set(tune_controller)
        if live is not None and trial_id in live:
            live.discard(trial_id)
            self._parked.add(trial_id)

    def _unpark(self, tune_controller: Any, trial_id: str) -> None:
        live = self._live_set(tune_controller)
        if trial_id in self._parked and live is not None:
            live.add(trial_id)  # so its completion reaches the searcher (e.g. Optuna's tell)
        self._parked.discard(trial_id)

    def debug_string(self) -> str:
        sizes = ", ".join(f"{r}: {len(self.recorded[r])}" for r in self.rungs)
        return (
            f"Using promotion-based ASHA: rungs {{{sizes}}}, {len(self.waiting)} paused, "
            f"{self.num_promoted} promoted, {self.num_stopped} stopped"
        )
