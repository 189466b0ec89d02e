"""The search layer: the search space, schedulers and searchers, the Tuner, and the callbacks that keep each
trial's MLflow child run right. `tuner.run_search` is the way in."""
