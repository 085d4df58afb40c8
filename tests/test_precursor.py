"""The precursor search: candidates, the exact pruning shortcut, top-k, and a map that only a
coarse pattern can wake."""

from __future__ import annotations

import numpy as np
import pytest

from oiplab.data.prepared import Standardization
from oiplab.oip.engine import AscentSettings, ascend
from oiplab.oip.init import NoiseScales, start_images
from oiplab.oip.objectives import channel_objectives
from oiplab.oip.precursor import (
    SearchSettings,
    candidate_images,
    coarse_grids,
    relu_layer,
    screen,
    variant_similarity,
)

STATS = Standardization(mean=0.1307, std=0.3081)
GRID = (1, 1, 2)  # the coarse-only network's output: two 1x1 maps
SETTINGS = AscentSettings(
    epsilon=0.05, n_steps=40, convergence_tol=0.0, n_snapshots=0, chunk_size=128
)


def _search(screen_steps: int, top_k: int, prune: bool = True) -> SearchSettings:
    return SearchSettings(screen_steps, top_k, full_steps=0, prune=prune, ascent=SETTINGS)


def test_candidate_count_values_and_standardization():
    grids = coarse_grids(3, (0.2, 0.5, 0.8))
    assert grids.shape == (3**9, 3, 3)
    assert len({g.tobytes() for g in grids}) == 3**9  # all distinct
    assert set(np.unique(grids)) == {np.float32(0.2), np.float32(0.5), np.float32(0.8)}
    np.testing.assert_allclose(grids[0], 0.2)
    np.testing.assert_allclose(grids[-1], 0.8)
    images = candidate_images(2, (0.2, 0.8), STATS)
    assert images.shape == (16, 28, 28, 1)
    # a constant candidate is standardized exactly like a training pixel of that grey level
    np.testing.assert_allclose(images[0], (0.2 - STATS.mean) / STATS.std, rtol=1e-5)


def coarse_only_network(pattern01: np.ndarray, threshold: float):
    """Map 0 responds (ReLU) only when the image is close to a large-scale pattern; map 1 to any
    diagonal stripe noise; a max-pool keeps them ReLU-derived."""
    import keras

    p = pattern01 - pattern01.mean()
    p /= np.linalg.norm(p)
    r, c = np.mgrid[0:28, 0:28]
    fine = np.sin((r + c) * 1.3).astype(np.float32)
    fine -= fine.mean()
    fine /= np.linalg.norm(fine)
    kernel = np.stack([p, fine], axis=-1)[:, :, None, :].astype(np.float32)
    inputs = keras.Input((28, 28, 1))
    conv = keras.layers.Conv2D(2, 28, activation="relu")
    model = keras.Model(inputs, conv(inputs))
    conv.set_weights([kernel, np.array([-threshold, 0.5], np.float32)])
    return model


def _pattern():
    grid = np.array([[0.8, 0.2, 0.8], [0.2, 0.8, 0.2], [0.8, 0.2, 0.8]], dtype=np.float32)
    from oiplab.oip.init import upsample_bicubic

    return upsample_bicubic(grid[None])[0]


def test_pruned_screen_selects_the_same_candidates_as_the_unpruned_one():
    model = coarse_only_network(_pattern(), threshold=8.0)
    assert relu_layer(model)
    candidates = candidate_images(3, (0.2, 0.5, 0.8), STATS)[::7]  # 2,812 candidates
    maps = np.array([0, 1])
    pruned = screen(model, candidates, maps, GRID, _search(3, 5, prune=True), progress=None)
    full = screen(model, candidates, maps, GRID, _search(3, 5, prune=False), progress=None)
    np.testing.assert_array_equal(pruned.top_candidates, full.top_candidates)
    np.testing.assert_allclose(pruned.top_losses, full.top_losses, rtol=1e-5, atol=1e-6)
    assert pruned.ascended_pairs < full.ascended_pairs == 2 * len(candidates)
    # top-k really are the k largest screen losses, best first
    assert (np.diff(full.top_losses, axis=1) <= 0).all()


def test_coarse_only_map_is_found_by_the_precursor_but_not_from_fine_noise():
    pattern = _pattern()
    model = coarse_only_network(pattern, threshold=8.0)
    fine = NoiseScales((28,), (1.0,))  # pixel-level noise
    noise = start_images(16, fine, seed=0, stats=STATS)
    from_noise = ascend(
        model, noise, channel_objectives(np.zeros(16, int), (1, 1, 2)), SETTINGS, progress=None
    )
    assert from_noise.silent.all() and (from_noise.loss == 0).all()

    candidates = candidate_images(3, (0.2, 0.5, 0.8), STATS)
    result = screen(model, candidates, np.array([0]), GRID, _search(5, 4), progress=None)
    assert result.top_losses[0, 0] > 0
    best = coarse_grids(3, (0.2, 0.5, 0.8))[result.top_candidates[0, 0]]
    np.testing.assert_allclose(best, [[0.8, 0.2, 0.8], [0.2, 0.8, 0.2], [0.8, 0.2, 0.8]])
    full = ascend(
        model,
        candidates[result.top_candidates[0]],
        channel_objectives(np.zeros(4, int), (1, 1, 2)),
        SETTINGS,
        progress=None,
    )
    assert (full.loss > 0).any()


def test_variant_similarity():
    rng = np.random.default_rng(0)
    base = rng.random((28, 28))
    same = np.stack([base, base * 2 + 1, base])
    assert variant_similarity(same, np.ones(3, bool)) == pytest.approx(1.0)
    assert np.isnan(variant_similarity(same, np.array([True, False, False])))
