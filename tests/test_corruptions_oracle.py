"""Generated corruptions vs the `imagecorruptions` 1.1.2 oracle on the ImageNet table.

`imagecorruptions` is a test-only reference (pip install imagecorruptions==1.1.2; it pulls
opencv-python); the module is skipped without it. Its PyPI release breaks on this stack, so the
fixture patches around it at test time only (`fixtures_corruptions.load_imagecorruptions`).

Random corruptions are compared "for the same noise": `LegacyRandom` replays NumPy's global
stream, which `imagecorruptions` draws from, through the `Generator` methods our code calls, so
both consume identical random numbers and must agree pixel for pixel (within one grey level).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from fixtures_corruptions import load_imagecorruptions
from PIL import Image

from corruptions.generate import corrupt
from corruptions.weather import load_frost_textures

if importlib.util.find_spec("imagecorruptions") is None:
    pytest.skip("imagecorruptions 1.1.2 (test-only oracle) is not installed",
                allow_module_level=True)
cv2 = pytest.importorskip("cv2")
skimage_data = pytest.importorskip("skimage.data")

SEVERITIES = (1, 2, 3, 4, 5)


class LegacyRandom:
    """The `numpy.random.Generator` methods our corruptions call, drawn from NumPy's legacy
    global stream (what `imagecorruptions` uses)."""

    def normal(self, loc=0.0, scale=1.0, size=None):
        return np.random.normal(loc, scale, size)

    def uniform(self, low=0.0, high=1.0, size=None):
        return np.random.uniform(low, high, size)

    def poisson(self, lam=1.0, size=None):
        return np.random.poisson(lam, size)

    def integers(self, low, high=None, size=None):
        return np.random.randint(low, high, size)

    def random(self, size=None):
        return np.random.random_sample(size)


@pytest.fixture(scope="module")
def oracle():
    """`imagecorruptions.corruptions`, importable and working on NumPy 2 / scikit-image 0.26."""
    with pytest.MonkeyPatch.context() as patch:
        yield load_imagecorruptions(patch)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A 224 x 224 crop of scikit-image's astronaut photograph (uint8 RGB)."""
    return np.ascontiguousarray(skimage_data.astronaut()[40:264, 150:374])


def _reference(oracle, name: str, image: np.ndarray, severity: int, seed: int = 0
               ) -> np.ndarray:
    np.random.seed(seed)
    return np.uint8(getattr(oracle, name)(Image.fromarray(image), severity))


def _ours(name: str, image: np.ndarray, severity: int, seed: int = 0, **kwargs) -> np.ndarray:
    np.random.seed(seed)
    return corrupt(image[None], name, severity, "imagenet", rngs=[LegacyRandom()], **kwargs)[0]


def _assert_close(ours: np.ndarray, reference: np.ndarray, max_diff: int, max_share: float
                  ) -> None:
    diff = np.abs(ours.astype(int) - reference.astype(int))
    assert diff.max() <= max_diff, f"max difference {diff.max()} grey levels"
    assert np.mean(diff > 0) <= max_share, f"{np.mean(diff > 0):.2%} of values differ"


# Measured on this stack (astronaut crop, severities 1-5): every one of these is identical to
# the oracle, value for value; the assertions keep that (0 grey levels, 0 values differing).
DETERMINISTIC = ["defocus_blur", "zoom_blur", "brightness", "contrast", "pixelate",
                 "jpeg_compression", "gaussian_blur", "saturate"]
SAME_NOISE = ["gaussian_noise", "shot_noise", "speckle_noise", "glass_blur", "motion_blur",
              "fog"]


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_deterministic_corruptions_match_pixel_for_pixel(oracle, photo, name) -> None:
    for severity in SEVERITIES:
        extra = {"pixelate_upsample": "nearest"} if name == "pixelate" else {}
        _assert_close(_ours(name, photo, severity, **extra),
                      _reference(oracle, name, photo, severity), 0, 0.0)


