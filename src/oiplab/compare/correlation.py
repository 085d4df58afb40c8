"""Correlation between every map of one network and every map of another over a probe set.

A layer's output is first turned into `Units` once per network (each map standardized over all
images and positions); correlating two networks is then one matrix product.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DEAD_STD = 1e-8  # a map whose output varies less than this over the probe set counts as dead


@dataclass
class Units:
    """One layer's output over the probe images: a column per map, a row per (image, position)."""

    values: np.ndarray  # (samples, maps) as computed
    z: np.ndarray  # (samples, maps) float64, each live map standardized; dead maps are 0
    dead: np.ndarray  # (maps,) constant over the probe set
    n_images: int
    _halves: dict[bool, Units] = field(default_factory=dict, repr=False, compare=False)
    _gram: np.ndarray | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, layer_output: np.ndarray) -> Units:
        """From (n, h, w, maps) or (n, maps) outputs (an (n, maps) array counts as n images)."""
        values = layer_output.reshape(-1, layer_output.shape[-1])
        # The centred copy serves both the standard deviation and z (the operations of
        # `np.std`, in its order, so the numbers are those of `(x - mean) / x.std()`).
        z = values.astype(np.float64)
        z -= z.mean(axis=0)
        std = np.sqrt(np.square(z).sum(axis=0) / len(z))
        dead = std < DEAD_STD
        z /= np.where(dead, 1.0, std)
        z[:, dead] = 0.0
        return cls(values, z, dead, len(layer_output))

    @property
    def gram(self) -> np.ndarray:
        """(maps, maps) correlations of the maps with each other (0 for a dead map), computed
        once: the rotation null and the sibling rate of every pair read it."""
        if self._gram is None:
            self._gram = self.z.T @ self.z / len(self.z)
        return self._gram

    @property
    def positions(self) -> int:
        return len(self.values) // self.n_images

    def half(self, second: bool) -> Units:
        """The first or second half of the images, standardized on their own (computed once:
        a network takes part in several pairs)."""
        if second not in self._halves:
            self._halves[second] = self._half(second)
        return self._halves[second]

    def without_halves(self) -> Units:
        """The same units without their halves (kept for later pairs whose stability is not
        needed, they would double the memory)."""
        return Units(self.values, self.z, self.dead, self.n_images, _gram=self._gram)

    def _half(self, second: bool) -> Units:
        cut = (self.n_images // 2) * self.positions
        rows = slice(cut, None) if second else slice(0, cut)
        n = self.n_images - self.n_images // 2 if second else self.n_images // 2
        return Units.of(self.values[rows].reshape(n, self.positions, -1))


def cross_correlation(a: Units | np.ndarray, b: Units | np.ndarray) -> np.ndarray:
    """Pearson correlation (n_maps_a, n_maps_b); pairs with a dead map are 0, never NaN."""
    a = a if isinstance(a, Units) else Units.of(a)
    b = b if isinstance(b, Units) else Units.of(b)
    return np.clip(a.z.T @ b.z / len(a.z), -1.0, 1.0)
