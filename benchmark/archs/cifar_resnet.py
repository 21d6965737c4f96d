"""The CIFAR ResNets of kuangliu/pytorch-cifar (`models/resnet.py`), the most common CIFAR
ResNet-18/34/50 in the wild, with its module names so its checkpoints load strictly.

Unlike torchvision's ImageNet ResNets they have a 3x3 stride-1 stem and no max-pool, a
`shortcut` projection (1x1 conv + BN) only where the shape changes, a fixed 4x4 average pool
over the 32x32 input's final 4x4 map, and a classifier named `linear`.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmark.archs.registry import register_arch


def _shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Sequential:
    """Identity (an empty Sequential, as the original) or a 1x1 conv + BN projection."""
    if stride == 1 and in_planes == out_planes:
        return nn.Sequential()
    return nn.Sequential(nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False),
                         nn.BatchNorm2d(out_planes))


class BasicBlock(nn.Module):
    """conv-BN-ReLU, conv-BN, plus the shortcut, then ReLU."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _shortcut(in_planes, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand by 4, each with BN, plus the shortcut, then ReLU."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        wide = self.expansion * planes
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, wide, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(wide)
        self.shortcut = _shortcut(in_planes, wide, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return F.relu(self.bn3(self.conv3(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """Stem, four stages of 64/128/256/512 planes (strides 1, 2, 2, 2), 4x4 pool, `linear`."""

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], depths: list[int],
                 num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        planes_in = 64
        for i, (planes, depth) in enumerate(zip((64, 128, 256, 512), depths, strict=True)):
            blocks = []
            for j in range(depth):
                blocks.append(block(planes_in, planes, 2 if i > 0 and j == 0 else 1))
                planes_in = planes * block.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.linear = nn.Linear(512 * block.expansion, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            out = stage(out)
        return self.linear(torch.flatten(F.avg_pool2d(out, 4), 1))


@register_arch("cifar_resnet18")
def cifar_resnet18(num_classes: int = 10) -> CifarResNet:
    """kuangliu/pytorch-cifar's ResNet18 (11.2 M parameters with 10 classes)."""
    return CifarResNet(BasicBlock, [2, 2, 2, 2], num_classes)


@register_arch("cifar_resnet34")
def cifar_resnet34(num_classes: int = 10) -> CifarResNet:
    """kuangliu/pytorch-cifar's ResNet34."""
    return CifarResNet(BasicBlock, [3, 4, 6, 3], num_classes)


@register_arch("cifar_resnet50")
def cifar_resnet50(num_classes: int = 10) -> CifarResNet:
    """kuangliu/pytorch-cifar's ResNet50 (bottleneck blocks)."""
    return CifarResNet(Bottleneck, [3, 4, 6, 3], num_classes)
