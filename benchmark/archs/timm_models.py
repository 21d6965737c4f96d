"""timm's models as architectures: `timm:NAME` (or `timm:NAME.TAG`, a pretrained tag whose
configuration applies), built with random weights; the checkpoint supplies the weights.

timm's configuration of the name gives the model's defaults: `input_size`, `mean` and `std` (used
unless the user's files, flags or the checkpoint say otherwise), and the interpolation and
centre-crop fraction its published numbers were measured with (named in the provenance: rubench
evaluates with the suite's own preprocessing, and says so when the two differ). timm is an
optional dependency (`pip install 'rubench[timm]'`), imported only when such a name is used.
"""

from __future__ import annotations

from typing import Any

import torch.nn as nn

PREFIX = "timm:"
# The ImageNet suite's eval transform (Resize(256) -> CenterCrop(224), bilinear): crop 224 / 256.
SUITE_INTERPOLATION, SUITE_CROP = "bilinear", 0.875


def is_timm(name: str) -> bool:
    """Whether an architecture name asks for a timm model."""
    return name.startswith(PREFIX)


def _timm():
    """The timm package, or a ValueError saying how to install it."""
    try:
        import timm
    except ImportError as exc:
        raise ValueError("timm architectures need the timm package: pip install "
                         "'rubench[timm]' (or pip install timm)") from exc
    return timm


def _model_name(name: str) -> str:
    """The timm model name of `timm:NAME`, or a ValueError with close names."""
    timm = _timm()
    model = name[len(PREFIX):]
    if not timm.models.is_model(model):
        import difflib

        close = difflib.get_close_matches(model.split(".")[0], timm.list_models(), n=3)
        hint = f" (did you mean {' or '.join(PREFIX + c for c in close)}?)" if close else ""
        raise ValueError(f"unknown timm model {model!r}{hint}; `timm.list_models()` lists them")
    return model


def build_timm(name: str, num_classes: int) -> nn.Module:
    """`timm:NAME` with `num_classes` outputs and random weights."""
    return _timm().create_model(_model_name(name), pretrained=False, num_classes=num_classes)


def timm_config(name: str) -> dict[str, Any]:
    """timm's configuration of `timm:NAME`: `input_size` [H, W], `mean`, `std`,
    `interpolation` and `crop_pct` (the centre-crop fraction of its evaluation)."""
    cfg = _timm().models.get_pretrained_cfg(_model_name(name))
    if cfg is None:
        raise ValueError(f"timm has no configuration for {name[len(PREFIX):]!r}")
    return {"input_size": [int(v) for v in cfg.input_size[1:]],
            "mean": [float(v) for v in cfg.mean], "std": [float(v) for v in cfg.std],
            "interpolation": str(cfg.interpolation), "crop_pct": float(cfg.crop_pct)}


def preprocessing_note(name: str, config: dict[str, Any]) -> str | None:
    """What differs between timm's evaluation preprocessing of `name` and the suite's
    (ImageNet-style Resize + CenterCrop, bilinear, crop 0.875); None when nothing does."""
    differs = config["interpolation"] != SUITE_INTERPOLATION \
        or abs(config["crop_pct"] - SUITE_CROP) > 1e-9
    if not differs:
        return None
    return (f"{name}: timm evaluates it with {config['interpolation']} interpolation and a "
            f"{config['crop_pct']:g} centre crop; rubench uses the suite's preprocessing "
            f"(Resize + CenterCrop, {SUITE_INTERPOLATION}, crop {SUITE_CROP:g} on ImageNet), "
            "so its numbers may differ from timm's published ones")
