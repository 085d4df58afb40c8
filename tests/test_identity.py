"""Unit identity against a shared subspace, on cases with a known answer: a permuted copy (units
recur), a rotated copy (the subspace is shared, no unit is), independent noise, duplicated units;
and CKA that is debiased, and centred where the data are not."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from oiplab.compare.cka import centered_gram, debiased_cka, linear_cka
from oiplab.compare.correlation import Units
from oiplab.compare.identity import (
    haar_rotations,
    linear_fits,
    rotation_null,
    sibling_rate,
    split_images,
)

THRESHOLD = 0.6


@pytest.fixture(scope="module")
def layer() -> dict[str, Units]:
    """A conv-like layer of 16 independent units on 300 images x 3 x 3 positions, and three
    partners: a permuted copy, a rotated copy, independent noise."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3, 3, 16))
    q = haar_rotations(16, 1, rng)[0]
    return {
        "a": Units.of(x),
        "permuted": Units.of(x[..., rng.permutation(16)]),
        "rotated": Units.of(x @ q),
        "noise": Units.of(rng.normal(size=x.shape)),
    }


def test_haar_rotations_are_orthogonal_and_unbiased():
    rng = np.random.default_rng(1)
    q = haar_rotations(3, 4000, rng)
    np.testing.assert_allclose(
        q @ np.swapaxes(q, 1, 2), np.broadcast_to(np.eye(3), q.shape), atol=1e-12
    )
    # Haar: every entry symmetric about 0 with variance 1/k (without the sign fix, QR by
    # Householder gives Q[0, 0] of one sign only)
    assert abs(q[:, 0, 0].mean()) < 0.03 and abs(q[:, 2, 1].mean()) < 0.03
    assert np.square(q[:, 0, 0]).mean() == pytest.approx(1 / 3, abs=0.02)
    assert (np.linalg.det(q) < 0).mean() == pytest.approx(0.5, abs=0.05)  # both components


def test_rotation_null_separates_recurring_units_from_a_shared_subspace(layer):
    rng = np.random.default_rng(2)
    copy = rotation_null(layer["a"], layer["permuted"], THRESHOLD, 200, rng)
    assert copy.real == 1.0  # every unit recurs
    assert copy.null.mean() < 0.2 and copy.p_value == pytest.approx(1 / 201)
    rotated = rotation_null(layer["a"], layer["rotated"], THRESHOLD, 200, rng)
    assert rotated.real <= np.quantile(rotated.null, 0.95)  # no more than the subspace gives
    assert rotated.p_value > 0.05 and rotated.threshold == THRESHOLD
    noise = rotation_null(layer["a"], layer["noise"], THRESHOLD, 50, rng)
    assert noise.real == 0.0 and noise.null.max() == 0.0 and noise.p_value == 1.0
    assert noise.null.shape == (50,)


def test_rotation_null_ignores_dead_units():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 4, 6))
    x[..., 5] = 1.0  # dead in both networks
    dead_b = Units.of(np.zeros_like(x))
    out = rotation_null(Units.of(x), Units.of(x[..., ::-1]), THRESHOLD, 20, rng)
    assert out.real == 1.0 and out.null.max() < 1.0  # 5 live units matched, not 6
    none = rotation_null(Units.of(x), dead_b, THRESHOLD, 20, rng)
    assert np.isnan(none.real) and np.isnan(none.null).all()


def test_sibling_rate_duplicated_and_independent_units(layer):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 3, 3, 8))
    twins = Units.of(np.concatenate([x, x + 0.05 * rng.normal(size=x.shape)], axis=-1))
    assert sibling_rate(twins, THRESHOLD) == 1.0
    assert sibling_rate(layer["a"], THRESHOLD) == 0.0
    one_live = np.zeros((50, 3))
    one_live[:, 0] = rng.normal(size=50)
    assert np.isnan(sibling_rate(Units.of(one_live), THRESHOLD))


def test_one_to_one_and_many_to_one_known_answers(layer):
    fit = split_images(300, 0.5, np.random.default_rng(5))
    assert fit.sum() == 150
    copy = linear_fits(layer["a"], layer["permuted"], fit)
    assert copy.one_to_one == pytest.approx(1.0) and copy.many_to_one == pytest.approx(1.0)
    rotated = linear_fits(layer["a"], layer["rotated"], fit)
    assert rotated.one_to_one < 0.4 and rotated.many_to_one == pytest.approx(1.0)
    noise = linear_fits(layer["a"], layer["noise"], fit)
    assert abs(noise.one_to_one) < 0.02 and abs(noise.many_to_one) < 0.05
    assert noise.per_unit_many.shape == (16,) and noise.n_held_out_images == 150


def test_linear_fits_memory_chunks_do_not_change_the_answer(layer):
    fit = split_images(300, 0.3, np.random.default_rng(6))
    whole = linear_fits(layer["a"], layer["rotated"], fit, chunk_rows=1 << 20)
    chunked = linear_fits(layer["a"], layer["rotated"], fit, chunk_rows=7)
    np.testing.assert_allclose(chunked.per_unit_one, whole.per_unit_one, atol=1e-12)
    np.testing.assert_allclose(chunked.per_unit_many, whole.per_unit_many, atol=1e-12)


