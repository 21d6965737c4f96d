"""Architecture registry: the seed papers' networks, torchvision's, and `module:callable`."""

from __future__ import annotations

import difflib
import fnmatch
import importlib
from collections.abc import Callable

import torch.nn as nn

ArchFactory = Callable[..., nn.Module]
_ARCHS: dict[str, ArchFactory] = {}


def register_arch(name: str) -> Callable[[ArchFactory], ArchFactory]:
    """Register a factory called as `factory(num_classes=...)` under `name`."""

    def wrap(factory: ArchFactory) -> ArchFactory:
        if name in _ARCHS:
            raise ValueError(f"architecture {name!r} is registered twice")
        _ARCHS[name] = factory
        return factory

    return wrap


def _torchvision_names() -> list[str]:
    import torchvision.models as tvm

    return sorted(tvm.list_models(module=tvm))


def list_archs(pattern: str = "*") -> dict[str, list[str]]:
    """Architecture names matching a shell-style pattern, grouped by source."""
    return {
        "rubench": sorted(fnmatch.filter(_ARCHS, pattern)),
        "torchvision": fnmatch.filter(_torchvision_names(), pattern),
    }


def build_arch(name: str, num_classes: int) -> nn.Module:
    """Instantiate `name` with `num_classes` outputs and random weights.

    Lookup order: rubench's registry, then torchvision's classification models, then
    `package.module:callable` imported from PYTHONPATH.
    """
    if name in _ARCHS:
        return _ARCHS[name](num_classes=num_classes)
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
    known = list(_ARCHS) + _torchvision_names()
    same = [k for k in known if k.lower() == name.lower()]
    close = same or difflib.get_close_matches(name.lower(), [k.lower() for k in known], n=5,
                                              cutoff=0.6)
    close = [next(k for k in known if k.lower() == c) for c in close]
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(
        f"unknown architecture {name!r}: not in rubench's registry, not a torchvision model, "
        f"and not of the form 'module:callable'.{hint} `rubench list` shows all names."
    )
