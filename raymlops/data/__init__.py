"""The data layer: data sets as in-memory uint8 tensors [N, C, H, W]; normalisation and augmentation per batch.

Images are decoded once (image folders are cached on disk as tensors); nothing here knows Ray or MLflow.
"""

from raymlops.data.sources import image_folder, synthetic, torchvision_set
from raymlops.data.splits import Splits, load_splits, split
from raymlops.data.transforms import augment, normalise

__all__ = ["Splits", "augment", "image_folder", "load_splits", "normalise", "split", "synthetic", "torchvision_set"]
