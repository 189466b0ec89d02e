"""The launch layer: joining Ray, checks before it, one training job (a TorchTrainer) and one Tune trial.

A Tune trial with one worker trains inside its own Tune actor (no controller, worker group or
placement group per trial); a trial with several workers builds a TorchTrainer (DDP) and
forwards its reports to Tune.
"""
