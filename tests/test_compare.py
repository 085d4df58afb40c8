"""Cross-seed matching and the answer built on it, proven on cases with a known answer: a network
against itself, against a copy with permuted maps (same function), two untrained networks; CKA
invariances, dead maps, weight matching and the interpolation check."""

from __future__ import annotations

import numpy as np
import pytest

from oiplab.analysis.activations import layer_outputs
from oiplab.backend import seed_everything
from oiplab.compare.cka import centered_gram, cka_matrix, linear_cka
from oiplab.compare.correlation import Units, cross_correlation
from oiplab.compare.interpolation import barriers
from oiplab.compare.matching import consistency
from oiplab.compare.pairs import match_layer
from oiplab.compare.study import compare_networks
from oiplab.compare.weights import interpolate, permute, weight_matching
from oiplab.model import MATCHED, PERMUTABLE, PERMUTATION_OF, build_model
from tests.conftest import compose_typed, model_cfg

LAYERS = list(MATCHED)


def _net(seed: int):
    seed_everything(seed)
    return build_model(model_cfg())


def _derangements(model, rng) -> dict[str, np.ndarray]:
    """A permutation of every permutable layer's units with no unit left in place."""
    out = {}
    for name, bias in zip(PERMUTABLE, model.get_weights()[1:8:2], strict=True):
        n = len(bias)
        out[name] = np.roll(np.arange(n), 1 + int(rng.integers(n - 1)))  # a cyclic shift
    return out


@pytest.fixture(scope="module")
def net_and_copy():
    """A network, a copy with every hidden layer's units permuted, and those permutations."""
    model = _net(3)
    rng = np.random.default_rng(0)
    biases = model.get_weights()[1:8:2]
    q = {n: rng.permutation(len(w)) for n, w in zip(PERMUTABLE, biases, strict=True)}
    copy = build_model(model_cfg())
    copy.set_weights(permute(model.get_weights(), q))
    images = rng.normal(size=(64, 28, 28, 1)).astype(np.float32)
    return model, copy, q, images


def test_permuted_copy_computes_the_same_function(net_and_copy):
    model, copy, _, images = net_and_copy
    np.testing.assert_allclose(
        copy.predict(images, verbose=0), model.predict(images, verbose=0), rtol=1e-4, atol=1e-6
    )


def test_network_against_itself_matches_every_live_map_to_itself(net_and_copy):
    model, _, _, images = net_and_copy
    out = layer_outputs(model, images, LAYERS)
    for layer in LAYERS:
        m = match_layer(out[layer], out[layer])
        assert len(m.matched) == m.live_a.sum() > 0, layer
        np.testing.assert_array_equal(m.partner[m.matched], m.matched)
        np.testing.assert_allclose(m.r, 1.0)


def test_permuted_copy_recovers_the_permutation(net_and_copy):
    model, copy, q, images = net_and_copy
    out_a = layer_outputs(model, images, LAYERS)
    out_b = layer_outputs(copy, images, LAYERS)
    for layer in LAYERS:
        m = match_layer(out_a[layer], out_b[layer])
        expected = np.argsort(q[PERMUTATION_OF[layer]])  # b's unit i is a's q[i]
        np.testing.assert_array_equal(m.partner[m.matched], expected[m.matched], layer)
        np.testing.assert_allclose(m.r, 1.0, atol=1e-6)


def test_weight_matching_recovers_the_permutation(net_and_copy):
    model, copy, q, _ = net_and_copy
    found = weight_matching(model.get_weights(), copy.get_weights())
    for layer in PERMUTABLE:
        np.testing.assert_array_equal(found[layer], np.argsort(q[layer]), layer)
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
    assert np.isfinite(cross_correlation(a, b)).all()
    assert Units.of(a).dead.tolist() == [False, False, True, False, False]
    m = match_layer(a, b)
    assert m.partner.tolist() == [4, 3, -1, 1, 0]  # the dead map is matched to nothing
    assert len(m.r) == 4 and np.isfinite(m.r).all()


