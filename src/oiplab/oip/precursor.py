"""The precursor search (article X): coarse patterns as starts for maps that never respond to noise.

All `len(values) ** (grid * grid)` images with one of a few grey values per cell of a coarse grid
(3 values on 3x3 = 19,683) are upsampled bicubically to 28x28 and standardized like the training
data. A short ascent (the *screen*) ranks them per map, and the best few go on to a full ascent.

Exact shortcut: for a ReLU layer, a (candidate, map) pair whose objective is 0 at the start has an
input gradient of exactly 0 (every pre-activation of the map is <= 0), so it can never move and its
screen loss stays 0. One forward pass over all candidates finds those pairs for every map at once;
only the others are ascended. The ranking is unchanged (tested against the unpruned screen).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from oiplab.data.prepared import Standardization
from oiplab.oip.engine import AscentSettings, ascend
from oiplab.oip.init import upsample_bicubic
from oiplab.oip.objectives import Objectives
from oiplab.oip.step import make_step


def coarse_grids(grid: int, values: Sequence[float]) -> np.ndarray:
    """Every (grid, grid) array whose cells take one of `values`: (len(values)**(grid*grid), g, g).

    Candidate i spells i in base len(values), cell (0, 0) being the most significant digit.
    """
    cells = grid * grid
    n = len(values) ** cells
    digits = (np.arange(n)[:, None] // len(values) ** np.arange(cells - 1, -1, -1)) % len(values)
    out = np.asarray(values, dtype=np.float32)[digits].reshape(n, grid, grid)
    if len(out) != len(values) ** cells:  # the count the method promises
        raise AssertionError(f"{len(out)} candidates, expected {len(values)}**{cells}")
    return out


def candidate_images(grid: int, values: Sequence[float], stats: Standardization) -> np.ndarray:
    """(N, 28, 28, 1) standardized candidate start images."""
    return stats.apply(upsample_bicubic(coarse_grids(grid, values)))[..., None]


@dataclass
class ScreenResult:
    top_candidates: np.ndarray  # (M, k) candidate indices, best first
    top_losses: np.ndarray  # (M, k) their objective after the screen
    responding: np.ndarray  # (M,) candidates with a non-zero objective at the start
    ascended_pairs: int  # (candidate, map) pairs that were actually ascended


def objectives_for(
    pairs_map: np.ndarray, onehot_all: np.ndarray, spatial: np.ndarray
) -> Objectives:
    return Objectives(
        pairs_map,
        onehot_all[pairs_map],
        np.broadcast_to(spatial, (len(pairs_map), *spatial.shape)).copy(),
    )


def screen(
    probe,
    candidates: np.ndarray,
    maps: np.ndarray,
    n_steps: int,
    top_k: int,
    settings: AscentSettings,
    *,
    prune: bool = True,
    progress: Callable[[str], None] | None = print,
) -> ScreenResult:
    """Short ascent of every candidate for every map; the top_k candidates per map by loss.

    The channel objective (a map's mean activation) is used, as in the article. Ties are broken
    towards the lower candidate index, so pruned and unpruned screens select the same candidates.
    """
    n_maps_layer = int(probe.output.shape[-1])
    h, w = (1, 1) if len(probe.output.shape) == 2 else tuple(probe.output.shape[1:3])
    onehot_all = np.eye(n_maps_layer, dtype=np.float32)
    spatial = np.full((h, w), 1.0 / (h * w), dtype=np.float32)
    n = len(candidates)
    losses = np.zeros((len(maps), n), dtype=np.float32)
    if prune:
        start_loss = _mean_activation(probe, candidates, settings.chunk_size)[:, maps].T
        live = start_loss > 0  # (M, N): the only pairs that can move
    else:
        live = np.ones((len(maps), n), dtype=bool)
    m_idx, c_idx = np.nonzero(live)
    if progress is not None:
        progress(
            f"[precursor] screen: {len(maps)} maps x {n} candidates, {len(m_idx)} pairs "
            f"ascended ({n_steps} steps), {live.size - len(m_idx)} pruned exactly"
        )
    if len(m_idx):
        step = make_step(probe, settings.epsilon)
        short = AscentSettings(
            epsilon=settings.epsilon,
            n_epochs=n_steps,
            conv_criterion=0.0,
            stop_on_convergence=False,
            n_snapshots=0,
            chunk_size=settings.chunk_size,
        )
        result = ascend(
            probe,
            candidates[c_idx],
            objectives_for(maps[m_idx], onehot_all, spatial),
            short,
            progress=None,
            step=step,
        )
        losses[m_idx, c_idx] = result.loss
    order = np.argsort(-losses, axis=1, kind="stable")[:, :top_k]
    return ScreenResult(
        order, np.take_along_axis(losses, order, axis=1), live.sum(axis=1), len(m_idx)
    )


def _mean_activation(probe, images: np.ndarray, batch: int) -> np.ndarray:
    """(N, n_maps) mean activation of every map for every image (one forward pass)."""
    out = np.asarray(probe.predict(images, batch_size=batch, verbose=0), dtype=np.float32)
    return out.reshape(len(out), -1, out.shape[-1]).mean(axis=1)


def relu_layer(probe) -> bool:
    """Whether the probe's output is a ReLU's, directly or through max pooling (the condition
    under which a zero objective implies a zero input gradient, i.e. exact pruning)."""
    import keras

    layer = probe.layers[-1]
    while isinstance(layer, keras.layers.MaxPooling2D):
        layer = layer.input._keras_history.operation
    return getattr(layer, "activation", None) is keras.activations.relu


def variant_similarity(images: np.ndarray, valid: np.ndarray) -> float:
    """Mean pairwise Pearson correlation between a map's OIP variants (valid ones only)."""
    if valid.sum() < 2:
        return float("nan")
    flat = images[valid].reshape(int(valid.sum()), -1)
    corr = np.corrcoef(flat)
    return float(corr[np.triu_indices(len(flat), 1)].mean())
