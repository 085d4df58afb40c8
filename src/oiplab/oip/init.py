"""Start images: random fluctuations on several length scales, summed with weights (article IX).

Each scale is a grid of uniform random values in [0, 1] (3x3, 7x7, 14x14, 28x28 by default),
upsampled bicubically to 28x28; long-range fluctuations matter because a deep map often does not
respond to pixel-level noise at all. The weighted sum, optionally smoothed, is put on the [0, 1]
pixel scale.

Every synthetic input is then brought to one brightness and contrast, `ImageTarget`: the mean and
standard deviation of a typical training image, in network units (`to_target`). Without that,
each start would keep the mean and contrast the noise happened to give it, the ascent (which
re-standardizes to the start's own numbers) would keep them too, and the best of several starts
would mostly be the most contrasted one. Variants: `dark` starts keep only the brightest part of
the fluctuations on a dark background (as digits are), `digits` starts are real test images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from scipy import ndimage

from oiplab.checks import TooFewImagesError
from oiplab.data.prepared import ImageTarget, Standardization

IMAGE_SIZE = 28


@cache
def bicubic_matrix(g: int, size: int = IMAGE_SIZE) -> np.ndarray:
    """(size, g) matrix A with resize(v) = A @ v for PIL's bicubic resize of a length-g signal.

    Bicubic resizing is linear and separable, so a (g, g) grid G resizes to A @ G @ A.T; building
    A once from PIL's own kernel lets a whole batch of grids be upsampled in one einsum.
    """
    from PIL import Image

    columns = []
    for k in range(g):
        basis = np.zeros((1, g), dtype=np.float32)
        basis[0, k] = 1.0
        row = Image.fromarray(basis, mode="F").resize((size, 1), Image.Resampling.BICUBIC)
        columns.append(np.asarray(row, dtype=np.float64)[0])
    return np.stack(columns, axis=1)


def upsample_bicubic(grids: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """Upsample (n, g, g) value grids to (n, size, size) bicubically."""
    g = grids.shape[1]
    if g == size:
        return grids.astype(np.float32)
    a = bicubic_matrix(g, size)
    return np.einsum("ij,njk,lk->nil", a, grids, a, optimize=True).astype(np.float32)


def to_unit_range(images: np.ndarray) -> np.ndarray:
    """Min-max each image onto [0, 1] (a constant image becomes 0.5)."""
    lo = images.min(axis=(1, 2), keepdims=True)
    span = images.max(axis=(1, 2), keepdims=True) - lo
    return np.where(span > 0, (images - lo) / np.where(span > 0, span, 1.0), 0.5).astype(np.float32)


def multiscale_noise(
    n: int, grids: Sequence[int], weights: Sequence[float], seed: int, smoothing: float = 0.0
) -> np.ndarray:
    """(n, 28, 28) fluctuation images on the [0, 1] pixel scale, reproducible in `seed`."""
    if len(grids) != len(weights):
        raise ValueError(f"{len(grids)} grid sizes but {len(weights)} weights")
    rng = np.random.default_rng(seed)
    total = np.zeros((n, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    for g, w in zip(grids, weights, strict=True):
        values = rng.random((n, g, g))  # drawn even for weight 0, so a seed means the same noise
        if w:
            total += w * upsample_bicubic(values)
    if smoothing > 0:
        total = ndimage.gaussian_filter(total, sigma=(0, smoothing, smoothing))
    return to_unit_range(total)


def to_target(images: np.ndarray, target: ImageTarget) -> np.ndarray:
    """Give every image (n, 28, 28) the target's mean and standard deviation (network units);
    a constant image becomes the target mean."""
    x = np.asarray(images, dtype=np.float64)
    mean = x.mean(axis=(1, 2), keepdims=True)
    std = x.std(axis=(1, 2), keepdims=True)
    scaled = np.where(std > 0, (x - mean) / np.where(std > 0, std, 1.0), 0.0)
    return (scaled * target.std + target.mean).astype(np.float32)


def darken(images01: np.ndarray, quantile: float) -> np.ndarray:
    """Keep each image's brightest `1 - quantile` of pixels above a flat dark background."""
    cut = np.quantile(images01, quantile, axis=(1, 2), keepdims=True)
    return np.clip(images01 - cut, 0.0, None)


@dataclass(frozen=True)
class NoiseScales:
    """The multiscale noise of the starts (article IX): grid sizes, their weights, smoothing."""

    grids: Sequence[int]  # fluctuation grid sizes, each upsampled bicubically to 28x28
    weights: Sequence[float]  # one per grid size
    smoothing: float = 0.0  # Gaussian sigma in pixels over the sum (0: none)


def start_images(
    n: int,
    scales: NoiseScales,
    seed: int,
    stats: Standardization,
    target: ImageTarget | None = None,
    dark_quantile: float | None = None,
) -> np.ndarray:
    """(n, 28, 28, 1) start images for the ascent, in network units.

    With `target`, every image is brought to its mean and std (see the module docstring);
    without, images keep their own (the global standardization only), as in the articles.
    `dark_quantile` darkens all but the brightest part of each image first.
    """
    images01 = multiscale_noise(n, scales.grids, scales.weights, seed, scales.smoothing)
    if dark_quantile is not None:
        images01 = darken(images01, dark_quantile)
    if target is None:
        return stats.apply(images01)[..., None]
    return to_target(images01, target)[..., None]


def digit_starts(x_test: np.ndarray, n: int, seed: int, target: ImageTarget) -> np.ndarray:
    """(n, 28, 28, 1) real test images as starts (drawn from the last half of the test split,
    away from the probe images the comparison uses), brought to the target."""
    pool = np.arange(len(x_test) // 2, len(x_test))
    if n > len(pool):
        raise TooFewImagesError(
            f"config key 'oip.n_starts': {n} digit starts asked for, the second half of the test "
            f"set holds {len(pool)}; set oip.n_starts to at most {len(pool)}"
        )
    pick = np.random.default_rng(seed).choice(pool, size=n, replace=False)
    return to_target(x_test[pick, ..., 0], target)[..., None]
