"""Architecture registry: the seed papers' networks, torchvision's, and `module:callable`."""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Callable

import torch.nn as nn

from benchmark.archs.timm_models import build_timm, is_timm
from benchmark.registry import registry

ArchFactory = Callable[..., nn.Module]
ARCHS = registry("arch")


def register_arch(name: str) -> Callable[[ArchFactory], ArchFactory]:
    """Register a factory called as `factory(num_classes=...)` under `name`."""
    return ARCHS.register(name)


def _torchvision_names() -> list[str]:
    import torchvision.models as tvm

    return sorted(tvm.list_models(module=tvm))


def list_archs(pattern: str = "*") -> dict[str, list[str]]:
    """Architecture names matching a shell-style pattern, grouped by source."""
    return {
        "rubench": sorted(ARCHS.names(pattern)),
        "torchvision": fnmatch.filter(_torchvision_names(), pattern),
    }


def build_arch(name: str, num_classes: int) -> nn.Module:
    """Instantiate `name` with `num_classes` outputs and random weights.

    Lookup order: rubench's registry, `timm:NAME` (timm's models), torchvision's
    classification models, then `package.module:callable` imported from PYTHONPATH.
    """
    if name in ARCHS:
        return ARCHS.get(name)(num_classes=num_classes)
    if is_timm(name):
        return build_timm(name, num_classes)
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except Exception as exc:  # user code may fail on import in any way
            raise ValueError(f"cannot import architecture {name!r}: {type(exc).__name__}: "
                             f"{exc}") from exc
        try:
            net = factory(num_classes=num_classes)
        except Exception as exc:  # user code: report it against the checkpoint, not the run
            raise ValueError(f"{name}(num_classes={num_classes}) raised "
                             f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(net, nn.Module):
            raise ValueError(f"{name}(num_classes={num_classes}) returned a "
                             f"{type(net).__name__}, not a torch.nn.Module")
        return net
    if name in _torchvision_names():
        import torchvision.models as tvm

        return tvm.get_model(name, weights=None, num_classes=num_classes)
    raise ValueError(
        f"unknown architecture {name!r}{ARCHS.hint(name, _torchvision_names())}: not in "
        "rubench's registry, not a torchvision model, not 'timm:NAME' and not of the form "
        "'module:callable'. `rubench list` shows all names."
    )
