"""The precursor's shortcuts (`conf/precursor/`: screen_keep, halving_rungs): known answers for
what they keep, and their zero values reproducing the articles' search bit for bit."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from oiplab.data.prepared import Standardization
from oiplab.oip.engine import AscentSettings, ascend
from oiplab.oip.objectives import channel_objectives
from oiplab.oip.precursor import (
    SearchSettings,
    Shortcuts,
    best_per_row,
    candidate_images,
    screen,
    search,
)
from oiplab.oip.rungs import race, survivors

STATS = Standardization(mean=0.1307, std=0.3081)
ASCENT = AscentSettings(
    epsilon=0.05, n_steps=0, convergence_tol=2e-4, convergence_window=5, n_snapshots=0,
    chunk_size=64,
)  # fmt: skip


def test_survivors_keep_the_better_half_of_the_racing_candidates():
    loss = np.array(
        [
            [3.0, 1.0, 2.0, 0.5],  # best two of four
            [1.0, 1.0, 1.0, 1.0],  # ties: the better screen rank (lower column)
            [2.0, 0.0, 0.0, 0.0],  # 0 can never move again: not kept even with a free slot
            [5.0, 4.0, 3.0, 2.0],  # the first was dropped before: best ceil(3 / 2) = 2 of the rest
            [0.0, 0.0, -1.0, 0.0],  # nothing above 0: nothing stays
        ]
    )
    racing = np.ones_like(loss, dtype=bool)
    racing[3, 0] = False
    expected = [
        [True, False, True, False],
        [True, True, False, False],
        [True, False, False, False],
        [False, True, True, False],
        [False, False, False, False],
    ]
    np.testing.assert_array_equal(survivors(loss, racing), expected)
    one = survivors(np.array([[0.0, 0.0, 7.0]]), np.array([[False, False, True]]))
    np.testing.assert_array_equal(one, [[False, False, True]])  # a last one stays


def test_best_per_row_keeps_the_n_largest_ties_to_the_lower_column():
    values = np.array([[0.1, 0.5, 0.5, 0.2, 0.5], [0.0, 0.0, 0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(
        best_per_row(values, 2), [[False, True, True, False, False], [True, True] + [False] * 3]
    )
    assert best_per_row(values, 9).all()


def _conv_model(n_maps: int = 6):
    """A small ReLU conv network, seeded: some maps respond to coarse patterns, some do not."""
    import keras

    keras.utils.set_random_seed(3)
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(4, 5, strides=2, activation="relu")(inputs)
    x = keras.layers.Conv2D(n_maps, 3, strides=2, activation="relu")(x)
    model = keras.Model(inputs, x)
    weights = model.get_weights()
    weights[-1] = np.linspace(-0.6, 0.1, n_maps).astype(np.float32)  # some maps hard to wake
    model.set_weights(weights)
    return model


def _layer_shape(model) -> tuple[int, int, int]:
    return tuple(int(d) for d in model.output.shape[1:])  # type: ignore[return-value]


def test_race_without_rungs_is_the_single_ascent_bit_for_bit():
    model = _conv_model()
    shape = _layer_shape(model)
    starts = candidate_images(2, (0.2, 0.8), STATS)[:12]  # 3 maps x 4 candidates
    maps = np.repeat(np.array([1, 4, 5]), 4)
    objectives = channel_objectives(maps, shape)
    settings = replace(ASCENT, n_steps=60)
    old = ascend(model, starts, objectives, settings, progress=None)
    new = race(model, starts.reshape(3, 4, 28, 28, 1), objectives, settings, (), progress=None)
    assert np.array_equal(new.images.reshape(old.images.shape), old.images)
    assert np.array_equal(new.loss.ravel(), old.loss)
    assert np.array_equal(new.steps.ravel(), old.steps)
    assert (new.dropped_at == -1).all()


def test_race_halves_at_each_rung_and_the_best_goes_the_full_length():
    model = _conv_model()
    shape = _layer_shape(model)
    starts = candidate_images(2, (0.2, 0.8), STATS)  # 16 candidates, one map
    objectives = channel_objectives(np.full(16, 5), shape)
    settings = replace(ASCENT, n_steps=40, stop_on_convergence=False)
    full = ascend(model, starts, objectives, settings, progress=None)
    halved = race(model, starts[None], objectives, settings, (5, 10, 20), progress=None)
    racing = full.loss_history[:, 0] > 0
    assert racing.sum() >= 8  # enough candidates above 0 to halve three times
    # 16 -> 8 -> 4 -> 2 at steps 5, 10, 20 (of those above 0); the dropped stop at their rung
    dropped = halved.dropped_at[0]
    assert set(np.unique(dropped)) <= {-1, 5, 10, 20}
    for rung, before in ((5, racing.sum()), (10, -(-racing.sum() // 2))):
        assert (dropped == rung).sum() >= before - -(-before // 2)
    np.testing.assert_array_equal(halved.steps[0][dropped > 0], dropped[dropped > 0])
    finalists = np.flatnonzero(dropped == -1)
    assert 1 <= len(finalists) <= 2 and (halved.steps[0][finalists] == 40).all()
    # the ranking at each rung follows the loss: the single ascent's best at step 20 is a finalist
    at20 = np.where(np.isnan(full.loss_history[:, 20]), -np.inf, full.loss_history[:, 20])
    assert np.argmax(at20) in finalists
    # a candidate above 0 at the end of the single ascent is above 0 where the race left it
    assert ((halved.loss[0] > 0) >= (full.loss > 0)).all()
    np.testing.assert_allclose(halved.loss[0, finalists], full.loss[finalists], rtol=1e-3)


def test_race_rejects_rungs_that_are_not_increasing_and_never_reaches_those_past_the_end():
    model = _conv_model()
    starts = candidate_images(2, (0.2, 0.8), STATS)[None, :4]
    objectives = channel_objectives(np.full(4, 5), _layer_shape(model))
    settings = replace(ASCENT, n_steps=20)
    for rungs in ((10, 5), (5, 5), (0, 5)):
        with pytest.raises(ValueError, match="rungs"):
            race(model, starts, objectives, settings, rungs, progress=None)
    past = race(model, starts, objectives, settings, (20, 300), progress=None)
    none = race(model, starts, objectives, settings, (), progress=None)
    assert np.array_equal(past.images, none.images) and (past.dropped_at == -1).all()


def _settings(shortcuts: Shortcuts) -> SearchSettings:
    return SearchSettings(3, 4, 60, True, replace(ASCENT, chunk_size=128), shortcuts)


def test_the_zero_shortcuts_are_the_articles_search_bit_for_bit():
    """Shortcuts() against the search as written before them: screen, then one ascent."""
    model = _conv_model()
    shape = _layer_shape(model)
    candidates = candidate_images(3, (0.2, 0.5, 0.8), STATS)[::9]
    maps = np.arange(6)
    settings = _settings(Shortcuts())
    result = search(model, maps, candidates, shape, settings, progress=None)
    screened = screen(model, candidates, maps, shape, settings, progress=None)
    old = ascend(
        model,
        candidates[screened.top_candidates.ravel()],
        channel_objectives(np.repeat(maps, 4), shape),
        replace(settings.ascent, n_steps=60, n_snapshots=0),
        progress=None,
    )
    np.testing.assert_array_equal(result.top_candidates, screened.top_candidates)
    assert np.array_equal(result.images, old.images[..., 0].reshape(6, 4, 28, 28))
    assert np.array_equal(result.loss, old.loss.reshape(6, 4))


def test_screen_keep_screens_fewer_pairs_and_finds_the_same_maps():
    model = _conv_model()
    shape = _layer_shape(model)
    candidates = candidate_images(3, (0.2, 0.5, 0.8), STATS)[::9]
    maps = np.arange(6)
    everything = search(model, maps, candidates, shape, _settings(Shortcuts()), progress=None)
    kept = search(model, maps, candidates, shape, _settings(Shortcuts(8)), progress=None)
    assert 0 < kept.ascended_pairs <= 8 * len(maps) < everything.ascended_pairs
    assert 0 < everything.found.sum() < len(maps)  # the case tests something: some maps stay silent
    np.testing.assert_array_equal(kept.found, everything.found)
    halved = search(model, maps, candidates, shape, _settings(Shortcuts(8, (10, 30))), None)
    np.testing.assert_array_equal(halved.found, everything.found)
    assert halved.steps.sum() < kept.steps.sum()


def test_rescue_without_rungs_is_the_warmed_ascent_bit_for_bit_and_halving_keeps_its_maps():
    from oiplab.oip.rescue import RescueSettings, preactivation_probe, rescue, warmed_ascent

    model = _conv_model()
    shape, linear = _layer_shape(model), preactivation_probe(model, model.layers[-1].name)
    starts = candidate_images(2, (0.2, 0.8), STATS)[[0, 5, 10, 15]]
    maps = np.arange(6)
    ascent = replace(ASCENT, n_steps=40)
    old = warmed_ascent(
        model,
        linear,
        np.tile(starts, (6, 1, 1, 1)),
        channel_objectives(np.repeat(maps, 4), shape),
        ascent,
        warmup_steps=10,
        progress=None,
    )
    same = rescue(model, linear, maps, starts, shape, RescueSettings(ascent, 10), progress=None)
    assert np.array_equal(same.images, old.images[..., 0].reshape(6, 4, 28, 28))
    assert np.array_equal(same.loss, old.loss.reshape(6, 4))
    halved = rescue(model, linear, maps, starts, shape, RescueSettings(ascent, 10, (5, 20)), None)
    assert same.found.sum() > 0  # the warm-up wakes something here
    assert (halved.found >= same.found).all()
    # each map's best start keeps (nearly) the old best activation here
    rows = np.flatnonzero(same.found)
    best_old, best_new = same.loss.max(axis=1)[rows], halved.loss.max(axis=1)[rows]
    np.testing.assert_allclose(best_new, best_old, rtol=0.05)


def test_candidates_are_made_once_per_process_and_read_only():
    first = candidate_images(2, (0.2, 0.8), STATS)
    assert candidate_images(2, [0.2, 0.8], STATS) is first
    assert not first.flags.writeable
    with pytest.raises(ValueError):
        first[0, 0, 0, 0] = 1.0


def test_candidates_converged_before_the_first_rung_stop_there_as_in_the_single_ascent():
    """The early stop: the engine's windowed convergence ends a candidate for good; up to the
    first rung the race's batch is the single ascent's, so those candidates match it bit for bit."""
    model = _conv_model()
    shape = _layer_shape(model)
    starts = candidate_images(2, (0.2, 0.8), STATS)
    objectives = channel_objectives(np.full(16, 5), shape)
    settings = replace(ASCENT, n_steps=60, convergence_tol=0.05)  # a loose tolerance: early stops
    single = ascend(model, starts, objectives, settings, progress=None)
    early = (single.steps < 20) & single.converged
    assert early.sum() >= 2  # the case tests something
    raced = race(model, starts[None], objectives, settings, (20, 40), progress=None)
    np.testing.assert_array_equal(raced.steps[0][early], single.steps[early])
    assert np.array_equal(raced.images[0][early], single.images[early])
    assert np.array_equal(raced.loss[0][early], single.loss[early])
    assert (raced.dropped_at[0][early] == -1).all()  # stopped by convergence, not by the halving


def test_screen_keep_screens_exactly_the_best_at_the_start():
    from oiplab.oip.precursor import _mean_activation

    model = _conv_model()
    shape = _layer_shape(model)
    candidates = candidate_images(3, (0.2, 0.5, 0.8), STATS)[::9]
    every = _mean_activation(model, candidates, 512)
    maps = np.flatnonzero((every > 0).sum(axis=0) > 6)  # more above 0 than kept: the cut matters
    assert len(maps) >= 1
    start, live = every[:, maps].T, (every[:, maps] > 0).sum(axis=0)
    kept = screen(model, candidates, maps, shape, _settings(Shortcuts(6)), progress=None)
    assert kept.ascended_pairs == len(maps) * 6
    for row, chosen in enumerate(kept.top_candidates):
        best = np.argsort(-start[row], kind="stable")[:6]
        assert set(chosen) <= set(best)  # top_k 4 of the 6 screened, none from outside
    roomy = screen(model, candidates, maps, shape, _settings(Shortcuts(int(live.max()))), None)
    full = screen(model, candidates, maps, shape, _settings(Shortcuts()), progress=None)
    np.testing.assert_array_equal(roomy.top_candidates, full.top_candidates)
