"""Additive PyramidNet (bottleneck, CIFAR) as released by CutMix, so its checkpoints load strictly.

Module names follow `pyramidnet.py` of clovaai/CutMix-PyTorch (itself from
dyhan0920/PyramidNet-PyTorch). Channel widths grow by alpha / (3n) per block and are rounded from
a running float sum exactly as the original does, since one rounding difference changes a shape.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmark.archs.registry import register_arch

_EXPANSION = 4


class PyramidBottleneck(nn.Module):
    """BN-conv1x1-BN-ReLU-conv3x3-BN-ReLU-conv1x1-BN; shortcut is avg-pooled and zero-padded."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * _EXPANSION, 1, bias=False)
        self.bn4 = nn.BatchNorm2d(planes * _EXPANSION)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.AvgPool2d | None = None
        if stride != 1:
            self.downsample = nn.AvgPool2d(2, stride=2, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.bn1(x))
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.bn4(self.conv3(self.relu(self.bn3(out))))
        skip = x if self.downsample is None else self.downsample(x)
        # The extra output channels get a zero shortcut (parameter-free widening).
        return out + F.pad(skip, (0, 0, 0, 0, 0, out.shape[1] - skip.shape[1]))


class PyramidNet(nn.Module):
    """CIFAR PyramidNet: 3x3 conv + BN (no ReLU) -> 3 stages of n blocks -> BN-ReLU-pool -> fc."""

    def __init__(self, depth: int, alpha: float, num_classes: int) -> None:
        super().__init__()
        if (depth - 2) % 9:
            raise ValueError(f"bottleneck PyramidNet depth must be 9n+2, got {depth}")
        n = (depth - 2) // 9
        add_rate = alpha / (3 * n * 1.0)
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        width, in_planes = 16.0, 16
        stages = []
        for stage_stride in (1, 2, 2):
            blocks = []
            for i in range(n):
                width += add_rate
                planes = round(width)
                blocks.append(PyramidBottleneck(in_planes, planes, stage_stride if i == 0 else 1))
                in_planes = planes * _EXPANSION
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.bn_final = nn.BatchNorm2d(in_planes)
        self.relu_final = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(8)
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn1(self.conv1(x))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = self.avgpool(self.relu_final(self.bn_final(out)))
        return self.fc(out.flatten(1))


@register_arch("pyramidnet200_240")
def pyramidnet200_240(num_classes: int = 100) -> nn.Module:
    """PyramidNet-200, alpha 240, bottleneck: CutMix's CIFAR-100 model (22 blocks per stage)."""
    return PyramidNet(200, 240, num_classes)
