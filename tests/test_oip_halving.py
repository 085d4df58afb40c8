"""Successive halving of starts and the wake-up of silent maps, on tiny networks (known answers)."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest

from oiplab.config import ConfigError
from oiplab.oip.engine import AscentSettings, _rung_survivors, ascend
from oiplab.oip.objectives import channel_objectives
from oiplab.oip.survey import survey
from tests.conftest import compose_typed
from tests.test_oip import _starts, pattern, tiny_network

OFF = AscentSettings(epsilon=0.05, n_steps=30, convergence_tol=0.0, n_snapshots=4, chunk_size=64)
HALVING = replace(OFF, halving_after=5, halving_keep=2, halving_group=4)


def graded_starts(pat: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """n starts of growing alignment with `pat` (start k: k / n of it in noise), so their
    objective ranks them: the last start is the best."""
    noise = _starts(n, seed)[..., 0]
    noise = noise / np.linalg.norm(noise, axis=(1, 2), keepdims=True)
    mix = [(1 - k / n) * noise[k] + (k / n) * pat for k in range(n)]
    return (np.stack(mix) * 28.0)[..., None].astype(np.float32)


def two_maps():
    """Two maps, four starts each: map 0 likes the diagonal, map 1 the blob."""
    model = tiny_network([pattern("diagonal"), pattern("blob")])
    starts = np.concatenate(
        [graded_starts(pattern("diagonal"), 4), graded_starts(pattern("blob"), 4)]
    )
    return model, starts, channel_objectives(np.repeat([0, 1], 4), (1, 1, 2))


def test_ranking_keeps_the_best_candidates_of_each_group():
    group = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    loss = np.array([3.0, 9.0, 5.0, 9.0, 1.0, 2.0, 8.0, 7.0])
    candidate = np.array([True, True, True, True, True, False, True, True])
    kept = _rung_survivors(group, loss, candidate, n_keep=2)
    # group 0: the two 9s (a tie, both kept); group 1: 8 and 7 (2.0 is no candidate anyway)
    assert kept.tolist() == [False, True, False, True, False, False, True, True]
    # a tie at the cut goes to the earlier element
    tie = _rung_survivors(np.zeros(3, int), np.array([1.0, 4.0, 4.0]), np.ones(3, bool), 1)
    assert tie.tolist() == [False, True, False]


def test_halving_keeps_each_maps_best_starts_and_stops_the_rest_at_the_rung():
    model, starts, obj = two_maps()
    full = ascend(model, starts, obj, OFF, progress=None)
    halved = ascend(model, starts, obj, HALVING, progress=None)
    rung = full.loss_history[:, 5].reshape(2, 4)
    assert (np.argsort(rung, axis=1)[:, -2:] == [2, 3]).all()  # the known ranking held
    assert halved.halted.reshape(2, 4).tolist() == [[True, True, False, False]] * 2
    assert halved.steps.reshape(2, 4).tolist() == [[5, 5, 30, 30]] * 2
    # dropped starts keep their rung image and loss; the history ends there
    stopped = halved.halted
    np.testing.assert_allclose(halved.loss[stopped], rung[:, :2].ravel(), rtol=1e-5)
    assert np.isnan(halved.loss_history[stopped, 6:]).all()
    assert not halved.converged[stopped].any()
    # the kept starts ascend on as before, so each map's best start and its loss are unchanged
    np.testing.assert_allclose(halved.loss[~stopped], full.loss[~stopped], rtol=1e-4)
    best = halved.loss.reshape(2, 4).max(axis=1)
    np.testing.assert_allclose(best, full.loss.reshape(2, 4).max(axis=1), rtol=1e-4)


def test_halving_off_is_the_old_loop_bit_for_bit():
    model, starts, obj = two_maps()
    old = ascend(model, starts, obj, OFF, progress=None)
    for off in (
        replace(HALVING, halving_after=0),  # the config's 0
        replace(HALVING, halving_keep=4),  # keep every start: nothing to drop
        replace(HALVING, halving_after=30),  # the rung at or after the last step
    ):
        new = ascend(model, starts, obj, off, progress=None)
        for name in ("images", "loss", "steps", "converged", "silent", "snapshots"):
            np.testing.assert_array_equal(getattr(new, name), getattr(old, name), err_msg=name)
        np.testing.assert_array_equal(new.loss_history, old.loss_history)
        assert not new.halted.any()
    # with halving on, the steps up to the rung are the same steps, bit for bit
    halved = ascend(model, starts, obj, HALVING, progress=None)
    np.testing.assert_array_equal(halved.loss_history[:, :6], old.loss_history[:, :6])


def test_halving_chunks_whole_groups_and_rejects_a_ragged_batch():
    model, starts, obj = two_maps()
    whole = ascend(model, starts, obj, HALVING, progress=None)
    chunked = ascend(model, starts, obj, replace(HALVING, chunk_size=3), progress=None)
    assert chunked.halted.tolist() == whole.halted.tolist()  # a chunk of 3 holds one group of 4
    with pytest.raises(ValueError, match="do not form groups of halving_group=4"):
        ascend(model, starts[:7], obj.take(np.arange(7)), HALVING, progress=None)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["oip.halving_keep=9"], "oip.halving_keep"),  # more than the 8 starts
        (["oip.n_starts=1"], "oip.halving_keep"),  # keep 2 of 1 start
        (["oip.halving_keep=0"], "oip.halving_keep"),
        (["oip.warmup_steps=10"], "oip.halving_after"),
    ],
)
def test_halving_settings_are_checked_against_the_starts(overrides, key):
    with pytest.raises(ConfigError, match=re.escape(f"'{key}'")):
        compose_typed("oip.halving_after=100", *overrides)


def test_halving_settings_that_fit_compose():
    assert compose_typed().oip.halving_after == 0  # off by default (conf/oip/default.yaml says why)
    assert compose_typed("oip.n_starts=1", "oip.halving_keep=5").oip.n_starts == 1  # off: unchecked
    assert compose_typed("oip.halving_after=100", "oip.halving_keep=8").oip.halving_keep == 8
    assert compose_typed("oip.warmup_steps=10").oip.warmup_steps == 10


def test_wake_wakes_a_silent_map_and_leaves_the_others_alone():
    """Map 0 responds to noise; map 1 (bias -10) is silent on noise but its pre-activation can be
    raised above 10; map 2 is dead (zero weights, bias -1) and stays silent."""
    model = tiny_network([pattern("diagonal"), pattern("blob")], dead=1)
    conv = model.get_layer("maps")
    kernel, bias = conv.get_weights()
    conv.set_weights([kernel, np.array([5.0, -10.0, -1.0], np.float32)])
    base = compose_typed("experiment=smoke").oip.model_copy(
        update={"layer": "maps", "n_starts": 2, "n_steps": 30, "convergence_tol": 0.0}
    )
    starts = _starts(2, seed=4)
    plain = survey(model, base, (1, 1, 3), starts, progress=None)
    woke = survey(model, base.model_copy(update={"wake_steps": 40}), (1, 1, 3), starts, None)
    assert plain.census()["n_with_oip"] == 1 and plain.census()["n_silent"] == 2
    assert (woke.loss > 0).any(axis=1).tolist() == [True, True, False]
    assert woke.woken.reshape(3, 2).any(axis=1).tolist() == [False, True, False]
    assert woke.metrics()["n_woken"] == 1 and woke.census()["n_silent"] == 1
    np.testing.assert_array_equal(woke.result.images[:2], plain.result.images[:2])  # map 0
    np.testing.assert_array_equal(woke.loss[0], plain.loss[0])
