"""Penultimate features of a classifier: the input of its final linear layer, captured by a hook.

The final layer is found by running the model once on an example batch and taking the last
`nn.Linear` called whose output has the logits' shape (the classifier head of torchvision's,
timm's and rubench's networks: `fc`, `linear`, `classifier.6`, `heads.head`, `head.fc`), or named
explicitly. A `FeatureHook` then returns logits and features from one forward pass; `head`
gives the layer's weight and bias, which ViM, ReAct and ASH use to recompute logits from
altered features.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType

import torch
from torch import nn

__all__ = ["FeatureHook", "Head", "extract", "final_linear", "head_of", "linear_layer"]


@dataclass(frozen=True)
class Head:
    """The final linear layer as float64 CPU tensors: logits = features @ weight.T + bias."""

    weight: torch.Tensor  # (classes, features)
    bias: torch.Tensor  # (classes,); zeros for a layer without bias

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Logits of (N, D) features, in float64."""
        return features.double() @ self.weight.T + self.bias


def head_of(linear: nn.Linear) -> Head:
    """A linear layer's weight and bias, detached float64 copies on the CPU."""
    weight = linear.weight.detach().to("cpu", torch.float64).clone()
    bias = (linear.bias.detach().to("cpu", torch.float64).clone() if linear.bias is not None
            else torch.zeros(weight.shape[0], dtype=torch.float64))
    return Head(weight, bias)


def final_linear(model: nn.Module, example: torch.Tensor) -> str:
    """Name (in `model.named_modules()`) of the last `nn.Linear` a forward pass on `example`
    calls whose output has the logits' shape: the classifier head whose input is the
    penultimate feature vector. ValueError when there is none (a convolutional head)."""
    calls: list[tuple[str, tuple[int, ...]]] = []
    handles = [module.register_forward_hook(
        lambda _m, _i, out, name=name: calls.append((name, tuple(out.shape))))
        for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    try:
        with torch.no_grad():
            logits = model(example)
    finally:
        for handle in handles:
            handle.remove()
    shape = tuple(logits.shape)
    heads = [name for name, out in calls if out == shape]
    if not heads:
        seen = ", ".join(dict.fromkeys(name for name, _ in calls)) or "none"
        raise ValueError(f"no nn.Linear layer produces the logits (shape {shape}; linear layers "
                         f"called: {seen}); name the layer whose input is the feature vector")
    return heads[-1]


def linear_layer(model: nn.Module, layer: str) -> nn.Linear:
    """The `nn.Linear` module named `layer`; ValueError (naming the linear layers there are)
    when there is no such module or it is not linear."""
    try:
        module = model.get_submodule(layer)
    except AttributeError:
        linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        raise ValueError(f"the model has no module {layer!r}; its linear layers: "
                         f"{', '.join(linears) or 'none'}") from None
    if not isinstance(module, nn.Linear):
        raise ValueError(f"module {layer!r} is a {type(module).__name__}, not an nn.Linear "
                         "(features are the input of the final linear layer)")
    return module


class FeatureHook:
    """Captures the input of the linear layer `layer` of `model` on every forward pass, as long
    as it is open (a context manager; `remove` closes it)."""

    def __init__(self, model: nn.Module, layer: str) -> None:
        self.layer, self.linear = layer, linear_layer(model, layer)
        self._last: torch.Tensor | None = None
        self._handle = self.linear.register_forward_hook(self._capture)

    def _capture(self, module: nn.Module, inputs: tuple[torch.Tensor, ...],
                 output: torch.Tensor) -> None:
        self._last = inputs[0]

    def head(self) -> Head:
        """The hooked layer's weight and bias (`Head`)."""
        return head_of(self.linear)

    def __call__(self, forward: nn.Module, images: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, features) of `images` from one pass of `forward` (the hooked model, or a
        wrapper that calls it, such as an autocast one); features are (N, D)."""
        self._last = None
        logits = forward(images)
        if self._last is None:
            raise RuntimeError(f"the forward pass did not call layer {self.layer!r}")
        features = self._last
        if features.dim() != 2 or features.shape[0] != logits.shape[0]:
            raise ValueError(f"layer {self.layer!r} takes inputs of shape "
                             f"{tuple(features.shape)}, not one feature vector per image")
        return logits, features

    def remove(self) -> None:
        """Detach the hook from the model."""
        self._handle.remove()

    def __enter__(self) -> FeatureHook:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.remove()


def extract(hook: FeatureHook, forward: nn.Module,
            batches: Iterable[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, features) of every image of `batches`, float32 on the CPU, in order."""
    logits, features = [], []
    with torch.inference_mode():
        for images in batches:
            out, feats = hook(forward, images)
            logits.append(out.float().cpu())
            features.append(feats.float().cpu())
    if not logits:
        raise ValueError("no images to extract features from")
    return torch.cat(logits), torch.cat(features)
