"""The serving layer: a registered model behind Ray Serve (champion/challenger split, hot reload, per-version
stats in MLflow) and batch inference over an image folder with Ray Data.

A sibling of raymlops.search: both sit on post, launch and below; neither imports the other.
"""
