"""timm's models as architectures: `timm:NAME` (or `timm:NAME.TAG`, a pretrained tag whose
configuration applies), built with random weights; the checkpoint supplies the weights.

timm's configuration of the name gives the model's defaults: `input_size`, `mean` and `std` (used
unless the user's files, flags or the checkpoint say otherwise), and the interpolation, centre-crop
fraction and crop mode its published numbers were measured with: on data read from image files
(ImageNet val) rubench evaluates the checkpoint with that preprocessing, Resize(floor(size /
crop_pct)) -> CenterCrop(size) as timm's `transforms_imagenet_eval` does, and says so where it
cannot. timm is an optional dependency (`pip install 'rubench[timm]'`), imported only when such
a name is used.
"""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from benchmark.data import Preprocessing

PREFIX = "timm:"


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
    `interpolation`, `crop_pct` (the centre-crop fraction of its evaluation) and `crop_mode`."""
    cfg = _timm().models.get_pretrained_cfg(_model_name(name))
    if cfg is None:
        raise ValueError(f"timm has no configuration for {name[len(PREFIX):]!r}")
    return {"input_size": [int(v) for v in cfg.input_size[1:]],
            "mean": [float(v) for v in cfg.mean], "std": [float(v) for v in cfg.std],
            "interpolation": str(cfg.interpolation), "crop_pct": float(cfg.crop_pct),
            "crop_mode": str(cfg.crop_mode or "center")}


def timm_eval_preprocessing(config: dict[str, Any], input_size: list[int]
                            ) -> tuple[Preprocessing | None, str | None]:
    """timm's evaluation preprocessing (`config`: `interpolation`, `crop_pct`, `crop_mode`) at
    `input_size` [H, W], as `(preprocessing, None)`, or `(None, why)` where rubench cannot
    reproduce it (a non-square input, timm's crop mode 'border'). An interpolation torchvision
    does not know raises a ValueError."""
    height, width = input_size
    mode = config.get("crop_mode", "center")
    if height != width:
        return None, (f"timm evaluates it at {height}x{width} with aspect-preserving resizing "
                      "to a non-square size, which rubench does not reproduce")
    if mode not in ("center", "squash"):
        return None, f"timm evaluates it with crop mode {mode!r}, which rubench does not reproduce"
    try:
        return Preprocessing.from_crop_fraction(height, config["crop_pct"],
                                                config["interpolation"],
                                                squash=mode == "squash"), None
    except ValueError as exc:
        raise ValueError(f"timm's evaluation preprocessing: {exc}") from exc
