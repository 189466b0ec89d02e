"""raymlops: Ray-native distributed hyperparameter tuning and DDP training."""

__version__ = "0.1.0"
