"""Per-batch transforms on the training device: normalisation and augmentation of uint8 images."""

from __future__ import annotations

import torch


def normalise(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (x.float().div_(255) - mean) / std


def augment(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop with reflect padding and horizontal flip on a uint8/float batch [N, C, H, W]."""
    n, c, h, w = x.shape
    dev = x.device
    padded = torch.nn.functional.pad(x.float(), (pad, pad, pad, pad), mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(dev)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(dev)
    rows = (dy[:, None] + torch.arange(h, device=dev))[:, None, :, None].expand(n, c, h, w)
    cols = (dx[:, None] + torch.arange(w, device=dev))[:, None, None, :].expand(n, c, h, w)
    cropped = padded[
        torch.arange(n, device=dev)[:, None, None, None], torch.arange(c, device=dev)[None, :, None, None], rows, cols
    ]
    flip = (torch.rand(n, generator=generator) < 0.5).to(dev)
    cropped = torch.where(flip[:, None, None, None], cropped.flip(3), cropped)
    return cropped.to(x.dtype)