@pytest.mark.parametrize("name", SAME_NOISE)
def test_random_corruptions_match_for_the_same_noise(oracle, photo, name) -> None:
    for severity in SEVERITIES:
        _assert_close(_ours(name, photo, severity, seed=severity),
                      _reference(oracle, name, photo, severity, seed=severity), 0, 0.0)


# Snow constants (loc, scale, zoom, threshold, blur radius, blur sigma, blend) of the reference
# generators: make_imagenet_c.py (= imagecorruptions) and make_cifar_c.py.
SNOW = {"imagenet": [(0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
                     (0.55, 0.3, 4, 0.9, 12, 8, 0.7), (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
                     (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55)],
        "cifar": [(0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
                  (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9), (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
                  (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)]}


def _reference_snow(oracle, image: np.ndarray, c: tuple, seed: int) -> np.ndarray:
    """Hendrycks' snow (make_cifar_c.py / make_imagenet_c.py): the zoomed layer centre-trimmed
    to the image *before* the motion blur, with imagecorruptions' ImageMagick-free blur."""
    np.random.seed(seed)
    x = image.astype(np.float32) / 255.0
    h, w = x.shape[:2]
    layer = np.random.normal(size=(h, w), loc=c[0], scale=c[1])
    layer = oracle.clipped_zoom(layer[..., None], c[2])  # oversized: trim as the reference
    top, left = (layer.shape[0] - h) // 2, (layer.shape[1] - w) // 2
    layer = layer[top:top + h, left:left + w]
    layer[layer < c[3]] = 0
    layer = oracle._motion_blur(np.clip(layer.squeeze(), 0, 1), radius=c[4], sigma=c[5],
                                angle=np.random.uniform(-135, -45))
    layer = (np.round(layer * 255).astype(np.uint8) / 255.0)[..., None]
    grey = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)[..., None]
    x = c[6] * x + (1 - c[6]) * np.maximum(x, grey * 1.5 + 0.5)
    return np.uint8(np.clip(x + layer + np.rot90(layer, k=2), 0, 1) * 255)


@pytest.mark.parametrize("table", ["imagenet", "cifar"])
def test_snow_matches_the_reference_for_the_same_noise(oracle, photo, table) -> None:
    """Every severity, both tables: at CIFAR's zoom 2.25 the zoomed layer is two pixels too
    big, and trimming it after the blur (imagecorruptions) instead of before shifts the flakes."""
    image = photo if table == "imagenet" else photo[::7, ::7][:32, :32]
    for severity in SEVERITIES:
        np.random.seed(severity)
        ours = corrupt(image[None], "snow", severity, table, rngs=[LegacyRandom()])[0]
        reference = _reference_snow(oracle, image, SNOW[table][severity - 1], severity)
        # float32 vs float64 blending: one grey level on a few values
        _assert_close(ours, reference, 1, 0.01)


def test_frost_textures_are_rescaled_as_opencv_does(oracle) -> None:
    """cv2.resize(fx=scale) maps coordinates by 1 / scale, not by the ratio of the rounded sizes
    (frost4, 527 x 350 -> 105 x 70 at CIFAR's 0.2, differed by up to 128 levels that way)."""
    from corruptions.weather import _resize

    folder = Path(oracle.__file__).parent / "frost"
    for path in sorted(folder.iterdir()):
        texture = np.ascontiguousarray(cv2.imread(str(path))[..., ::-1])
        for scale, side in ((0.2, 32), (0.3, 64), (1.0, 224)):
            reference = cv2.resize(texture, (0, 0), fx=scale, fy=scale)
            ours = _resize(texture, scale, side, side)
            assert ours.shape == reference.shape
            # OpenCV's 8-bit path uses 11-bit fixed-point weights: one level at most
            _assert_close(ours, reference, 0 if scale in (0.2, 1.0) else 1, 0.2)


def test_mud_spatter_matches_for_the_same_noise(oracle, photo) -> None:
    for severity in (4, 5):  # mud; water (1-3) uses OpenCV's Canny: compared in distribution
        # measured: 1 grey level on 0.006 % / 0.012 % of values (OpenCV vs NumPy float32 ops)
        _assert_close(_ours("spatter", photo, severity, seed=severity),
                      _reference(oracle, "spatter", photo, severity, seed=severity), 1, 0.001)


def test_impulse_noise_and_water_spatter_match_in_distribution(oracle, photo) -> None:
    inner = np.clip(photo, 1, 254)  # no value is 0 or 255 before the noise
    for severity, amount in zip(SEVERITIES, (.03, .06, .09, .17, .27), strict=True):
        ours = corrupt(np.repeat(inner[None], 4, 0), "impulse_noise", severity, "imagenet")
        ref = np.stack([_reference(oracle, "impulse_noise", inner, severity, seed)
                        for seed in range(4)])
        for out in (ours, ref):
            flipped = np.isin(out, (0, 255)).mean()  # binomial, n = 602,112 values
            assert flipped == pytest.approx(amount, abs=0.003)
            assert (out == 255).mean() == pytest.approx(amount / 2, abs=0.003)
    for severity in (1, 2, 3):
        change = [np.abs(_ours("spatter", photo, severity, seed).astype(int) - photo).mean()
                  for seed in range(6)]
        ref = [np.abs(_reference(oracle, "spatter", photo, severity, seed).astype(int)
                      - photo).mean() for seed in range(6)]
        assert np.mean(change) == pytest.approx(np.mean(ref), rel=0.35)


def test_frost_with_the_reference_textures_matches_in_distribution(oracle, photo) -> None:
    folder = Path(oracle.__file__).parent / "frost"
    textures = load_frost_textures(folder)
    for severity in (1, 3, 5):
        ours = corrupt(np.repeat(photo[None], 12, 0), "frost", severity, "imagenet",
                       frost_textures=textures).astype(float)
        ref = np.stack([_reference(oracle, "frost", photo, severity, seed)
                        for seed in range(12)]).astype(float)
        assert ours.mean() == pytest.approx(ref.mean(), abs=8)
        assert ours.std() == pytest.approx(ref.std(), rel=0.15)


def test_elastic_matches_a_second_implementation_with_opencv(photo) -> None:
    """Hendrycks' elastic transform written with OpenCV's affine warp and scikit-image's
    Gaussian (the reference's calls), fed the same random numbers."""
    from scipy.ndimage import map_coordinates
    from skimage.filters import gaussian

    def reference(image: np.ndarray, alpha: float, sigma: float, shift: float) -> np.ndarray:
        unit = image.astype(np.float32) / 255
        h, w = unit.shape[:2]
        middle, third = np.float32([h, w]) // 2, min(h, w) // 3
        src = np.float32([middle + third, [middle[0] + third, middle[1] - third],
                          middle - third])
        dst = src + np.random.uniform(-shift, shift, size=src.shape).astype(np.float32)
        warped = cv2.warpAffine(unit, cv2.getAffineTransform(src, dst), (w, h),
                                borderMode=cv2.BORDER_REFLECT_101)
        fields = [(gaussian(np.random.uniform(-1, 1, size=(h, w)), sigma, mode="reflect",
                            truncate=3) * alpha).astype(np.float32) for _ in range(2)]
        rows, cols = np.mgrid[:h, :w]
        out = np.stack([map_coordinates(warped[..., k], [rows + fields[1], cols + fields[0]],
                                        order=1, mode="reflect") for k in range(3)], -1)
        return np.uint8(np.clip(out, 0, 1) * 255)

    constants = [(2, .7, .1), (2, .08, .2), (.05, .01, .02), (.07, .01, .02), (.12, .01, .02)]
    for severity, c in zip(SEVERITIES, constants, strict=True):
        np.random.seed(severity)
        expected = reference(photo, *(v * 244 for v in c))
        # measured: at most 1 grey level on <= 0.004 % of values (OpenCV's fixed-point warp)
        _assert_close(_ours("elastic_transform", photo, severity, seed=severity), expected,
                      1, 0.001)
