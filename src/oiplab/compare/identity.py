"""Does a *unit* recur, or only the subspace its layer spans? (Li et al. 2016; Kornblith et al.
2019.) A one-to-one match above the untrained networks' threshold shows learning; it does not
show that the same unit recurs. Three references separate the two readings:

- the rotation null: the same pair with network a's live units mixed by random orthogonal
  matrices (the same subspace, no privileged basis). Where the mixed units find partners as often
  as the real ones, the partnered fraction says "shared subspace", not "units recur";
- the sibling rate: how often a unit has a near-duplicate inside its own network (a redundant,
  low-dimensional code matches one-to-one easily);
- one-to-one r^2 against many-to-one R^2 on held-out images: a permuted copy gives both near 1, a
  rotated copy a low r^2 beside an R^2 near 1.

Rotations act on the *standardized* live units. Raw units differ in scale, and a rotation of raw
outputs would be dominated by the largest ones (a mixed unit would be mostly a copy of the loudest
unit, a privileged basis again); the matching is scale-free, so the standardized units are the
geometry it sees. Everything is computed from second moments (k x k matrices of live units), so
no rotated copy of the (up to 676,000-row) data is ever made; the held-out fits accumulate their
moments in row chunks of bounded size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from oiplab.compare.correlation import Units, cross_correlation
from oiplab.compare.matching import match_live


@dataclass(frozen=True)
class RotationNull:
    """Partnered fraction of one pair against the same pair with a's live units rotated."""

    real: float  # share of live-to-live matches with r above the threshold
    null: np.ndarray  # (draws,) the same share, a's live units mixed by Haar rotations
    threshold: float  # the partner threshold used (from the untrained networks)

    @property
    def p_value(self) -> float:
        """Share of rotations (+1 correction) whose fraction reaches the real one: small when the
        real units find partners more often than a basis-free copy of their subspace."""
        return (1 + int((self.null >= self.real).sum())) / (1 + len(self.null))


def haar_rotations(k: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """(draws, k, k) orthogonal matrices drawn uniformly (Haar): QR of a Gaussian matrix with the
    signs of R's diagonal moved into Q (without the fix the law is not uniform)."""
    q, r = np.linalg.qr(rng.standard_normal((draws, k, k)))
    return q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]


def _partnered(corr: np.ndarray, threshold: float) -> float:
    """Share of one-to-one (Hungarian, maximal total r) matches of corr with r > threshold."""
    rows, cols = linear_sum_assignment(corr, maximize=True)
    return float((corr[rows, cols] > threshold).mean()) if len(rows) else float("nan")


def rotation_null(
    a: Units,
    b: Units,
    threshold: float,
    draws: int,
    rng: np.random.Generator,
    corr: np.ndarray | None = None,
) -> RotationNull:
    """The rotation null of the partnered fraction for one pair of networks in one layer.

    Null hypothesis: network a shares b's subspace but not its units, i.e. a's standardized live
    units are an arbitrary orthogonal mixture of what they are. Each draw mixes them by a Haar
    rotation Q, re-standardizes the mixtures, matches them one-to-one to b's live units and
    counts the matches above `threshold`. A mixture y = z_a Q has covariance Q^T C_aa Q and
    cross-covariance Q^T C_ab with b's units, so r follows from the k x k moments alone.

    Args:
        a, b: the layer's units of the two networks on the same probe images.
        threshold: the partner threshold (a quantile of untrained pairs' matched r).
        draws: rotations.
        rng: draws the rotations.
        corr: `cross_correlation(a, b)` where the caller has it already (a pair's match).
    """
    corr = cross_correlation(a, b) if corr is None else corr
    partner = match_live(corr, ~a.dead, ~b.dead)
    matched = np.flatnonzero(partner >= 0)
    real = float((corr[matched, partner[matched]] > threshold).mean()) if len(matched) else np.nan
    live_a, live_b = np.flatnonzero(~a.dead), np.flatnonzero(~b.dead)
    c_aa = a.gram[np.ix_(live_a, live_a)]
    c_ab = corr[np.ix_(live_a, live_b)]
    null = np.full(draws, np.nan)
    if len(live_a) and len(live_b):
        q = haar_rotations(len(live_a), draws, rng)
        qt = np.swapaxes(q, 1, 2)
        cov = qt @ c_ab  # (draws, ka, kb) mixtures against b's units
        var = np.einsum("dik,dik->di", qt @ c_aa, qt)  # (draws, ka) mixtures' variances
        r = np.clip(cov / np.sqrt(np.maximum(var, 1e-300))[:, :, None], -1.0, 1.0)
        null = np.array([_partnered(r[d], threshold) for d in range(draws)])
    return RotationNull(real, null, threshold)


def sibling_rate(units: Units, threshold: float) -> float:
    """Share of a network's live units whose best *other* live unit of the same network
    correlates above `threshold` (NaN with fewer than two live units). A layer whose units come
    in near-duplicates reaches 1; independent units stay near 0."""
    live = np.flatnonzero(~units.dead)
    if len(live) < 2:
        return float("nan")
    corr = units.gram[np.ix_(live, live)]  # a copy: the diagonal below stays out of the cache
    np.fill_diagonal(corr, -np.inf)
    return float((corr.max(axis=1) > threshold).mean())


@dataclass(frozen=True)
class LinearFits:
    """One-to-one against many-to-one, fitted on some images and scored on the others."""

    one_to_one: float  # mean over a's live units of held-out r^2 with the partner matched on the
    #   fit images (0 for a unit left without a partner)
    many_to_one: float  # mean over a's live units of held-out R^2 of a least-squares map (with
    #   intercept) from all of b's live units; below 0 where the fit predicts worse than a mean
    per_unit_one: np.ndarray  # (n_live_a,) held-out r^2 (NaN: constant on the held-out images)
    per_unit_many: np.ndarray  # (n_live_a,) held-out R^2 (NaN: as above)
    n_fit_images: int
    n_held_out_images: int


