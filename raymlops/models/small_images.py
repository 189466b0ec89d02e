"""Models for small images: torchvision's MobileNetV3 and ResNet18 adapted to 32x32, and a fast CNN.

No pretrained weights are ever fetched (weights=None everywhere).
"""

from __future__ import annotations

import torch
from torch import nn

from raymlops.config.schema import ModelConfig
from raymlops.core.errors import UserError


def build_model(model: ModelConfig, in_channels: int, num_classes: int) -> nn.Module:
    name = model.name
    dropout = float(model.dropout or 0.0)
    if name == "fast_cnn":
        return FastCNN(in_channels, num_classes, width=int(model.width or 64), dropout=dropout)
    if name == "resnet18":
        return _resnet18(in_channels, num_classes)
    if name in ("mobilenet_v3_small", "mobilenet_v3_large"):
        return _mobilenet(name, in_channels, num_classes, dropout)
    raise UserError(f"model.name={name!r} is unknown; choose fast_cnn, resnet18, mobilenet_v3_small or mobilenet_v3_large.")


def _conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.GELU())


class FastCNN(nn.Module):
    """Three conv stages (width, 2x, 4x channels) each halving resolution, then pooled logits.

    Small and BatchNorm-heavy so it trains to useful accuracy in a few epochs: the model
    for quick searches and the fast GPU recipe.
    """

    def __init__(self, in_channels: int, num_classes: int, width: int = 64, dropout: float = 0.0):
        super().__init__()
        w1, w2, w3 = width, width * 2, width * 4
        self.stem = _conv_bn(in_channels, w1 // 2)
        self.blocks = nn.Sequential(
            _conv_bn(w1 // 2, w1),
            _conv_bn(w1, w1),
            nn.MaxPool2d(2),
            _conv_bn(w1, w2),
            _conv_bn(w2, w2),
            nn.MaxPool2d(2),
            _conv_bn(w2, w3),
            _conv_bn(w3, w3),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(w3, num_classes, bias=False)
        )
        self.scale = 1 / 4  # keeps initial logits small for a calmer start

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x))) * self.scale


def _resnet18(in_channels: int, num_classes: int) -> nn.Module:
    from torchvision.models import resnet18

    net = resnet18(weights=None, num_classes=num_classes)
    net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)  # 32x32: no 7x7/2 stem
    net.maxpool = nn.Identity()  # and no early max-pool
    return net


def _mobilenet(name: str, in_channels: int, num_classes: int, dropout: float) -> nn.Module:
    from torchvision import models

    ctor = models.mobilenet_v3_small if name == "mobilenet_v3_small" else models.mobilenet_v3_large
    net = ctor(weights=None, num_classes=num_classes, dropout=dropout or 0.2)
    first = net.features[0][0]
    # 32x32 inputs: a stride-1 stem keeps 4x more spatial resolution through the network.
    net.features[0][0] = nn.Conv2d(in_channels, first.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
    # torchvision's MobileNetV3 uses BatchNorm momentum 0.01 (tuned for long ImageNet runs); over a few
    # epochs the running statistics barely move and eval-mode accuracy sits at chance. 0.1 is the default.
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = 0.1
    return net


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
