"""WRN-28-10 / WRN-28-2 as trained by Manifold Mixup and PatchUp, so their checkpoints load as-is.

Module names follow `supervised/models/wide_resnet.py` (vikasverma1077/manifold_mixup) and
`models/wide_resnet.py` (chandar-lab/PatchUp), which hold the same parameters. Unlike the WRN
paper's code, every convolution has a bias, blocks downsample in their second convolution, and the
final BN uses momentum 0.9 (in PyTorch's convention: running stats mostly follow the last batch;
it only matters in training). Tiny-ImageNet (64x64) models use a stride-2 stem, same state_dict.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmark.archs.registry import register_arch


class WideBasic(nn.Module):
    """BN-ReLU-conv x2 residual block; the shortcut (identity or 1x1 conv) reads the raw input."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, padding=1, bias=True)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=True)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return out + self.shortcut(x)


class WideResNet(nn.Module):
    """3x3 stem -> three stages of WideBasic blocks -> BN-ReLU -> 8x8 average pool -> linear."""

    def __init__(
        self, depth: int, widen_factor: int, num_classes: int, stem_stride: int = 1
    ) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, stride=stem_stride, padding=1, bias=True)
        in_planes = 16
        stages = []
        for i in range(3):
            planes = 16 * 2**i * widen_factor
            stage = []
            for stride in [1 if i == 0 else 2] + [1] * (n - 1):
                stage.append(WideBasic(in_planes, planes, stride))
                in_planes = planes
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3 = stages
        self.bn1 = nn.BatchNorm2d(in_planes, momentum=0.9)
        self.linear = nn.Linear(in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        # Fixed kernel as in the originals: a wrong input size fails in `linear`, not silently.
        out = F.avg_pool2d(F.relu(self.bn1(out)), 8)
        return self.linear(out.flatten(1))


@register_arch("wrn28_10")
def wrn28_10(num_classes: int = 10) -> nn.Module:
    """WRN-28-10 for 32x32 inputs (CIFAR, SVHN)."""
    return WideResNet(28, 10, num_classes)


@register_arch("wrn28_2")
def wrn28_2(num_classes: int = 10) -> nn.Module:
    """WRN-28-2 for 32x32 inputs (CIFAR, SVHN)."""
    return WideResNet(28, 2, num_classes)


@register_arch("wrn28_10_64")
def wrn28_10_64(num_classes: int = 200) -> nn.Module:
    """WRN-28-10 for 64x64 Tiny-ImageNet: the originals' `stride=2` stem."""
    return WideResNet(28, 10, num_classes, stem_stride=2)


@register_arch("wrn28_2_64")
def wrn28_2_64(num_classes: int = 200) -> nn.Module:
    """WRN-28-2 for 64x64 Tiny-ImageNet: the originals' `stride=2` stem."""
    return WideResNet(28, 2, num_classes, stem_stride=2)
