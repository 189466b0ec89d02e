"""The launch layer: joining Ray, checks before it, one training job (a TorchTrainer), and how a search's
Tune trials train (executors: in the trial's Tune actor, on a warm DDP lane, or by its own TorchTrainer).
"""
