"""Unit tests with known answers for `compare/oip_response.py` (partner ranks, response rates,
shift-tolerant pixel similarity) and `compare/dynamics.py` (the alignment over training on a
trajectory whose answer is known), and CKA on data that is not centred."""

from __future__ import annotations

import numpy as np
import pytest

from oiplab.compare.cka import centered_gram, debiased_cka, linear_cka
from oiplab.compare.oip_response import (
    full_layer,
    partner_ranks,
    pixel_similarity,
    response_rates,
    shift_tolerant_similarity,
)


def test_partner_ranks_count_the_live_maps_scaled_above_the_partner():
    responses = np.array([[4.0, 1.0, 9.0, 2.0], [1.0, 6.0, 3.0, 0.5]])
    typical = np.array([2.0, 1.0, 0.0, 4.0])  # map 2 is dead: never ranked, however it responds
    partner = np.array([0, 3])
    # row 0 scaled: 2, 1, -, 0.5 -> partner 0 first; row 1: 0.5, 6, -, 0.125 -> partner 3 last
    assert partner_ranks(responses, typical, partner, np.array([0, 1])).tolist() == [0, 2]


def test_response_rates_known_values_and_chance():
    rng = np.random.default_rng(0)
    n = 10
    responses = np.eye(n) + 0.01 * rng.random((n, n))  # each OIP drives its own index most
    typical = np.ones(n)
    rates = response_rates(responses, typical, np.arange(n), np.arange(n))
    assert rates["n"] == n and rates["top1"] == 1.0 and rates["top5"] == 1.0
    assert rates["top1_chance"] == pytest.approx(0.1) and rates["top5_chance"] == 0.5
    # a random live partner, averaged over every live map exactly: chance when nothing ties
    assert rates["top1_random"] == pytest.approx(0.1) and rates["top5_random"] == 0.5
    wrong = response_rates(responses, typical, np.roll(np.arange(n), 1), np.arange(n))
    assert wrong["top1"] == 0.0
    assert response_rates(responses, np.zeros(n), np.arange(n), np.arange(n)) == {}


def test_shift_tolerant_similarity_finds_a_shifted_copy():
    rng = np.random.default_rng(1)
    a = rng.random((3, 2, 28, 28))
    b = np.roll(a, (1, -2), axis=(-2, -1))  # every OIP moved by (1, -2) pixels
    sim = shift_tolerant_similarity(a, b)
    assert sim.shape == (2, 3, 3)
    np.testing.assert_allclose(np.diagonal(sim, axis1=1, axis2=2), 1.0)
    assert (sim[:, ~np.eye(3, dtype=bool)] < 0.5).all()
    far = np.roll(a, 4, axis=-1)  # beyond the 2-pixel tolerance
    assert (np.diagonal(shift_tolerant_similarity(a, far), axis1=1, axis2=2) < 0.9).all()


def test_pixel_similarity_partners_against_others_and_full_layer():
    rng = np.random.default_rng(2)
    a = rng.random((3, 2, 28, 28))
    found = np.ones((3, 2), dtype=bool)
    out = pixel_similarity(a, a[[2, 0, 1]], found, found, np.array([1, 2, 0]), np.arange(3))
    assert out["partners"] == pytest.approx(1.0) and out["others"] < 0.5
    assert out["n_partner_pairs"] == 6  # 3 partners x 2 starts
    none = np.zeros((3, 2), dtype=bool)
    assert pixel_similarity(a, a, none, found, np.arange(3), np.arange(3)) == {}
    spread = full_layer(np.array([1, 3]), np.array([[1.0, 2.0], [3.0, 4.0]]), 5)
    assert spread.tolist() == [[0, 0], [1, 2], [0, 0], [3, 4], [0, 0]]


def test_cka_centres_data_that_is_not_centred():
    """Offsets in every feature leave CKA unchanged (the Gram is double-centred); without the
    centring the same data would give another value (the check that the test can fail)."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(60, 20))
    y = x[:, :10] @ rng.normal(size=(10, 15)) + rng.normal(size=(60, 15))
    base = linear_cka(centered_gram(x), centered_gram(y))
    shifted = linear_cka(centered_gram(x + 5.0), centered_gram(y - 3.0))
    assert shifted == pytest.approx(base, abs=1e-5)  # float32 Gram products
    raw = linear_cka((x + 5.0) @ (x + 5.0).T, (y - 3.0) @ (y - 3.0).T)
    assert abs(raw - base) > 0.05
    raw_d = debiased_cka((x + 5.0) @ (x + 5.0).T, (y - 3.0) @ (y - 3.0).T)
    assert raw_d == pytest.approx(debiased_cka(x @ x.T, y @ y.T))
    noise = rng.normal(size=(60, 50))
    assert (
        abs(debiased_cka(x @ x.T, noise @ noise.T))
        < 0.1
        < linear_cka(centered_gram(x), centered_gram(noise))
    )


def test_alignment_over_training_on_a_trajectory_with_a_known_answer():
    """Two seeds that are one network: at step 0 a permuted copy of the final network (every
    map partnered with its final self, none at its final index), then the final network."""
    from oiplab.compare.dynamics import (
        AlignmentSettings,
        TrainingSnapshots,
        alignment_over_training,
    )
    from oiplab.compare.weights import permute
    from tests.test_compare import _derangements, _net

    net = _net(3)
    final = net.get_weights()
    start = permute(final, _derangements(net, np.random.default_rng(0)))
    layers = ["Conv2D_1", "Dense_1"]
    snaps = TrainingSnapshots({0: [start, final], 1: [start, final]}, [0, 10], 10)
    settings = AlignmentSettings(layers, 0.95, 1e-4, 200, 100, 0)
    probe = np.random.default_rng(5).normal(size=(40, 28, 28, 1)).astype(np.float32)
    nulls = [_net(100 + k) for k in range(3)]
    out = alignment_over_training(net, snaps, nulls, probe, settings, progress=None)
    assert out.epochs == [0.0, 1.0]
    for n in layers:
        c = out.layers[n]
        assert [e.value for e in c.final_partnered] == [1.0, 1.0], n
        assert [e.value for e in c.final_same_index] == [0.0, 1.0], n
        assert [e.value for e in c.partnered] == [1.0, 1.0], n  # the two seeds are identical
        assert all(s["p_value"] < 0.01 for s in c.same_index), n
    records = out.records()
    assert len(records) == 4 and records[0]["layer"] == "Conv2D_1"
