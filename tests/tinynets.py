"""Tiny test architectures (a few hundred parameters), importable as `tinynets:<name>`."""

import torch.nn as nn


def tiny_cnn(num_classes: int = 10, in_channels: int = 1, side: int = 8) -> nn.Module:
    """conv 3x3 (4 maps) -> ReLU -> 2x2 average pool -> linear; for 8x8 digits by default."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(4 * (side // 2) ** 2, num_classes),
    )


def tiny_cnn32(num_classes: int = 10) -> nn.Module:
    """The same for 32x32 RGB images."""
    return tiny_cnn(num_classes, in_channels=3, side=32)


def raises(num_classes: int = 10) -> nn.Module:
    """A factory that fails, as user code can."""
    raise RuntimeError("broken factory")


def not_a_module(num_classes: int = 10) -> dict:
    """A factory that returns something other than a module."""
    return {"num_classes": num_classes}
