"""Optimizer (decoupled weight decay, no decay on biases and norms) and the per-step learning-rate schedule."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from raymlops.config.schema import OptimConfig, TrainConfig


def steps_per_epoch(n: int, global_batch: int, world: int) -> int:
    per_worker = global_batch // world
    return max(1, math.ceil(math.ceil(n / world) / per_worker))


def build_optimizer(opt: OptimConfig, train_cfg: TrainConfig, model: nn.Module, steps_per_epoch: int) -> tuple[Any, Any]:
    """SGD or AdamW (no weight decay on biases and norms) and its per-step schedule (warm-up, then none/cosine/onecycle)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in model.parameters():
        (decay if p.ndim > 1 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": opt.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if opt.name == "sgd":
        optimizer: Any = torch.optim.SGD(
            groups, lr=opt.lr, momentum=opt.momentum, nesterov=bool(opt.nesterov) and opt.momentum > 0
        )
    else:
        optimizer = torch.optim.AdamW(groups, lr=opt.lr, betas=(opt.momentum, 0.999))
    total = max(1, train_cfg.epochs * steps_per_epoch)
    warmup = int(train_cfg.warmup_epochs * steps_per_epoch)
    kind = train_cfg.lr_schedule

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if kind == "none":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if kind == "onecycle":  # linear decay to zero after warm-up
            return max(0.0, 1.0 - progress)
        return 0.5 * (1 + math.cos(math.pi * progress))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