def test_linear_fits_dense_layer_with_dead_and_missing_partners():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(400, 6))  # a dense layer: a row per image
    b = x[:, ::-1].copy()
    b[:, :2] = 0.0  # two of b's units dead: a's units 4 and 5 lose their partners
    fit = split_images(400, 0.5, rng)
    out = linear_fits(Units.of(x), Units.of(b), fit)
    np.testing.assert_allclose(out.per_unit_one[:4], 1.0)
    assert out.per_unit_one[4:].max() < 0.05  # matched to a leftover unit, or to none: about 0
    assert out.one_to_one == pytest.approx(np.mean(out.per_unit_one))
    all_dead = linear_fits(Units.of(np.zeros((400, 6))), Units.of(x), fit)
    assert np.isnan(all_dead.one_to_one) and all_dead.per_unit_one.shape == (0,)
    held_constant = x.copy()
    held_constant[~fit, 0] = 3.0  # live overall, constant on the held-out images: no score
    out = linear_fits(Units.of(held_constant), Units.of(x), fit)
    assert np.isnan(out.per_unit_many[0]) and np.isfinite(out.many_to_one)
    no_b = linear_fits(Units.of(x), Units.of(np.zeros((400, 6))), fit)
    assert no_b.one_to_one == 0.0 and abs(no_b.many_to_one) < 0.05


def test_debiased_cka_known_answers():
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(60, 50)), rng.normal(size=(60, 50))
    assert debiased_cka(x @ x.T, x @ x.T) == pytest.approx(1.0)
    # independent features, n comparable to the number of features: plain CKA is biased up
    assert abs(debiased_cka(x @ x.T, y @ y.T)) < 0.05
    assert linear_cka(centered_gram(x), centered_gram(y)) > 0.3
    shifted = x + 100.0, y + 100.0  # equal up to float cancellation in the shifted Grams
    assert debiased_cka(*(v @ v.T for v in shifted)) == pytest.approx(
        debiased_cka(x @ x.T, y @ y.T), abs=1e-4
    )
    with pytest.raises(ValueError, match="at least 4"):
        debiased_cka(np.eye(3), np.eye(3))
    assert debiased_cka(np.zeros((5, 5)), x[:5] @ x[:5].T) == 0.0


def test_linear_cka_centres_non_centred_data():
    rng = np.random.default_rng(9)
    x, y = rng.normal(size=(200, 8)), rng.normal(size=(200, 8))
    offset = 50.0  # a large constant: without centring both Grams are nearly constant, CKA ~ 1
    centred = linear_cka(centered_gram(x), centered_gram(y))
    shifted = linear_cka(centered_gram(x + offset), centered_gram(y + offset))
    assert shifted == pytest.approx(centred, abs=1e-3) and shifted < 0.2
    raw = (x + offset) @ (x + offset).T, (y + offset) @ (y + offset).T
    assert linear_cka(*raw) > 0.9  # what a CKA that dropped the centring would report
    assert linear_cka(centered_gram(x + offset), centered_gram(x + 2 * offset)) == pytest.approx(
        1.0, abs=1e-6
    )


def test_rotation_null_from_moments_equals_rotating_the_data():
    """The k x k shortcut gives what mixing the rows themselves, re-standardizing and matching
    would give, also for correlated units (whose mixtures do not keep unit variance)."""
    rng = np.random.default_rng(10)
    x = rng.normal(size=(150, 2, 2, 6)) @ rng.normal(size=(6, 6))  # correlated units
    a, b = Units.of(x), Units.of(x[..., ::-1] + 0.5 * rng.normal(size=x.shape))
    out = rotation_null(a, b, 0.3, 30, np.random.default_rng(11))
    q = haar_rotations(6, 30, np.random.default_rng(11))  # the same rotations
    direct = []
    for d in range(30):
        mixed = Units.of((a.z @ q[d]).reshape(x.shape))
        r = mixed.z.T @ b.z / len(b.z)
        rows, cols = linear_sum_assignment(r, maximize=True)
        direct.append((r[rows, cols] > 0.3).mean())
    np.testing.assert_allclose(out.null, direct)
    assert 0.0 < np.mean(direct) < 1.0  # the threshold cuts inside the null's range


def test_many_to_one_counts_a_shift_on_held_out_images_as_error():
    """A unit that follows b exactly on the fit images and is shifted by 2 on the held-out
    ones: correlation is blind to the shift (r^2 = 1); the linear map's held-out R^2 is
    1 - 2^2 / 1 = -3 (the mean residual counts, SST is about the held-out mean)."""
    rng = np.random.default_rng(12)
    x = rng.normal(size=(400, 2, 2, 3))
    x = (x - x.mean(axis=(0, 1, 2))) / x.std(axis=(0, 1, 2))
    fit = np.arange(400) < 200
    shifted = x.copy()
    shifted[~fit, ..., 0] += 2.0
    out = linear_fits(Units.of(shifted), Units.of(x), fit)
    assert out.per_unit_one[0] == pytest.approx(1.0)
    held_var = x[~fit, ..., 0].var()
    assert out.per_unit_many[0] == pytest.approx(1 - 4 / held_var)


def test_reused_correlations_and_gram_give_the_same_bits(layer):
    """What the study reuses (a pair's correlations, a network's Gram, the cross pairs' matched
    r) gives exactly what computing it afresh gives."""
    from oiplab.compare.correlation import cross_correlation
    from oiplab.compare.pairs import match_layer, matched_r

    a, b = layer["a"], layer["rotated"]
    fresh = rotation_null(a, b, THRESHOLD, 20, np.random.default_rng(3))
    reused = rotation_null(a, b, THRESHOLD, 20, np.random.default_rng(3), cross_correlation(a, b))
    assert np.array_equal(fresh.null, reused.null) and fresh.real == reused.real
    assert np.array_equal(a.gram, a.z.T @ a.z / len(a.z))
    before = sibling_rate(a, THRESHOLD)
    assert sibling_rate(a, THRESHOLD) == before  # the cached Gram is not changed by a reader
    assert np.array_equal(matched_r(a, b), match_layer(a, b, False, False).r)
