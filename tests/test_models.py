"""Output shapes of every model for 1- and 3-channel 32x32 (and 28x28) inputs; no weights fetched."""

from __future__ import annotations

import pytest
import torch

from raymlops.config.choices import MODELS
from raymlops.config.schema import ModelConfig, ModelName
from raymlops.models.small_images import build_model, count_params


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize(("channels", "size", "classes"), [(3, 32, 10), (1, 28, 10), (3, 32, 100)])
def test_output_shape(name: str, channels: int, size: int, classes: int) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(name=ModelName(name), width=None, dropout=0.0), channels, classes).eval()
    with torch.no_grad():
        out = model(torch.randn(2, channels, size, size))
    assert out.shape == (2, classes)
    assert torch.isfinite(out).all()


def test_fast_cnn_is_small_and_resnet_keeps_resolution() -> None:
    fast = build_model(ModelConfig(name=ModelName.fast_cnn, width=64), 3, 10)
    assert count_params(fast) < 2_000_000
    resnet = build_model(ModelConfig(name=ModelName.resnet18), 3, 10)
    assert resnet.conv1.stride == (1, 1) and isinstance(resnet.maxpool, torch.nn.Identity)
