"""Affine deformations (PatchUp / Manifold Mixup's table): rotation, x-shear and scaling.

Semantics are torchvision's `transforms.functional.affine` on tensors, batched with a different
angle / shear / scale per image: the centre is the image centre, a positive angle rotates
clockwise (angle 90 equals `torch.rot90(x, -1, (2, 3))`), `shear` is parallel to the x axis
(torchvision's `shear=[s, 0]`), `scale < 1` shrinks the image; nearest interpolation, black (0)
fill outside the source image. PatchUp drew these with `RandomAffine` on the test images.

Scale conventions (PROTOCOLS.md §4): `torchvision` (default) — scale 0.6 shrinks the content
(zoom out); `zoom` — Manifold Mixup's `Zoom(0.6)`, which samples the input on a grid scaled by 0.6
and so magnifies (zoom in): the same as torchvision scale 1 / 0.6.

Randomness: the parameter of image i is drawn from `per_index.uniforms(seed, stream, [i])`, so it
depends only on (seed, transform kind, image index). All magnitudes of one kind share the draw
u_i (angle = (2 u_i - 1) * max): common random numbers across the sets of a kind.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from corruptions.per_index import uniforms

TRANSFORMS = ("rotation", "shear", "scale")
SCALE_CONVENTIONS = ("torchvision", "zoom")
_STREAM = {"rotation": 0x526F74, "shear": 0x536872}  # per-kind random streams ("Rot", "Shr")


def inverse_matrices(angle: np.ndarray, scale: np.ndarray, shear: np.ndarray) -> np.ndarray:
    """(N, 2, 3) output->input maps in pixel units centred on the image centre (y down).

    The forward map is scale * R(angle) @ [[1, -tan(shear)], [0, 1]] (angles in degrees, R a
    clockwise rotation on screen); its linear part has determinant scale**2, so the inverse is
    the adjugate divided by scale**2. No translation: the centre stays fixed.
    """
    rot, shr = np.radians(np.asarray(angle, np.float64)), np.radians(np.asarray(shear, np.float64))
    scale = np.asarray(scale, np.float64)
    cos, sin, tan = np.cos(rot), np.sin(rot), np.tan(shr)
    a, b = cos, -cos * tan - sin  # forward linear part / scale: [[a, b], [c, d]], det 1
    c, d = sin, -sin * tan + cos
    zero = np.zeros_like(a * scale)
    return np.stack([np.stack([d / scale, -b / scale, zero], -1),
                     np.stack([-c / scale, a / scale, zero], -1)], -2)


def affine(images: torch.Tensor, angle: np.ndarray | float = 0.0, scale: np.ndarray | float = 1.0,
           shear: np.ndarray | float = 0.0) -> torch.Tensor:
    """Rotate / x-shear / scale each image of `images` (N, C, H, W) about its centre.

    `angle`, `shear` (degrees) and `scale` are scalars or one value per image; nearest
    interpolation, black fill. Equals torchvision's `affine(img, angle, [0, 0], scale,
    [shear, 0], NEAREST, fill=0)` applied image by image.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    n, _, height, width = images.shape
    angle, scale, shear = (np.broadcast_to(np.asarray(v, np.float64), (n,))
                           for v in (angle, scale, shear))
    if (scale <= 0).any():
        raise ValueError("scale must be positive")
    dtype = images.dtype if images.is_floating_point() else torch.float32
    theta = torch.as_tensor(inverse_matrices(angle, scale, shear), dtype=dtype,
                            device=images.device)
    # output pixel centres in centred pixel units, then (x, y) scaled to grid_sample's [-1, 1]
    xs = torch.arange(width, dtype=dtype, device=images.device) + (0.5 - width / 2)
    ys = torch.arange(height, dtype=dtype, device=images.device) + (0.5 - height / 2)
    base = torch.stack([xs.expand(height, width), ys[:, None].expand(height, width),
                        torch.ones((height, width), dtype=dtype, device=images.device)], -1)
    half = torch.tensor([width / 2, height / 2], dtype=dtype, device=images.device)
    grid = base.view(1, height * width, 3).expand(n, -1, -1).bmm(theta.transpose(1, 2) / half)
    return F.grid_sample(images.to(dtype), grid.view(n, height, width, 2), mode="nearest",
                         padding_mode="zeros", align_corners=False)


def affine_params(transform: str, magnitude: float, indices: np.ndarray, seed: int,
                  scale_convention: str = "torchvision"
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-image (angle, scale, shear) for one of PatchUp's sets, for images `indices`.

    `rotation`: angle ~ U(-magnitude, magnitude) degrees; `shear`: x-shear ~ U(-magnitude,
    magnitude) degrees; `scale`: the fixed factor `magnitude` under `scale_convention`.
    """
    if transform not in TRANSFORMS:
        raise ValueError(f"transform must be one of {', '.join(TRANSFORMS)}, got {transform!r}")
    if scale_convention not in SCALE_CONVENTIONS:
        raise ValueError(f"scale_convention must be one of {', '.join(SCALE_CONVENTIONS)}, "
                         f"got {scale_convention!r}")
    n = len(indices)
    angle, scale, shear = np.zeros(n), np.ones(n), np.zeros(n)
    if transform == "scale":
        if magnitude <= 0:
            raise ValueError(f"scale factor must be positive, got {magnitude}")
        scale[:] = magnitude if scale_convention == "torchvision" else 1.0 / magnitude
    else:
        if magnitude < 0:
            raise ValueError(f"{transform} range must be non-negative, got {magnitude}")
        draw = (2.0 * uniforms(seed, _STREAM[transform], indices)[:, 0] - 1.0) * magnitude
        (angle if transform == "rotation" else shear)[:] = draw
    return angle, scale, shear
