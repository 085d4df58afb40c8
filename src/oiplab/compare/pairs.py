"""Everything measured between two networks on the same probe images, layer by layer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from oiplab.compare.correlation import Units, cross_correlation
from oiplab.compare.matching import hungarian, margins, match_live
from oiplab.compare.stats import per_image_moments


@dataclass
class LayerMatch:
    """One layer of one pair of networks (a, b)."""

    corr: np.ndarray  # (n_a, n_b) activation correlation of every map pair
    live_a: np.ndarray  # (n_a,) not constant over the probe images
    live_b: np.ndarray  # (n_b,)
    partner: np.ndarray  # (n_a,) live-to-live one-to-one partner in b, -1: none
    perm: np.ndarray  # (n_a,) a full permutation (dead maps too), to re-order b's weights
    margin: np.ndarray  # (n_a,) a match's lead over its next-best candidate (NaN: no match)
    stable: np.ndarray  # (n_a,) the same partner when matched on either half of the images
    moments: np.ndarray | None  # (n_images, 5, n_matched) for resampling images (see stats)

    @property
    def matched(self) -> np.ndarray:
        return np.flatnonzero(self.partner >= 0)

    @property
    def r(self) -> np.ndarray:
        """Matched correlation of each live-to-live match, in the order of `matched`."""
        return self.corr[self.matched, self.partner[self.matched]]

    def decisive(self, tolerance: float) -> np.ndarray:
        """Matched maps whose margin exceeds `tolerance` (a flip needs more than float noise)."""
        m = self.matched
        return m[self.margin[m] > tolerance]


def match_layer(
    a: Units | np.ndarray, b: Units | np.ndarray, with_moments: bool = True, halves: bool = True
) -> LayerMatch:
    """Match one layer's maps of networks a and b from their outputs on the same images.

    Args:
        a, b: the layer's `Units` (or its outputs, (n_images, h, w, maps) or (n_images, maps)).
        with_moments: keep per-image sums of the matched maps for resampling images.
        halves: also match on each half of the images (for `stable`; all False otherwise).
    """
    a = a if isinstance(a, Units) else Units.of(a)
    b = b if isinstance(b, Units) else Units.of(b)
    corr = cross_correlation(a, b)
    live_a, live_b = ~a.dead, ~b.dead
    partner = match_live(corr, live_a, live_b)
    stable = np.zeros(len(partner), dtype=bool)
    if halves:
        fits = [
            match_live(cross_correlation(a.half(second), b.half(second)), live_a, live_b)
            for second in (False, True)
        ]
        stable = (partner >= 0) & (fits[0] == partner) & (fits[1] == partner)
    moments = None
    if with_moments:
        m = np.flatnonzero(partner >= 0)
        shape = (a.n_images, a.positions, len(m))
        moments = per_image_moments(
            a.values[:, m].reshape(shape), b.values[:, partner[m]].reshape(shape)
        )
    return LayerMatch(
        corr=corr,
        live_a=live_a,
        live_b=live_b,
        partner=partner,
        perm=hungarian(corr),
        margin=margins(corr, partner, live_a, live_b),
        stable=stable,
        moments=moments,
    )


def matched_r(a: Units, b: Units) -> np.ndarray:
    """The matched r of `match_layer(a, b).r` (the same numbers), without its permutation,
    margins, halves or moments: where only the matched correlations are needed."""
    corr = cross_correlation(a, b)
    partner = match_live(corr, ~a.dead, ~b.dead)
    matched = np.flatnonzero(partner >= 0)
    return corr[matched, partner[matched]]
