"""Cross-seed matching proven on cases with a known answer: a network against itself, against a
copy with permuted maps (same function), CKA invariances, and dead maps."""

from __future__ import annotations

import numpy as np
import pytest

from oiplab.analysis.activations import layer_outputs
from oiplab.backend import seed_everything
from oiplab.compare.cka import centered_gram, cka_matrix, linear_cka
from oiplab.compare.correlation import cross_correlation, dead_maps
from oiplab.compare.matching import consistency, hungarian, match_stats, semi_matching
from oiplab.compare.study import match_layers
from oiplab.compare.weights import HIDDEN, interpolate, permute, weight_matching
from oiplab.config import ModelConfig
from oiplab.model import build_model

LAYERS = ["Conv2D_1", "Max_Pool_1", "Conv2D_2", "Max_Pool_2", "Conv2D_3", "Dense_1"]


@pytest.fixture(scope="module")
def net_and_copy():
    """A network, a copy with every hidden layer's units permuted, and those permutations."""
    seed_everything(3)
    model = build_model(ModelConfig())
    rng = np.random.default_rng(0)
    q = {
        n: rng.permutation(len(w)) for n, w in zip(HIDDEN, model.get_weights()[1:8:2], strict=True)
    }
    copy = build_model(ModelConfig())
    copy.set_weights(permute(model.get_weights(), q))
    images = rng.normal(size=(64, 28, 28, 1)).astype(np.float32)
    return model, copy, q, images


def test_permuted_copy_computes_the_same_function(net_and_copy):
    model, copy, _, images = net_and_copy
    np.testing.assert_allclose(
        copy.predict(images, verbose=0), model.predict(images, verbose=0), rtol=1e-4, atol=1e-6
    )


def test_network_against_itself_is_the_identity_with_correlation_one(net_and_copy):
    model, _, _, images = net_and_copy
    out = layer_outputs(model, images, LAYERS)
    for layer, m in match_layers(out, out, LAYERS).items():
        live = m["stats"]["n_live"]
        assert live > 0, layer
        assert m["stats"]["matched_corr_median"] == pytest.approx(1.0), layer
        assert m["stats"]["same_index_fraction"] == 1.0, layer
        assert np.array_equal(m["perm"], np.arange(len(m["perm"]))) or m["stats"]["n_dead_a"]


def test_permuted_copy_recovers_the_permutation(net_and_copy):
    model, copy, q, images = net_and_copy
    out_a = layer_outputs(model, images, LAYERS)
    out_b = layer_outputs(copy, images, LAYERS)
    matched = match_layers(out_a, out_b, LAYERS)
    for layer in LAYERS:
        source = layer.replace("Max_Pool", "Conv2D")  # a pool shares its conv's permutation
        expected = np.argsort(q[source])  # b's unit i is a's unit q[i]: a's j sits at q^-1[j]
        live = ~dead_maps(out_a[layer].reshape(-1, out_a[layer].shape[-1]))
        np.testing.assert_array_equal(matched[layer]["perm"][live], expected[live], layer)
        fixed_points = float((expected[live] == np.flatnonzero(live)).mean())
        assert matched[layer]["stats"]["same_index_fraction"] == pytest.approx(fixed_points)
        assert matched[layer]["stats"]["matched_corr_median"] == pytest.approx(1.0, abs=1e-6)


def test_weight_matching_recovers_the_permutation(net_and_copy):
    model, copy, q, _ = net_and_copy
    found = weight_matching(model.get_weights(), copy.get_weights())
    for layer in HIDDEN:
        np.testing.assert_array_equal(found[layer], np.argsort(q[layer]), layer)
    # and aligning the copy with it gives back the original weights
    for wa, wb in zip(model.get_weights(), permute(copy.get_weights(), found), strict=True):
        np.testing.assert_array_equal(wa, wb)


def test_cka_is_invariant_to_permutation_and_isotropic_scaling():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 40))
    y = x @ rng.normal(size=(40, 30)) + 0.5 * rng.normal(size=(50, 30))
    perm = rng.permutation(30)
    base = linear_cka(centered_gram(x), centered_gram(y))
    assert linear_cka(centered_gram(x), centered_gram(y[:, perm] * 7.5)) == pytest.approx(base)
    assert linear_cka(centered_gram(x), centered_gram(x[:, rng.permutation(40)])) == pytest.approx(
        1.0
    )
    assert 0 < base < 1
    m = cka_matrix([centered_gram(x), centered_gram(y)], [centered_gram(x), centered_gram(y)])
    np.testing.assert_allclose(np.diag(m), 1.0)
    np.testing.assert_allclose(m, m.T)


def test_dead_maps_give_no_nan_and_are_left_out():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(200, 5))
    a[:, 2] = 0.0  # a dead map
    b = a[:, [4, 3, 2, 1, 0]] + 0.01 * rng.normal(size=(200, 5))
    b[:, 2] = 1.5  # dead too (constant, not zero)
    corr = cross_correlation(a, b)
    assert np.isfinite(corr).all()
    assert dead_maps(a).tolist() == [False, False, True, False, False]
    perm, best = hungarian(corr), semi_matching(corr)
    stats = match_stats(corr, perm, best, ~dead_maps(a))
    assert stats["n_live"] == 4
    assert all(np.isfinite(v) for v in stats.values())
    assert [perm[i] for i in (0, 1, 3, 4)] == [4, 3, 1, 0]


def test_consistency_and_interpolation_endpoints():
    rng = np.random.default_rng(3)
    p_ab, p_bc = rng.permutation(10), rng.permutation(10)
    assert consistency(p_ab, p_bc, p_bc[p_ab]) == 1.0
    assert consistency(p_ab, p_bc, np.roll(p_bc[p_ab], 1)) == 0.0
    wa, wb = [np.zeros(3), np.ones((2, 2))], [np.ones(3), np.zeros((2, 2))]
    assert np.array_equal(interpolate(wa, wb, 0.0)[0], wa[0])
    assert np.array_equal(interpolate(wa, wb, 1.0)[1], wb[1])
