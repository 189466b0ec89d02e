"""Trial executors: how a search's Tune trials train, behind one interface (base.TrialExecutor).

- in_actor: a 1-worker trial trains inside its own Tune actor (no controller, worker group or placement group);
- warm_lane: a DDP trial is a thin driver relaying a warm lane (a long-lived TorchTrainer, lane_broker);
- own_trainer: a DDP trial's driver fits its own TorchTrainer (scaling.warm_workers=false).

search.tuner picks one per search (`choose_executor`) and gives Tune `run_trial` (trainable); nothing else
knows which kind runs.
"""

from raymlops.launch.executors.base import TrialExecutor, search_storage
from raymlops.launch.executors.choice import choose_executor, executor_class
from raymlops.launch.executors.trainable import run_trial

__all__ = ["TrialExecutor", "choose_executor", "executor_class", "run_trial", "search_storage"]
