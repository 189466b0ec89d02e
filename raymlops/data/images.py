"""Listing an image folder for batch inference: a data set's split, class subfolders (labelled) or a flat folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from raymlops.core.errors import UserError
from raymlops.data.sources import IMAGE_SUFFIXES


@dataclass
class ImageList:
    """The images of a folder; labels are the class-subfolder names, or None for a flat folder."""

    root: Path
    paths: list[str]
    labels: list[str] | None


def list_images(root: Path, split: str = "test") -> ImageList:
    """Images under root: root/<split>/<class>/* for a train/test data set, root/<class>/* for class
    subfolders (labelled), or every image file below root (unlabelled)."""
    if not root.is_dir():
        raise UserError(f"data.root={root} is not a folder; point it at a folder of images (optionally in class subfolders).")
    if (root / "train").is_dir() and (root / "test").is_dir():  # a data set's layout: predict one split of it
        root = root / split
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    top = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if subdirs and not top:
        pairs = [(str(f), d.name) for d in subdirs for f in sorted(d.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
        paths, labels = [p for p, _ in pairs], [c for _, c in pairs]
        found = ImageList(root, paths, labels)
    else:
        found = ImageList(
            root, sorted(str(f) for f in root.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES), None
        )
    if not found.paths:
        raise UserError(f"No images ({', '.join(sorted(IMAGE_SUFFIXES))}) found under {root}.")
    return found
