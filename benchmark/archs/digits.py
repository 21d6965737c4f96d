"""Small CNN for 8x8 single-channel digits: the embedded demo zoo's architecture."""

from __future__ import annotations

import torch.nn as nn

from benchmark.archs.registry import register_arch


class DigitsCNN(nn.Module):
    """conv-BN-ReLU x2 -> maxpool -> conv-BN-ReLU -> global average pool -> linear (~60k params)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, 2 * width, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        return self.fc(self.features(x))


@register_arch("digits_cnn")
def digits_cnn(num_classes: int = 10) -> nn.Module:
    return DigitsCNN(num_classes=num_classes)
