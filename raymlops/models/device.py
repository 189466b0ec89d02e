"""train.device: the torch device of a single-process path (a 1-worker trial, a 1-worker job, evaluation,
the served pyfunc): CUDA, Apple's MPS or the CPU, chosen once here."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def available(kind: str) -> bool:
    """Whether this process's torch can compute on `kind` (cuda, mps; cpu always)."""
    import torch

    if kind == "cuda":
        return bool(torch.cuda.is_available())
    if kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        return bool(mps is not None and mps.is_available())
    return kind == "cpu"


def choose_device(want: str = "auto", gpu_allowed: bool = True) -> torch.device:
    """want auto: CUDA when this run may use a GPU (gpu_allowed: Ray reserved one, or no Ray reservation
    applies) and torch sees one, then MPS, then the CPU; cuda/mps/cpu: that device (checked before Ray starts
    by `device_problem`)."""
    import torch

    if want == "auto":
        if gpu_allowed and available("cuda"):
            return torch.device("cuda")
        return torch.device("mps" if available("mps") else "cpu")
    return torch.device(str(want))
