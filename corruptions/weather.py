"""Weather corruptions: snow, frost, fog, brightness, and spatter (an extra corruption).

Inputs uint8 (N, H, W, C), the resolved severity constant, one generator per image; output
floats in [0, 255]. Grey images (C = 1) are corrupted as three equal channels and returned as
their luma, since these corruptions mix colour.

Frost textures: the reference generators blend photographs of frost shipped with them, whose
licence is not stated (the `imagecorruptions` package is Apache-2.0 but gives no source for its
six images), so none are shipped here. `load_frost_textures(folder)` reads such photographs
(the first five files in name order, as the references draw `randint(5)` from six files);
without one, `synthetic_frost_textures()` draws five seeded frost-like textures (a plasma
background with crystal needles, bluish, means 120-200 grey levels like the photographs). Frost
made with synthetic textures is an approximation of ImageNet-C's frost, and is named so in a
generated set's manifest.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from corruptions import ops

FROST_SEED = 20190412  # fixed: the synthetic textures are part of the generator's definition
TEXTURE_SUFFIXES = (".png", ".jpg", ".jpeg")


def plasma_fractal(rng: np.random.Generator, size: int, decay: float) -> np.ndarray:
    """A (size, size) diamond-square height map in [0, 1]; `size` a power of two.

    Each refinement sets square centres, then the two diamond lattices, to the mean of their 4
    neighbours (wrapping around) plus wibble * U(-wibble, wibble); wibble starts at 100 and is
    divided by `decay` per level (larger decay: smoother fog). Draw order as in the reference.
    """
    if size < 1 or size & (size - 1):
        raise ValueError(f"plasma map size must be a power of two, got {size}")
    grid = np.zeros((size, size))
    step, wibble = size, 100.0
    while step >= 2:
        half = step // 2

        def noisy(total: np.ndarray, wibble: float = wibble) -> np.ndarray:
            return total / 4 + wibble * rng.uniform(-wibble, wibble, total.shape)

        corners = grid[0::step, 0::step]
        square = corners + np.roll(corners, -1, axis=0)
        square = square + np.roll(square, -1, axis=1)
        grid[half::step, half::step] = noisy(square)
        centres, corners = grid[half::step, half::step], grid[0::step, 0::step]
        grid[0::step, half::step] = noisy((centres + np.roll(centres, 1, axis=0))
                                          + (corners + np.roll(corners, -1, axis=1)))
        grid[half::step, 0::step] = noisy((centres + np.roll(centres, 1, axis=1))
                                          + (corners + np.roll(corners, -1, axis=0)))
        step //= 2
        wibble /= decay
    grid -= grid.min()
    return grid / grid.max()


def _next_power_of_two(value: int) -> int:
    return 1 if value <= 1 else 2 ** (value - 1).bit_length()


def fog(x: np.ndarray, c: tuple, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """Add strength * plasma fractal (wibble decay c[1]), rescaled so the maximum is kept."""
    strength, decay = c
    h, w, channels = x.shape[1:]
    size = _next_power_of_two(max(h, w, channels))
    out = np.empty(x.shape)
    for i, rng in enumerate(rngs):
        unit = x[i] / 255.0
        peak = unit.max()
        unit = unit + strength * plasma_fractal(rng, size, decay)[:h, :w, None]
        out[i] = np.clip(unit * peak / (peak + strength), 0, 1) * 255
    return out


def brightness(x: np.ndarray, c: float, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """Add c to the HSV value channel."""
    hsv = ops.rgb_to_hsv(ops.to_rgb(x) / 255.0)
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    return ops.like_input(np.clip(ops.hsv_to_rgb(hsv), 0, 1) * 255, x.shape[-1])


def snow(x: np.ndarray, c: tuple, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """Snow flakes (thresholded zoomed Gaussian noise, motion-blurred at U(-135, -45) degrees,
    added twice: as is and rotated 180 degrees) over a whitened, blended image. The zoomed
    layer is centre-trimmed to the image before the blur, as in the reference generators
    (`imagecorruptions` blurs the oversized layer and keeps its top-left corner instead, which
    shifts the flakes by a pixel at CIFAR's zoom 2.25)."""
    loc, scale, zoom, threshold, radius, sigma, blend = c
    rgb = (ops.to_rgb(x) / 255.0).astype(np.float32)
    h, w = rgb.shape[1:3]
    out = np.empty(rgb.shape)
    grey = (rgb @ ops.LUMA.astype(np.float32))[..., None]
    base = blend * rgb + (1 - blend) * np.maximum(rgb, grey * 1.5 + 0.5)
    for i, rng in enumerate(rngs):
        layer = rng.normal(size=(h, w), loc=loc, scale=scale)
        layer = ops.clipped_zoom(layer[None, :, :, None], zoom)[0, :, :, 0]
        layer[layer < threshold] = 0
        layer = ops.motion_blur_one(np.clip(layer, 0, 1), radius, sigma,
                                    rng.uniform(-135, -45))
        layer = (np.round(layer * 255).astype(np.uint8) / 255.0)[:, :, None]
        out[i] = np.clip(base[i] + layer + np.rot90(layer, k=2), 0, 1) * 255
    return ops.like_input(out, x.shape[-1])


def frost(x: np.ndarray, c: tuple, rngs: Sequence[np.random.Generator],
          textures: FrostTextures | None = None) -> np.ndarray:
    """c[0] * image + c[1] * a random crop of a random frost texture rescaled by c[2]."""
    image_weight, frost_weight, texture_scale = c
    h, w = x.shape[1:3]
    scaled = (textures or default_frost_textures()).scaled(texture_scale, h, w)
    rgb = ops.to_rgb(x).astype(np.float64)
    out = np.empty(rgb.shape)
    for i, rng in enumerate(rngs):
        texture = scaled[rng.integers(len(scaled))]
        top = rng.integers(0, texture.shape[0] - h)
        left = rng.integers(0, texture.shape[1] - w)
        crop = texture[top:top + h, left:left + w]
        out[i] = np.clip(image_weight * rgb[i] + frost_weight * crop, 0, 255)
    return ops.like_input(out, x.shape[-1])


class FrostTextures:
    """Frost textures (uint8 RGB arrays) and their copies rescaled per (scale, image size).

    `source` names where they come from (a folder, or "synthetic")."""

    def __init__(self, textures: Sequence[np.ndarray], source: str) -> None:
        self.textures = list(textures)
        self.source = source
        self._scaled: dict[tuple[float, int, int], list[np.ndarray]] = {}

    def scaled(self, scale: float, h: int, w: int) -> list[np.ndarray]:
        """The textures resized by `scale` (bilinear, half-pixel centres, no antialiasing:
        OpenCV's INTER_LINEAR), enlarged further where needed to exceed h x w."""
        key = (scale, h, w)
        if key not in self._scaled:
            self._scaled[key] = [_resize(t, scale, h, w) for t in self.textures]
        return self._scaled[key]


def _resize(texture: np.ndarray, scale: float, h: int, w: int) -> np.ndarray:
    """`texture` (H, W, C) resized by `scale` as `cv2.resize(fx=scale, fy=scale)` does
    (bilinear, half-pixel centres, source coordinate = (i + 0.5) / scale - 0.5, output size
    round(H * scale)), enlarged further where needed to exceed h x w."""
    th, tw = texture.shape[:2]
    factor = max(scale, (h + 1) / th, (w + 1) / tw)
    rows = _linear_taps(th, max(h + 1, round(th * factor)), factor)
    cols = _linear_taps(tw, max(w + 1, round(tw * factor)), factor)
    pixels = texture.astype(np.float64)
    pixels = rows[2][:, None, None] * pixels[rows[1]] + (1 - rows[2])[:, None, None] \
        * pixels[rows[0]]
    pixels = cols[2][None, :, None] * pixels[:, cols[1]] + (1 - cols[2])[None, :, None] \
        * pixels[:, cols[0]]
    return np.clip(np.rint(pixels), 0, 255)


def _linear_taps(size: int, out: int, factor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV's INTER_LINEAR taps along one axis: (lower index, upper index, upper weight)."""
    source = (np.arange(out) + 0.5) / factor - 0.5
    low = np.floor(source).astype(np.int64)
    weight = source - low
    weight[low < 0] = 0.0
    low = np.clip(low, 0, size - 1)
    weight[low >= size - 1] = 0.0
    return low, np.minimum(low + 1, size - 1), weight


@functools.cache
def default_frost_textures() -> FrostTextures:
    """The synthetic textures (shared, rescaled copies cached)."""
    return FrostTextures(synthetic_frost_textures(), "synthetic")


def load_frost_textures(folder: Path | str) -> FrostTextures:
    """The first five images (name order) of a folder of frost photographs, uint8 RGB."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in TEXTURE_SUFFIXES)[:5]
    if not files:
        raise ValueError(f"{folder}: no frost texture images (.png, .jpg)")
    return FrostTextures([np.asarray(Image.open(p).convert("RGB")) for p in files], str(folder))


@functools.cache
def synthetic_frost_textures(count: int = 5, size: int = 512) -> tuple[np.ndarray, ...]:
    """`count` seeded frost-like uint8 RGB textures of size x size (see the module doc)."""
    textures = []
    for index in range(count):
        rng = np.random.default_rng([FROST_SEED, index])
        background = plasma_fractal(rng, size, 1.6)
        canvas = Image.new("L", (size, size))
        draw = ImageDraw.Draw(canvas)
        for _ in range(1400):  # ice needles with short side branches
            y0, x0 = rng.uniform(0, size, 2)
            angle, length = rng.uniform(0, 2 * np.pi), rng.uniform(4, 40)
            y1, x1 = y0 + length * np.sin(angle), x0 + length * np.cos(angle)
            draw.line([(x0, y0), (x1, y1)], fill=int(rng.integers(90, 256)), width=1)
            for t in rng.uniform(0.2, 0.9, 2):
                side = angle + rng.choice([-1, 1]) * np.pi / 3
                yb, xb = y0 + t * (y1 - y0), x0 + t * (x1 - x0)
                draw.line([(xb, yb), (xb + 0.3 * length * np.cos(side),
                                      yb + 0.3 * length * np.sin(side))],
                          fill=int(rng.integers(60, 200)), width=1)
        needles = ndimage.gaussian_filter(np.asarray(canvas, np.float64) / 255, 0.6)
        level = 0.35 + 0.3 * index / max(count - 1, 1)
        grey = np.clip(level + 0.25 * (background - 0.5) + 0.9 * needles, 0, 1)
        tint = np.array([0.85, 0.93, 1.0])
        textures.append(np.clip(grey[..., None] * tint * 255 + 12, 0, 255).astype(np.uint8))
    return tuple(textures)


def spatter(x: np.ndarray, c: tuple, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """Water drops (pale turquoise, embossed edges; c[5] = 0) or mud (brown blobs; c[5] = 1)
    from thresholded blurred Gaussian noise N(c[0], c[1]^2), blur sigma c[2], threshold c[3];
    c[4] is the water intensity, or the mud blur sigma.

    Mud follows the reference operation by operation. Water edges use a Canny detector written
    here (Sobel L1 gradient, non-maximum suppression, hysteresis 50 / 150) and an exact
    Euclidean distance transform where the reference calls OpenCV: the same in distribution.
    """
    loc, scale, sigma, threshold, intensity, mud = c
    rgb = (ops.to_rgb(x) / 255.0).astype(np.float32)
    h, w = rgb.shape[1:3]
    noise = np.stack([rng.normal(size=(h, w), loc=loc, scale=scale) for rng in rngs])
    liquid = ops.gaussian(noise, sigma)  # (N, H, W)
    liquid[liquid < threshold] = 0
    if mud:
        mask = ops.gaussian((liquid > threshold).astype(np.float32), intensity)[..., None]
        mask[mask < 0.8] = 0
        dimmed = (rgb * (1 - mask)).astype(np.float32)  # the reference scales in place
        out = np.clip(dimmed + np.array([63, 42, 20]) / 255.0 * mask, 0, 1) * 255
    else:
        drops = _water(liquid)
        peak = drops.max(axis=(1, 2), keepdims=True)
        drops = np.divide(drops, peak, out=np.zeros_like(drops), where=peak > 0) * intensity
        colour = np.array([175, 238, 238]) / 255.0
        out = np.clip(rgb + drops[..., None] * colour, 0, 1) * 255
    return ops.like_input(out, x.shape[-1])


def _water(liquid: np.ndarray) -> np.ndarray:
    """(N, H, W) liquid layers (uint8 levels) times their embossed, equalized distance maps."""
    levels = (liquid * 255).astype(np.uint8)
    edges = _canny(levels.astype(np.float64), 50, 150)
    if edges.any():  # distances never cross images: the image axis is stretched far apart
        dist = ndimage.distance_transform_edt(~edges, sampling=(1e6, 1, 1))
    else:
        dist = np.full(levels.shape, 20.0)
    dist = _box3(np.minimum(dist, 20)).astype(np.uint8)
    dist = _equalize(dist)
    emboss = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], np.float64)
    dist = np.clip(np.rint(ops.filter2d(dist[..., None].astype(np.float64), emboss)[..., 0]),
                   0, 255)
    dist = np.rint(_box3(dist)).astype(np.float32)
    return levels.astype(np.float32) * dist


def _box3(images: np.ndarray) -> np.ndarray:
    """3 x 3 mean filter of (N, H, W), border reflect-101."""
    return ops.filter2d(images[..., None].astype(np.float64), np.full((3, 3), 1 / 9))[..., 0]


def _equalize(images: np.ndarray) -> np.ndarray:
    """Histogram equalization of each uint8 (H, W) image of (N, H, W) (first occupied level ->
    0, last -> 255; a single-level image is left as it is)."""
    n = len(images)
    hist = np.bincount((images.reshape(n, -1) + 256 * np.arange(n)[:, None]).ravel(),
                       minlength=256 * n).reshape(n, 256)
    first = np.argmax(hist > 0, axis=1)
    first_count = hist[np.arange(n), first][:, None]
    total = images[0].size
    with np.errstate(divide="ignore", invalid="ignore"):
        lut = np.rint((np.cumsum(hist, axis=1) - first_count) * 255.0 / (total - first_count))
    lut = np.clip(np.nan_to_num(lut), 0, 255)
    lut[np.arange(256)[None, :] <= first[:, None]] = 0
    single = (first_count[:, 0] == total)
    lut[single] = np.arange(256)
    return np.take_along_axis(lut, images.reshape(n, -1).astype(np.int64), axis=1) \
        .reshape(images.shape).astype(np.uint8)


def _canny(images: np.ndarray, low: float, high: float) -> np.ndarray:
    """Boolean edge maps of (N, H, W): Sobel L1 gradient (border reflect-101), non-maximum
    suppression in four directions, hysteresis (8-connected, within each image)."""
    smooth, derive = np.array([1.0, 2.0, 1.0]), np.array([-1.0, 0.0, 1.0])
    gx = ndimage.correlate1d(ndimage.correlate1d(images, smooth, axis=1, mode="mirror"),
                             derive, axis=2, mode="mirror")
    gy = ndimage.correlate1d(ndimage.correlate1d(images, smooth, axis=2, mode="mirror"),
                             derive, axis=1, mode="mirror")
    magnitude = np.abs(gx) + np.abs(gy)
    padded = np.pad(magnitude, ((0, 0), (1, 1), (1, 1)))
    h, w = images.shape[1:]
    ax, ay = np.abs(gx), np.abs(gy)

    def neighbour(dy: int, dx: int) -> np.ndarray:
        return padded[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]

    horizontal, vertical = ay <= ax * np.tan(np.pi / 8), ay > ax * np.tan(3 * np.pi / 8)
    rising = gx * gy > 0
    before = np.where(horizontal, neighbour(0, -1), np.where(
        vertical, neighbour(-1, 0), np.where(rising, neighbour(-1, -1), neighbour(-1, 1))))
    after = np.where(horizontal, neighbour(0, 1), np.where(
        vertical, neighbour(1, 0), np.where(rising, neighbour(1, 1), neighbour(1, -1))))
    peaks = (magnitude > before) & (magnitude >= after) & (magnitude > low)
    within_image = np.zeros((3, 3, 3), bool)
    within_image[1] = True
    labels, count = ndimage.label(peaks, structure=within_image)
    if count == 0:
        return peaks
    strong = np.zeros(count + 1, bool)
    strong[np.unique(labels[peaks & (magnitude > high)])] = True
    strong[0] = False
    return strong[labels]
