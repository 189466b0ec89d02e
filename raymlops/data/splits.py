"""Train/validation/test splits as in-memory uint8 tensors, with the per-channel statistics of the training split."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from raymlops.config.schema import DataConfig
from raymlops.config.tree import from_dict, to_dict
from raymlops.core.errors import UserError
from raymlops.data.sources import image_folder, synthetic, torchvision_set


@dataclass
class Splits:
    train_x: torch.Tensor  # uint8 [N, C, H, W]
    train_y: torch.Tensor  # int64 [N]
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    mean: list[float]  # per channel, in 0..1 units, from the training split
    std: list[float]

    @property
    def channels(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def load_splits(data: DataConfig, seed: int) -> Splits:
    """Train/val/test for data.name; val is a seeded split of the training set.

    Kept in memory per process for the last data config asked for: the search driver decodes the
    data once in preflight and evaluates the best trial on the same tensors afterwards.
    """
    return _load_splits(json.dumps(to_dict(data), sort_keys=True), seed)


@functools.lru_cache(maxsize=1)
def _load_splits(data_json: str, seed: int) -> Splits:
    data = from_dict(DataConfig, json.loads(data_json))
    name = data.name
    if name == "synthetic":
        if data.num_classes is None:
            raise UserError("data=synthetic needs data.num_classes (e.g. data.num_classes=10).")
        (tx, ty), (sx, sy), classes = synthetic(data.num_train, data.num_test, data.num_classes, data.image_size)
    elif name == "imagefolder":
        (tx, ty), (sx, sy), classes = image_folder(Path(str(data.root)), data.image_size, data.cache_dir)
    else:
        (tx, ty), (sx, sy), classes = torchvision_set(name, Path(str(data.root)), bool(data.download))
    return split(tx, ty, sx, sy, classes, data.val_fraction, seed, data.subset)


def split(
    tx: torch.Tensor,
    ty: torch.Tensor,
    sx: torch.Tensor,
    sy: torch.Tensor,
    classes: list[str],
    val_fraction: float,
    seed: int,
    subset: int | None = None,
) -> Splits:
    order = torch.randperm(len(ty), generator=torch.Generator().manual_seed(seed))
    if subset:
        order = order[: int(subset)]
    n_val = round(len(order) * val_fraction)
    val_idx, train_idx = order[:n_val], order[n_val:]
    train_x = tx[train_idx]
    sample = train_x[: min(len(train_x), 10000)].float() / 255
    mean = sample.mean(dim=(0, 2, 3)).tolist()
    std = sample.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()
    return Splits(train_x, ty[train_idx], tx[val_idx], ty[val_idx], sx, sy, classes, mean, std)
