"""Data loaders: synthetic, an image-folder tree written here, splits, augmentation, bad trees."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from raymlops import data
from raymlops.config.schema import DataConfig, DatasetName
from raymlops.core.errors import UserError


def _tree(root: Path, classes: dict[str, list[str]] | None = None, n: int = 6, size: int = 32) -> Path:
    classes = classes or {"train": ["cat", "dog"], "test": ["cat", "dog"]}
    for part, names in classes.items():
        for ci, cls in enumerate(names):
            d = root / part / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                colour = (200 * ci, 40 * i % 255, 90)
                Image.new("RGB", (size, size), colour).save(d / f"{i:03d}.png")
    return root


def test_synthetic_is_seeded_and_shaped() -> None:
    a = data.load_splits(
        DataConfig(name=DatasetName.synthetic, num_train=500, num_test=100, num_classes=10, image_size=32, val_fraction=0.2),
        seed=0,
    )
    b = data.load_splits(
        DataConfig(name=DatasetName.synthetic, num_train=500, num_test=100, num_classes=10, image_size=32, val_fraction=0.2),
        seed=0,
    )
    assert a.train_x.dtype == torch.uint8 and a.train_x.shape[1:] == (3, 32, 32)
    assert len(a.train_y) == 400 and len(a.val_y) == 100 and len(a.test_y) == 100
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    assert a.num_classes == 10 and len(set(a.train_y.tolist())) == 10
    c = data.load_splits(
        DataConfig(name=DatasetName.synthetic, num_train=500, num_test=100, num_classes=10, image_size=32, val_fraction=0.2),
        seed=1,
    )
    assert not torch.equal(a.val_y, c.val_y), "train.seed picks the validation split"


def test_image_folder_decodes_once_and_caches(tmp_path: Path) -> None:
    root = _tree(tmp_path / "imgs")
    cfg = DataConfig(
        name=DatasetName.imagefolder, root=str(root), image_size=32, cache_dir=str(tmp_path / "cache"), val_fraction=0.25
    )
    s = data.load_splits(cfg, seed=0)
    assert s.classes == ["cat", "dog"]
    assert s.train_x.shape == (9, 3, 32, 32) and s.val_x.shape[0] == 3 and s.test_x.shape[0] == 12
    assert list((tmp_path / "cache").glob("imagefolder-*.pt"))
    again = data.load_splits(cfg, seed=0)
    assert torch.equal(again.train_x, s.train_x)


def test_image_folder_resizes_and_skips_corrupt_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = _tree(tmp_path / "imgs", size=40)
    (root / "train" / "cat" / "broken.jpg").write_bytes(b"not an image")
    s = data.load_splits(
        DataConfig(name=DatasetName.imagefolder, root=str(root), image_size=32, cache_dir=None, val_fraction=0.0), seed=0
    )
    assert s.train_x.shape == (12, 3, 32, 32)
    assert "skipped 1 unreadable image" in caplog.text and "broken.jpg" in caplog.text


@pytest.mark.parametrize(
    ("layout", "needle"),
    [
        ({"train": [], "test": []}, "no class folders"),
        ({"train": ["cat", "dog"], "test": ["cat", "cow"]}, "only in train: ['dog'], only in test: ['cow']"),
        ({"train": ["cat"]}, "no test/ folder"),
    ],
)
def test_bad_image_folders(tmp_path: Path, layout: dict[str, list[str]], needle: str) -> None:
    root = tmp_path / "imgs"
    for part in layout:
        (root / part).mkdir(parents=True)
    _tree(root, layout)
    with pytest.raises(UserError, match=None) as err:
        data.load_splits(
            DataConfig(name=DatasetName.imagefolder, root=str(root), image_size=32, cache_dir=None, val_fraction=0.1), seed=0
        )
    assert needle in str(err.value)


def test_missing_root_and_offline_torchvision(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        data.load_splits(
            DataConfig(
                name=DatasetName.imagefolder, root=str(tmp_path / "nope"), image_size=32, cache_dir=None, val_fraction=0.1
            ),
            seed=0,
        )
    with pytest.raises(UserError) as err:
        data.load_splits(DataConfig(name=DatasetName.cifar10, root=str(tmp_path / "c10"), download=False), seed=0)
    assert str(tmp_path / "c10") in str(err.value) and "data.name=imagefolder" in str(err.value)


def test_augment_keeps_shape_and_changes_pixels() -> None:
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).view(2, 3, 32, 32) % 255
    out = data.augment(x.to(torch.uint8), torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.uint8
    assert not torch.equal(out, x.to(torch.uint8))
