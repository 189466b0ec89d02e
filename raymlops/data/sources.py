"""Where images come from: a seeded synthetic set, an image folder (decoded once, cached on disk), torchvision's sets."""

from __future__ import annotations

import hashlib
import logging
import math
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

from raymlops.core.errors import UserError

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
SYNTHETIC_SEED = 20240611  # the synthetic set is the same for every run; train.seed picks the split


def synthetic(num_train: int, num_test: int, num_classes: int = 10, size: int = 32) -> tuple[Any, Any, list[str]]:
    """Learnable seeded images: each class is a coloured grating of its own orientation and
    frequency plus a class-placed blob, drawn with random phase, shift, contrast and noise."""
    g = torch.Generator().manual_seed(SYNTHETIC_SEED)
    angles = torch.rand(num_classes, generator=g) * math.pi
    freqs = 1.5 + torch.rand(num_classes, generator=g) * 3.0
    colours = torch.rand(num_classes, 3, generator=g) * 1.6 - 0.8
    centres = torch.rand(num_classes, 2, generator=g) * 0.6 + 0.2

    def draw(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, num_classes, (n,), generator=gen)
        coords = torch.linspace(0, 1, size)
        yy, xx = torch.meshgrid(coords, coords, indexing="ij")
        a = angles[y] + (torch.rand(n, generator=gen) - 0.5) * 0.8
        proj = torch.cos(a)[:, None, None] * xx + torch.sin(a)[:, None, None] * yy
        phase = torch.rand(n, generator=gen)[:, None, None] * 2 * math.pi
        grating = torch.sin(2 * math.pi * freqs[y][:, None, None] * proj + phase)
        centre = centres[y] + (torch.rand(n, 2, generator=gen) - 0.5) * 0.3
        blob = torch.exp(-((xx - centre[:, 0, None, None]) ** 2 + (yy - centre[:, 1, None, None]) ** 2) / 0.02)
        contrast = 0.4 + torch.rand(n, generator=gen)[:, None, None, None] * 0.6
        img = contrast * (colours[y][:, :, None, None] * grating[:, None] + blob[:, None] * 0.8)
        img = img + torch.randn(n, 3, size, size, generator=gen) * 1.5
        return ((img * 0.35 + 0.5).clamp(0, 1) * 255).to(torch.uint8), y

    train = draw(num_train, torch.Generator().manual_seed(SYNTHETIC_SEED + 1))
    test = draw(num_test, torch.Generator().manual_seed(SYNTHETIC_SEED + 2))
    return train, test, [f"class_{i}" for i in range(num_classes)]


def _class_dirs(split_dir: Path) -> list[str]:
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def image_folder(root: Path, size: int, cache_dir: str | None) -> tuple[Any, Any, list[str]]:
    """Read root/train/<class>/* and root/test/<class>/*, decoded once and cached as tensors."""
    if not root.is_dir():
        raise UserError(
            f"data.root={root} does not exist. Point it at a folder holding train/<class>/ and test/<class>/ image folders."
        )
    for part in ("train", "test"):
        if not (root / part).is_dir():
            raise UserError(
                f"data.root={root} has no {part}/ folder; an image folder needs train/<class>/*.jpg and test/<class>/*.jpg."
            )
    classes = _class_dirs(root / "train")
    test_classes = _class_dirs(root / "test")
    if not classes:
        raise UserError(f"{root / 'train'} holds no class folders; put each class's images in train/<class_name>/.")
    if classes != test_classes:
        only_train = sorted(set(classes) - set(test_classes))
        only_test = sorted(set(test_classes) - set(classes))
        raise UserError(
            f"Class folders differ between {root}/train and {root}/test (only in train: {only_train}, only in test: {only_test}); "
            "both splits need the same class folders."
        )
    files = {
        part: sorted(p for c in classes for p in (root / part / c).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        for part in ("train", "test")
    }
    if not files["train"] or not files["test"]:
        raise UserError(f"No images ({', '.join(sorted(IMAGE_SUFFIXES))}) found under {root}/train or {root}/test.")
    fingerprint = hashlib.sha256(
        f"{root.resolve()}|{size}|{len(files['train'])}|{len(files['test'])}|{max(p.stat().st_mtime for p in files['train'][-50:])}".encode()
    ).hexdigest()[:16]
    cache = Path(cache_dir or root / ".cache") / f"imagefolder-{fingerprint}.pt"
    return _cached(cache, lambda: _decode_tree(root, classes, files, size))


def _cached(path: Path, build: Any) -> Any:

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock", timeout=1800):
        if path.is_file():
            try:
                blob = torch.load(path, mmap=True, weights_only=True)
                return blob["train"], blob["test"], blob["classes"]
            except Exception as err:  # a torn cache file is rebuilt, never trusted
                log.warning("rebuilding unreadable data cache %s (%s)", path, err)
        train, test, classes = build()
        tmp = path.with_suffix(".tmp")
        torch.save({"train": train, "test": test, "classes": classes}, tmp)
        tmp.replace(path)
        return train, test, classes


def _decode_tree(root: Path, classes: list[str], files: dict[str, list[Path]], size: int) -> tuple[Any, Any, list[str]]:
    from PIL import Image, UnidentifiedImageError

    out = []
    for part in ("train", "test"):
        images, labels, bad = [], [], []
        index = {c: i for i, c in enumerate(classes)}
        for path in files[part]:
            try:
                with Image.open(path) as raw:
                    im = raw.convert("RGB")
                    if im.size != (size, size):
                        im = im.resize((size, size), Image.Resampling.BILINEAR)
                    images.append(torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(size, size, 3))
                    labels.append(index[path.parent.name])
            except (UnidentifiedImageError, OSError, SyntaxError) as err:
                bad.append(f"{path} ({type(err).__name__})")
        if bad:
            log.warning("skipped %d unreadable image(s) in %s/%s, e.g. %s", len(bad), root, part, "; ".join(bad[:3]))
        if not images:
            raise UserError(
                f"No readable images under {root}/{part}: {len(bad)} file(s) failed to decode, e.g. {bad[:3]}. "
                "Replace or delete the broken files, or point data.root at a folder of readable images (unreadable ones "
                "among readable ones are skipped with a warning)."
            )
        out.append((torch.stack(images).permute(0, 3, 1, 2).contiguous(), torch.tensor(labels, dtype=torch.int64)))
    log.info("decoded %s: %d train, %d test images, %d classes", root, len(out[0][1]), len(out[1][1]), len(classes))
    return out[0], out[1], classes


def torchvision_set(name: str, root: Path, download: bool) -> tuple[Any, Any, list[str]]:
    """CIFAR-10/100 or Fashion-MNIST, downloaded into root once (a file lock serialises workers)."""
    import torchvision.datasets as tvd

    cls = {"cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100, "fashion_mnist": tvd.FashionMNIST}[name]
    root.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(str(root / ".download.lock"), timeout=3600):
            train = cls(str(root), train=True, download=download)
            test = cls(str(root), train=False, download=download)
    except Exception as err:
        raise UserError(
            f"Could not load {name} from data.root={root} ({type(err).__name__}: {' '.join(str(err).split())[:200]}). "
            f"Either allow the download (data.download=true, needs internet once), copy the official archive into {root}, "
            "or use an image-folder copy: data.name=imagefolder data.root=PATH/with/train_and_test."
        ) from None

    def tensors(ds: Any) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.as_tensor(ds.data)
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
        return x.contiguous(), torch.as_tensor(ds.targets, dtype=torch.int64)

    return tensors(train), tensors(test), list(train.classes)