def split_images(n_images: int, held_out: float, rng: np.random.Generator) -> np.ndarray:
    """(n_images,) True for the images to fit on, a random `held_out` share False. Images, not
    rows, are split: the positions of one image are not independent samples."""
    fit = np.ones(n_images, dtype=bool)
    fit[rng.choice(n_images, int(round(held_out * n_images)), replace=False)] = False
    return fit


def _moments(
    a: Units, b: Units, rows: np.ndarray, chunk_rows: int
) -> tuple[np.ndarray, np.ndarray]:
    """Means (ka + kb,) and covariance (ka + kb, ka + kb) of a's then b's live units over the
    selected rows, accumulated over chunks of `chunk_rows` rows (memory stays bounded)."""
    live_a, live_b = np.flatnonzero(~a.dead), np.flatnonzero(~b.dead)
    width = len(live_a) + len(live_b)
    sums, products, n = np.zeros(width), np.zeros((width, width)), 0
    for start in range(0, len(rows), chunk_rows):
        take = np.flatnonzero(rows[start : start + chunk_rows]) + start
        block = np.hstack([a.z[take][:, live_a], b.z[take][:, live_b]])
        sums += block.sum(axis=0)
        products += block.T @ block
        n += len(take)
    mean = sums / n
    return mean, products / n - np.outer(mean, mean)


def _correlation(cov: np.ndarray, ka: int) -> np.ndarray:
    """(ka, kb) correlations of a's units with b's from a joint covariance (0 for a constant)."""
    sd = np.sqrt(np.maximum(np.diag(cov), 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = cov[:ka, ka:] / np.outer(sd[:ka], sd[ka:])
    return np.clip(np.where(np.isfinite(r), r, 0.0), -1.0, 1.0)


def _one_to_one(cov_fit: np.ndarray, cov_held: np.ndarray, ka: int) -> np.ndarray:
    """(ka,) held-out r^2 of each of a's units with its partner matched on the fit rows (0 for a
    unit left without one: b has fewer live units)."""
    kb = len(cov_fit) - ka
    if not kb:
        return np.zeros(ka)
    partner = match_live(_correlation(cov_fit, ka), np.ones(ka, bool), np.ones(kb, bool))
    r = _correlation(cov_held, ka)[np.arange(ka), np.maximum(partner, 0)]
    return np.where(partner >= 0, np.square(r), 0.0)


Moments = tuple[np.ndarray, np.ndarray]  # (mean, covariance) of a's then b's live units


def _many_to_one(fit: Moments, held: Moments, ka: int) -> np.ndarray:
    """(ka,) held-out R^2 of the least-squares map (with intercept) from b's units to each of a's,
    from the (mean, covariance) of the fit rows and of the held-out rows."""
    (mean_f, cov_f), (mean_h, cov_h) = fit, held
    kb = len(cov_f) - ka
    beta = np.zeros((kb, ka))  # min-norm solution where b's units are collinear
    if kb:
        beta = np.linalg.lstsq(cov_f[ka:, ka:], cov_f[ka:, :ka], rcond=None)[0]
    alpha = mean_f[:ka] - mean_f[ka:] @ beta
    bias = mean_h[:ka] - alpha - mean_h[ka:] @ beta  # held-out mean residual
    var_y = np.diag(cov_h)[:ka]
    var_e = (
        var_y
        - 2 * (beta * cov_h[ka:, :ka]).sum(axis=0)
        + (beta * (cov_h[ka:, ka:] @ beta)).sum(axis=0)
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1.0 - (np.maximum(var_e, 0.0) + bias**2) / var_y


def _nanmean(x: np.ndarray) -> float:
    """Mean over the finite entries; NaN when there are none (without NumPy's warning)."""
    return float(np.nanmean(x)) if np.isfinite(x).any() else float("nan")


def linear_fits(
    a: Units, b: Units, fit_images: np.ndarray, chunk_rows: int = 1 << 15
) -> LinearFits:
    """One-to-one r^2 and many-to-one R^2 of a's live units from b's, scored on held-out images.

    The one-to-one partner of each of a's live units is the Hungarian match (maximal total r) on
    the fit images; its score is the squared correlation of the pair on the held-out images.
    The many-to-one map is least squares with an intercept from all of b's live units to one of
    a's, fitted on the fit images; its score is 1 - SSE / SST on the held-out images (SST about
    the held-out mean). Both come from second moments: the held-out SSE / n of the linear map is
    var(e) + mean(e)^2 with e = y - alpha - X beta, exactly as on the rows themselves. A unit
    constant on the held-out images has no score (NaN) and is left out of the means.

    Args:
        a, b: the layer's units of the two networks on the same probe images.
        fit_images: (n_images,) True for the images to fit on (`split_images`).
        chunk_rows: rows per block when accumulating moments.
    """
    fit_images = np.asarray(fit_images, dtype=bool)
    counts = int(fit_images.sum()), int((~fit_images).sum())
    ka = int((~a.dead).sum())
    if not ka:
        return LinearFits(np.nan, np.nan, np.zeros(0), np.zeros(0), *counts)
    fit_rows = np.repeat(fit_images, a.positions)
    fit = _moments(a, b, fit_rows, chunk_rows)
    held = _moments(a, b, ~fit_rows, chunk_rows)
    constant = np.diag(held[1])[:ka] < 1e-12
    one = np.where(constant, np.nan, _one_to_one(fit[1], held[1], ka))
    many = np.where(constant, np.nan, _many_to_one(fit, held, ka))
    return LinearFits(_nanmean(one), _nanmean(many), one, many, *counts)
