"""PreAct ResNet-18/34 as trained by Manifold Mixup and PatchUp, so their checkpoints load strictly.

Module names follow `supervised/models/preresnet.py` (vikasverma1077/manifold_mixup) and
`models/preresnet.py` (chandar-lab/PatchUp); both hold the same parameters. Two quirks of those
networks are kept: no BN-ReLU after the last stage, and a fixed 4x4 average pool. Tiny-ImageNet
(64x64) models differ only by a stride-2 stem, which leaves the state_dict unchanged, so they are
registered under their own `_64` names.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmark.archs.registry import register_arch


class PreActBlock(nn.Module):
    """BN-ReLU-conv x2 residual block; a projection shortcut reads the pre-activated input."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        # The originals register `shortcut` only when a projection is needed.
        self.shortcut: nn.Sequential | None = None
        if stride != 1 or in_planes != planes:
            projection = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)
            self.shortcut = nn.Sequential(projection)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(out)
        out = self.conv2(F.relu(self.bn2(self.conv1(out))))
        return out + skip


class PreActResNet(nn.Module):
    """3x3 stem -> four stages of PreActBlocks (64..512 wide) -> 4x4 average pool -> linear."""

    def __init__(self, num_blocks: list[int], num_classes: int, stem_stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, stride=stem_stride, padding=1, bias=False)
        in_planes = 64
        stages = []
        for i, blocks in enumerate(num_blocks):
            planes = 64 * 2**i
            strides = [1 if i == 0 else 2] + [1] * (blocks - 1)
            stage = []
            for stride in strides:
                stage.append(PreActBlock(in_planes, planes, stride))
                in_planes = planes
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.linear = nn.Linear(in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer4(self.layer3(self.layer2(self.layer1(self.conv1(x)))))
        # Fixed kernel as in the originals: a wrong input size fails in `linear`, not silently.
        out = F.avg_pool2d(out, 4)
        return self.linear(out.flatten(1))


@register_arch("preactresnet18")
def preactresnet18(num_classes: int = 10) -> nn.Module:
    """PreActResNet-18 for 32x32 inputs (CIFAR, SVHN)."""
    return PreActResNet([2, 2, 2, 2], num_classes)


@register_arch("preactresnet34")
def preactresnet34(num_classes: int = 10) -> nn.Module:
    """PreActResNet-34 for 32x32 inputs (CIFAR, SVHN)."""
    return PreActResNet([3, 4, 6, 3], num_classes)


@register_arch("preactresnet18_64")
def preactresnet18_64(num_classes: int = 200) -> nn.Module:
    """PreActResNet-18 for 64x64 Tiny-ImageNet: the originals' `stride=2` stem."""
    return PreActResNet([2, 2, 2, 2], num_classes, stem_stride=2)


@register_arch("preactresnet34_64")
def preactresnet34_64(num_classes: int = 200) -> nn.Module:
    """PreActResNet-34 for 64x64 Tiny-ImageNet: the originals' `stride=2` stem."""
    return PreActResNet([3, 4, 6, 3], num_classes, stem_stride=2)
