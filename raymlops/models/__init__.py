"""The models layer: torchvision classifiers adapted to small images, built by name, never with pretrained weights."""

from raymlops.models.small_images import build_model, count_params

__all__ = ["build_model", "count_params"]
