"""Tensor operations of the loop: a rank's batches, mixed precision, all-reduce, prediction and validation."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DistributedSampler

from raymlops.config.schema import TrainConfig
from raymlops.data import normalise


class Shard(Protocol):
    """What a tensor op needs of the worker it runs on (training.session.Session is one; this module imports none)."""

    @property
    def rank(self) -> int: ...
    @property
    def world_size(self) -> int: ...
    @property
    def device(self) -> torch.device: ...


def batches(x: torch.Tensor, y: torch.Tensor, train_cfg: TrainConfig, session: Shard, epoch: int) -> Any:
    """This rank's shard of a seeded epoch permutation (DistributedSampler semantics), in batches."""

    indices: Any = range(len(y))  # a range is a valid map-style dataset of indices
    sampler: DistributedSampler[int] = DistributedSampler(
        indices, num_replicas=session.world_size, rank=session.rank, shuffle=True, seed=train_cfg.seed, drop_last=False
    )
    sampler.set_epoch(epoch)
    idx = torch.tensor(list(iter(sampler)), device=x.device)
    per_worker = train_cfg.batch_size // session.world_size
    for i in range(0, len(idx), per_worker):
        b = idx[i : i + per_worker]
        yield x[b], y[b]


def autocast(amp: Any, device: torch.device) -> Any:
    use = device.type == "cuda" if amp == "auto" else bool(amp) and device.type == "cuda"
    return torch.autocast("cuda", dtype=torch.bfloat16) if use else nullcontext()


def all_reduce(loss_sum: torch.Tensor, correct: torch.Tensor, n: int, device: torch.device) -> tuple[float, float, int]:
    t = torch.stack([loss_sum.float(), correct.float(), torch.tensor(float(n), device=device)])
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return float(t[0]), float(t[1]), int(t[2])


@torch.no_grad()
def predict(
    model: nn.Module,
    x: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    batch_size: int,
    channels_last: bool = False,
    tta_flip: bool = False,
) -> torch.Tensor:
    """Logits for uint8 images x, in batches (optionally averaged with the flipped image)."""
    model.eval()
    out = []
    for i in range(0, len(x), batch_size):
        xb = normalise(x[i : i + batch_size], mean, std)
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        logits = model(xb).float()
        if tta_flip:
            logits = (logits + model(xb.flip(3)).float()) / 2
        out.append(logits)
    return torch.cat(out) if out else torch.zeros(0)


def evaluate_shard(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    train_cfg: TrainConfig,
    session: Shard,
    loss_fn: nn.Module,
) -> tuple[float, float]:
    """Validation loss and accuracy over all ranks (each rank scores a strided shard)."""
    xs, ys = x[session.rank :: session.world_size], y[session.rank :: session.world_size]
    net = unwrap(model)
    with autocast(train_cfg.amp, session.device):
        logits = predict(net, xs, mean, std, train_cfg.eval_batch_size, bool(train_cfg.channels_last))
    loss = loss_fn(logits, ys) * len(ys) if len(ys) else torch.zeros((), device=x.device)
    correct = (logits.argmax(1) == ys).sum() if len(ys) else torch.zeros((), device=x.device)
    loss_sum, n_correct, n = all_reduce(loss, correct, len(ys), x.device)
    return loss_sum / max(n, 1), n_correct / max(n, 1)


def unwrap(model: nn.Module) -> nn.Module:
    inner = getattr(model, "module", model)  # DDP wraps the model in .module
    assert isinstance(inner, nn.Module)
    return inner
