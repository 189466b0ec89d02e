"""The typed run contract: what a launcher hands the training loop besides the user's config.

`Launch` is decided once per command (launch.job.start): where MLflow is, which device, what one
worker holds, how many worker groups fit. A `RunContract` names the MLflow run one job or trial
logs to; it is built from a Launch and extended explicitly (`RunContract.trial`), never read with
`.get(key, default)`: a missing value is an error where it is built, not a silent default where
it is read. Both are frozen and hold only plain values, so they cross into Ray workers as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

Role = Literal["train", "search", "trial"]


@dataclass(frozen=True)
class Launch:
    """Facts about this command's cluster and tracker, decided once before any run starts."""

    tracking_uri: str
    experiment_id: str
    use_gpu: bool
    per_worker: dict[str, float]  # resources one worker reserves (CPU, GPU, an accelerator type)
    lineage: dict[str, str]  # tags saying where a run came from (git, versions, command)
    groups: int  # worker groups of scaling.num_workers that fit the cluster at once

    def run(self, role: Role, run_key: str, run_name: str, log_model: bool) -> RunContract:
        """The contract of a top-level run (a training job or a search) of this launch."""
        return RunContract(self, role, run_key, run_name, parent_run_id=None, log_model=log_model)


@dataclass(frozen=True)
class RunContract:
    """One MLflow run's identity: its role, its stable key across restarts, its parent, what it logs."""

    launch: Launch
    role: Role
    run_key: str  # stable identity across restarts: the job name, the search name, or search/trial id
    run_name: str
    parent_run_id: str | None  # the search's run, for a trial
    log_model: bool  # rank 0 logs the trained model at the end (jobs; a search logs its best trial's)

    def trial(self, trial_id: str, trial_name: str, parent_run_id: str) -> RunContract:
        """A trial of this search: a child run keyed search/trial_id, its model logged by the search."""
        return replace(
            self,
            role="trial",
            run_key=f"{self.run_key}/{trial_id}",
            run_name=trial_name,
            parent_run_id=parent_run_id,
            log_model=False,
        )
