"""What a trained model costs to run: its size (millions of parameters) and batch-1 inference latency on the
trial's device (warm, median of N), measured once per trial for multi-objective searches and registry rules."""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

WARMUP_RUNS = 5


def model_costs(model: nn.Module, sample: torch.Tensor, runs: int) -> dict[str, float]:
    """{"latency_ms", "params_m"} for one input `sample` of shape (1, C, H, W) already on the model's device."""
    was_training = model.training
    model.eval()
    timings = []
    with torch.inference_mode():
        for i in range(WARMUP_RUNS + runs):
            start = time.perf_counter()
            model(sample)
            if sample.is_cuda:
                torch.cuda.synchronize(sample.device)
            if i >= WARMUP_RUNS:
                timings.append((time.perf_counter() - start) * 1000)
    model.train(was_training)
    params = sum(p.numel() for p in model.parameters())
    return {"latency_ms": statistics.median(timings), "params_m": params / 1e6}
