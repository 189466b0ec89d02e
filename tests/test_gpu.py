"""GPU checks: NCCL DDP and GPU-resident data. Skipped cleanly on machines without CUDA (CI)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from conftest import overrides

pytestmark = [pytest.mark.gpu, pytest.mark.ray]


def test_train_job_uses_the_gpu(ray_session: Any, store: dict[str, str]) -> None:
    from raymlops import tracking
    from raymlops.train import main as train_main

    metrics = train_main(
        overrides(
            store,
            "+experiment=smoke",
            "scaling.use_gpu=true",
            "scaling.gpus_per_worker=1",
            "train.channels_last=true",
            "train.epochs=2",
        )
    )
    run = tracking.client(store["mlflow.tracking_uri"]).get_run(metrics["mlflow_run_id"])
    assert run.data.params["scaling.use_gpu"] == "True"
    assert metrics["val_acc"] > 0.15


def test_bf16_autocast_on_cuda() -> None:
    from raymlops.training.ops import autocast as _autocast

    with _autocast("auto", torch.device("cuda")):
        out = torch.nn.Linear(4, 4).cuda()(torch.randn(2, 4, device="cuda"))
    assert out.dtype == torch.bfloat16
