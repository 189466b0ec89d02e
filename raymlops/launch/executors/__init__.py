"""Trial executors: how a search's Tune trials train, behind one interface (base.TrialExecutor).

- in_actor: a 1-worker trial trains inside its own Tune actor (no controller, worker group or placement group);
- warm_lane: a DDP trial is a thin driver relaying a warm lane (a long-lived TorchTrainer, lane_broker);
- own_trainer: a DDP trial's driver fits its own TorchTrainer (scaling.warm_workers=false).

search.tuner picks one per search (`choice.choose_executor`) and gives Tune `trainable.run_trial`; nothing else
knows which kind runs. This file imports nothing: a lane broker or a trial's thin driver imports only the
modules it runs (no torch, no Ray Tune in the broker).
"""
