"""The alignment over training (`compare.dynamics`): the self-alignment's chance level and exact
test with known answers, and Holm's adjustment per layer over the snapshots."""

from __future__ import annotations

import numpy as np
import pytest

from oiplab.compare.dynamics import Alignment, LayerCurves, self_alignment_test
from oiplab.compare.inference import exact_same_index_test
from oiplab.compare.pairs import match_layer
from oiplab.compare.summary import Estimate

N_MAPS, N_IMAGES = 16, 200


def _own_matches(kept: int, n_seeds: int = 3, seed: int = 0):
    """Each seed's snapshot against its final network, where the final network is the snapshot
    with all but its first `kept` maps relabelled (a derangement of the rest): `kept` maps sit
    at their final index, the others elsewhere."""
    rng = np.random.default_rng(seed)
    found = []
    for _ in range(n_seeds):
        x = rng.standard_normal((N_IMAGES, N_MAPS))
        rest = np.arange(kept, N_MAPS)
        order = np.concatenate([np.arange(kept), np.roll(rest, 1)])  # no fixed point in rest
        found.append(match_layer(x, x[:, order], False, False))
    return found


@pytest.mark.parametrize("kept", [N_MAPS, N_MAPS // 2, 0])
def test_the_self_alignment_counts_maps_at_their_final_index(kept):
    own = _own_matches(kept)
    test = self_alignment_test(own, N_MAPS)
    assert test.observed == 3 * kept and test.n_tested == 3 * N_MAPS
    assert test.expected == pytest.approx(3.0)  # chance: 1 / maps of the tested matches
    if kept >= N_MAPS // 2:
        assert test.p_value < 1e-9
    else:
        assert test.p_value == 1.0  # no map in place: P(X >= 0)


def test_the_self_alignment_of_relabelled_networks_is_at_chance_and_calibrated():
    """Random relabellings: the exact test rejects at about its level (bounded both sides)."""
    rng = np.random.default_rng(7)
    n_maps, rejections, tries = 8, 0, 400
    for _ in range(tries):
        pairs = [(np.arange(n_maps), rng.permutation(n_maps)) for _ in range(3)]
        rejections += exact_same_index_test(pairs, n_maps).p_value < 0.05
    # P(reject) <= 0.05 for a discrete exact test; binomial(400, <=0.05) stays below 35
    assert 3 <= rejections <= 35


def _curves(between_p: list[float], own_p: list[float]) -> LayerCurves:
    e = Estimate(0.5, 0.25, 0.75)
    n = len(between_p)
    tests = [exact_same_index_test([(np.arange(4), np.arange(4))], 32) for _ in own_p]
    tests = [t.__class__(**{**vars(t), "p_value": p}) for t, p in zip(tests, own_p, strict=True)]
    return LayerCurves(
        threshold=0.5,
        partnered=[e] * n,
        same_index=[
            {"observed": 1, "expected": 0.5, "p_value": p, "n_tested": 10} for p in between_p
        ],
        cka=[e] * n,
        final_partnered=[e] * n,
        final_same_index=[e] * n,
        final_test=tests,
    )


def test_holm_adjusts_each_layers_snapshots_and_keeps_the_unadjusted_values():
    curves = _curves([0.01, 0.04, 0.03], [1e-6, 0.02, 1e-30])
    records = Alignment([0, 10, 20], [0.0, 0.5, 1.0], {"Conv2D_1": curves}).records()
    assert [r["same_index_p"] for r in records] == [0.01, 0.04, 0.03]  # unadjusted, kept
    np.testing.assert_allclose([r["same_index_p_holm"] for r in records], [0.03, 0.06, 0.06])
    own = [r["final_same_index_p"] for r in records]
    assert own[:2] == [1e-6, 0.02] and np.isnan(own[2])  # the final network itself: no test
    own_holm = [r["final_same_index_p_holm"] for r in records]
    np.testing.assert_allclose(own_holm[:2], [2e-6, 0.02])
    assert np.isnan(own_holm[2])
    assert {r["final_same_index_chance"] for r in records} == {1 / 32}


def test_holm_families_are_per_layer():
    layers = {"a": _curves([0.01, 0.02], [0.5, 0.5]), "b": _curves([0.04, 0.5], [0.5, 0.5])}
    records = Alignment([0, 10], [0.0, 1.0], layers).records()
    by_layer = {n: [r["same_index_p_holm"] for r in records if r["layer"] == n] for n in layers}
    np.testing.assert_allclose(by_layer["a"], [0.02, 0.02])
    np.testing.assert_allclose(by_layer["b"], [0.08, 0.5])