def test_consistency_and_interpolation_endpoints():
    rng = np.random.default_rng(3)
    p_ab, p_bc = rng.permutation(10), rng.permutation(10)
    maps = np.arange(10)
    assert consistency(p_ab, p_bc, p_bc[p_ab], maps) == 1.0
    assert consistency(p_ab, p_bc, np.roll(p_bc[p_ab], 1), maps) == 0.0
    wa, wb = [np.zeros(3), np.ones((2, 2))], [np.ones(3), np.zeros((2, 2))]
    assert np.array_equal(interpolate(wa, wb, 0.0)[0], wa[0])
    assert np.array_equal(interpolate(wa, wb, 1.0)[1], wb[1])
    alphas = np.linspace(0, 1, 5)
    flat = barriers({"loss": [0.1] * 5, "accuracy": [0.9] * 5}, alphas)
    assert flat == {"loss_barrier": 0.0, "accuracy_barrier": 0.0}
    bump = barriers({"loss": [0.1, 0.5, 1.1, 0.5, 0.3], "accuracy": [1, 0.8, 0.5, 0.8, 1]}, alphas)
    assert bump["loss_barrier"] == pytest.approx(0.9) and bump["accuracy_barrier"] == 0.5


# Known answers of the whole study (and its verdict), on untrained networks and random images.
STUDY = compose_typed(
    "experiment=smoke",
    "compare.null_networks=4",
    "compare.permutation_draws=2000",
    "compare.bootstrap_draws=200",
).compare


