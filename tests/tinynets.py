"""Tiny test architectures (a few hundred parameters), importable as `tinynets:<name>`."""

import torch
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


class _Offset(nn.Sequential):
    """tiny_cnn (same weights' names) whose logits get `value` added: NaN or infinity."""

    def __init__(self, value: float, num_classes: int) -> None:
        super().__init__(*tiny_cnn(num_classes))
        self.value = value

    def forward(self, x):
        return super().forward(x) + self.value


def nan_cnn(num_classes: int = 10) -> nn.Module:
    """tiny_cnn with NaN logits."""
    return _Offset(float("nan"), num_classes)


def inf_cnn(num_classes: int = 10) -> nn.Module:
    """tiny_cnn with one infinite logit per image."""
    net = _Offset(0.0, num_classes)
    net.value = float("inf") * (torch.arange(num_classes) == 3)
    return net


class _Dropout(nn.Sequential):
    """tiny_cnn with dropout on its logits left on at test time (ignores eval mode)."""

    def forward(self, x):
        return nn.functional.dropout(super().forward(x), p=0.3, training=True)


def dropout_cnn(num_classes: int = 10) -> nn.Module:
    """tiny_cnn whose outputs are random at test time."""
    return _Dropout(*tiny_cnn(num_classes))


class _Asserting(nn.Sequential):
    """tiny_cnn whose forward fails with an AssertionError (user code can)."""

    def forward(self, x):
        raise AssertionError("this network only takes 7x7 images")


def asserting_cnn(num_classes: int = 10) -> nn.Module:
    """tiny_cnn (same weights' names) whose forward pass always fails."""
    return _Asserting(*tiny_cnn(num_classes))


def pooled_cnn(num_classes: int = 10) -> nn.Module:
    """conv 3x3 (4 maps) on RGB -> ReLU -> global average pool -> linear: any image size."""
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, num_classes))


def bf16_fragile(num_classes: int = 10) -> nn.Module:
    """A linear model whose logits differ by 1e-3 around 100: float32 ranks the last class
    first, bfloat16 (8 bits of mantissa) rounds them equal, so its top-1 is the first class."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, num_classes))
    with torch.no_grad():
        net[1].weight.fill_(1.0 / 64)
        net[1].bias.copy_(100.0 + 1e-3 * torch.arange(num_classes, dtype=torch.float32))
    return net