def _study(trained: dict) -> dict:
    rng = np.random.default_rng(7)
    probe = rng.normal(size=(120, 28, 28, 1)).astype(np.float32)
    x = rng.normal(size=(30, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, 30)
    nulls = [_net(100 + k) for k in range(STUDY.null_networks)]
    return compare_networks(trained, nulls, probe, {"test": (x, y)}, STUDY, progress=None).answers


@pytest.fixture(scope="module")
def known_answers():
    net, rng = _net(3), np.random.default_rng(11)
    copy = build_model(model_cfg())
    copy.set_weights(permute(net.get_weights(), _derangements(net, rng)))
    return {
        "self": _study({0: net, 1: net}),
        "copy": _study({0: net, 1: copy}),
        "untrained": _study({0: net, 1: _net(4)}),
    }


# With 2 trained and 4 untrained networks the label-permutation test has C(6, 2) = 15
# relabellings: a perfect separation gives p = 1/15, above alpha, so the identity reads "like
# untrained" whatever the data (a two-seed study cannot show learning by this test).
SMALLEST_P = 1 / 15


def test_a_network_against_itself_is_partnered_in_the_same_order(known_answers):
    for layer, a in known_answers["self"].items():
        assert a.partnered.value == 1.0, layer
        assert a.order.observed == a.order.n_tested == a.order.n_matches > 0, layer
        assert a.order.p_value < 1e-10 and a.order.p_all == a.order.p_value, layer  # no floor
        assert a.order_words == "same order" and "same order" in a.verdict, layer
        assert a.vs_untrained_p == pytest.approx(SMALLEST_P), layer
        assert a.one_to_one.value == pytest.approx(1.0) and a.auroc.value > 0.9, layer


def test_a_permuted_copy_is_partnered_but_its_order_is_at_chance(known_answers):
    for layer, a in known_answers["copy"].items():
        assert a.partnered.value == 1.0 and a.matched_r.value == pytest.approx(1.0), layer
        assert a.order.observed == 0 and a.order.p_value == 1.0, layer
        assert a.order.keep_upper is not None and a.order.keep_upper < 0.2, layer
        assert a.vs_untrained_p == pytest.approx(SMALLEST_P), layer
        assert a.order_words == "order at chance" and "order at chance" in a.verdict, layer
        # a map that happens to be constant on one half of the 120 images has no partner there
        assert a.stable.value >= 0.9, layer


def test_two_untrained_networks_are_not_more_than_chance_on_any_layer(known_answers):
    for layer, a in known_answers["untrained"].items():
        assert a.identity == "like untrained", layer
        assert "not clearly more maps have a partner than between untrained networks" in a.verdict
        # the verdict names the number its word rests on: the label-permutation test's p
        assert f"trained vs untrained p = {a.vs_untrained_p:.2g}" in a.verdict, layer
        assert "order at chance" in a.verdict and a.order.p_value >= STUDY.alpha, layer
        assert a.order_null.p_value > 0.01, layer  # the null's own order test is at chance too


def test_a_line_given_its_ends_equals_the_line_evaluated_everywhere():
    """The ends the study shares between lines are the very networks the line starts and ends at."""
    from oiplab.compare.interpolation import evaluate_weights, path

    seed_everything(0)
    net = build_model(model_cfg())
    wa = net.get_weights()
    wb = build_model(model_cfg()).get_weights()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((64, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, 64)
    alphas = np.linspace(0.0, 1.0, 5)
    known = {0.0: evaluate_weights(net, wa, x, y), 1.0: evaluate_weights(net, wb, x, y)}
    assert path(net, wa, wb, alphas, x, y, known=known) == path(net, wa, wb, alphas, x, y)


def test_units_are_the_plain_standardization_to_the_bit():
    """Known answer: (x - mean) / np.std(x), dead maps 0, whatever the one-pass arithmetic."""
    out = np.random.default_rng(3).standard_normal((20, 4, 4, 6)).astype(np.float32) * 3 + 1
    out[..., 2] = 0.5  # a dead map
    x = out.reshape(-1, 6).astype(np.float64)
    std = x.std(axis=0)
    expected = (x - x.mean(axis=0)) / np.where(std < 1e-8, 1.0, std)
    expected[:, 2] = 0.0
    units = Units.of(out)
    np.testing.assert_array_equal(units.z, expected)
    assert units.dead.tolist() == [False, False, True, False, False, False]


def test_halves_are_computed_once_and_equal_a_fresh_standardization():
    out = np.random.default_rng(2).standard_normal((10, 3, 3, 4)).astype(np.float32)
    units = Units.of(out)
    first = units.half(True)
    assert units.half(True) is first
    np.testing.assert_array_equal(first.z, Units.of(out[5:]).z)


def test_an_untrained_side_measured_once_gives_each_comparison_its_own_numbers_to_the_bit():
    """compare_split's designs share one `UntrainedSide`: each comparison's answer and details
    are those of a comparison measuring the untrained networks anew (in any order), and a side
    measured on other images or with other settings is refused."""
    from oiplab.compare.study import measure_untrained
    from oiplab.io import to_json

    rng = np.random.default_rng(7)
    probe = rng.normal(size=(120, 28, 28, 1)).astype(np.float32)
    evals = {"test": (probe[:30] + 1.0, rng.integers(0, 10, 30))}
    nulls = [_net(100 + k) for k in range(STUDY.null_networks)]
    designs = [{0: _net(3), 1: _net(4)}, {0: _net(3), 2: _net(5)}]

    def numbers(trained, untrained) -> str:
        result = compare_networks(trained, untrained, probe, evals, STUDY, progress=None)
        return to_json(result.details())

    side = measure_untrained(nulls, probe, STUDY)
    shared = [numbers(d, side) for d in reversed(designs)][::-1]
    assert shared == [numbers(d, nulls) for d in designs]
    with pytest.raises(ValueError, match="other probe images"):
        compare_networks(designs[0], side, probe[::-1], evals, STUDY, progress=None)
    other = STUDY.model_copy(update={"partner_quantile": 0.9})
    with pytest.raises(ValueError, match="other compare settings"):
        compare_networks(designs[0], side, probe, evals, other, progress=None)
