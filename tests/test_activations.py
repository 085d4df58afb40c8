"""Image selection rules, layer dumps, common-pattern logic and the activation figures."""

from __future__ import annotations

import numpy as np
import pytest

from oiplab.analysis.activations import LayerNameError, layer_outputs
from oiplab.analysis.patterns import (
    active_sets,
    common_elements,
    compare_groups,
    jaccard,
    mean_pairwise_jaccard,
)
from oiplab.analysis.selection import GroupRule, SelectionError, select_group
from oiplab.model import LAYERS, build_model
from oiplab.render import save_figure
from oiplab.render.maps import activation_figure, common_pattern_figure, mosaic
from tests.conftest import model_cfg


def _logits(rows):
    """(n_seeds, n_images, 3) logits whose softmax is the given per-seed probability rows."""
    with np.errstate(divide="ignore"):
        return np.log(np.asarray(rows, dtype=np.float64))


LABELS = np.array([0, 0, 0, 1, 0])
# Two seeds, five images, three classes.
LOGITS = _logits(
    [
        [[0.9, 0.1, 0.0], [0.6, 0.4, 0.0], [0.99, 0.01, 0.0], [0.1, 0.9, 0.0], [0.3, 0.7, 0.0]],
        [[0.95, 0.05, 0.0], [0.7, 0.3, 0.0], [0.4, 0.6, 0.0], [0.2, 0.8, 0.0], [0.45, 0.55, 0.0]],
    ]
)


def test_clear_images_must_be_right_in_every_seed_and_rank_by_the_least_sure_seed():
    group = select_group(GroupRule("clear_0", "clear", 0, 2), LOGITS, LABELS)
    # image 2 is wrong in seed 1; image 4 wrong in both; image 0 (min 0.9) beats image 1 (min 0.6)
    assert group["indices"] == [0, 1]
    # the least sure seed's logit margin: log(0.9 / 0.1) and log(0.6 / 0.4)
    assert group["scores"] == pytest.approx([np.log(9.0), np.log(1.5)])


def test_clear_ranking_does_not_saturate_where_probabilities_do():
    # float32 softmax would give 1.0 for both; the margins still order them
    logits = np.array([[[30.0, 0.0], [40.0, 0.0]]])
    group = select_group(GroupRule("clear_0", "clear", 0, 2), logits, np.array([0, 0]))
    assert group["indices"] == [1, 0]


def test_ambiguous_images_rank_by_the_least_probability_of_the_other_class():
    group = select_group(GroupRule("amb_0", "ambiguous", 0, 2, other_class=1), LOGITS, LABELS)
    # min P(class 1) over seeds: img4 0.55, img1 0.3, img2 0.01, img0 0.05; img3 is a 1
    assert group["indices"] == [4, 1]


def test_selection_errors_and_explicit_indices():
    with pytest.raises(SelectionError, match="only 2 test images qualify"):
        select_group(GroupRule("clear_0", "clear", 0, 3), LOGITS, LABELS)
    with pytest.raises(SelectionError, match=r"\[7\] outside 0..4"):
        select_group(GroupRule("mine", "clear", 0, 1, indices=(1, 7)), LOGITS, LABELS)
    assert select_group(GroupRule("mine", "clear", 0, 1, indices=(3, 1)), LOGITS, LABELS)[
        "indices"
    ] == [3, 1]


def test_active_sets_are_relative_to_each_image_maximum():
    out = np.array([[1.0, 0.6, 0.4, 0.0], [10.0, 6.0, 4.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    sets = active_sets(out, 0.5)
    assert sets.tolist() == [
        [True, True, False, False],
        [True, True, False, False],
        [False, False, False, False],
    ]


def test_common_and_distinct_elements_on_hand_made_sets():
    group = np.array([[1, 1, 1, 0, 0], [1, 1, 0, 1, 0]], dtype=bool)
    other = np.array([[0, 1, 0, 0, 1], [0, 0, 0, 0, 1]], dtype=bool)
    masks = common_elements(group, other)
    assert masks["common"].tolist() == [True, True, False, False, False]
    assert masks["distinct"].tolist() == [True, False, False, False, False]
    assert jaccard(group[0], group[1]) == pytest.approx(2 / 4)
    assert mean_pairwise_jaccard(group) == pytest.approx(0.5)
    # across pairs: (g0,o0) 1/4, (g0,o1) 0/4, (g1,o0) 1/4, (g1,o1) 0/4
    assert mean_pairwise_jaccard(group, other) == pytest.approx(1 / 8)
    assert jaccard(np.zeros(3, bool), np.zeros(3, bool)) == 1.0


def test_compare_groups_counts():
    outputs = np.zeros((4, 2, 2, 1), dtype=np.float32)
    outputs[0, 0, 0] = outputs[1, 0, 0] = 1.0  # group images share element 0
    outputs[1, 1, 1] = 0.8
    outputs[2, 1, 1] = outputs[3, 1, 1] = 1.0  # other group: element 3
    result = compare_groups(outputs, np.array([0, 1]), np.array([2, 3]), 0.5)
    assert (result["n_elements"], result["n_common"], result["n_distinct"]) == (4, 1, 1)
    assert result["jaccard_within"] == pytest.approx(0.5)
    assert result["jaccard_across"] == pytest.approx(0.25)


def test_layer_dump_shapes_and_names():
    model = build_model(model_cfg())
    images = np.random.default_rng(0).normal(size=(3, 28, 28, 1)).astype(np.float32)
    outputs = layer_outputs(model, images, LAYERS)
    assert list(outputs) == list(LAYERS)
    assert outputs["Conv2D_1"].shape == (3, 26, 26, 32)
    assert outputs["Max_Pool_2"].shape == (3, 5, 5, 64)
    assert outputs["Dense_1"].shape == (3, 100)
    np.testing.assert_allclose(
        outputs["Dense_2"], model.predict(images, verbose=0), rtol=1e-5, atol=1e-6
    )
    with pytest.raises(LayerNameError, match="Conv2D_9"):
        layer_outputs(model, images, ["Conv2D_9"])


def test_mosaic_places_each_map_in_its_tile():
    maps = np.arange(2 * 2 * 3, dtype=np.float32).reshape(2, 2, 3)
    grid = mosaic(maps, per_row=2, pad=1, min_tile=2)
    assert grid.shape == (5, 5)
    np.testing.assert_array_equal(grid[0:2, 3:5], maps[:, :, 1])
    assert np.isnan(grid[2]).all() and np.isnan(grid[3:5, 3:5]).all()


def test_figures_are_written(tmp_path):
    rng = np.random.default_rng(0)
    save_figure(
        activation_figure(
            rng.random((28, 28)), rng.random((3, 3, 128)), "t", standardize=True, contrast=2.0
        ),
        tmp_path / "a.png",
    )
    save_figure(
        activation_figure(rng.random((28, 28)), rng.random(100), "dense"), tmp_path / "b.png"
    )
    mask = rng.random(100) > 0.5
    save_figure(
        common_pattern_figure(rng.random(100), mask, mask & (rng.random(100) > 0.5), "c"),
        tmp_path / "c.png",
    )
    for name in ("a.png", "b.png", "c.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_layer_outputs_match_predict_and_follow_new_weights():
    """The cached probe gives `Model.predict`'s numbers, and the weights set after it was built."""
    from oiplab.analysis.activations import probe_model

    model = build_model(model_cfg())
    x = np.random.default_rng(0).standard_normal((300, 28, 28, 1)).astype(np.float32)
    names = ["Conv2D_1", "Dense_1"]
    first = layer_outputs(model, x, names, batch_size=128)
    expected = probe_model(model, names).predict(x, batch_size=128, verbose=0)
    for name, out in zip(names, expected, strict=True):
        np.testing.assert_array_equal(first[name], out)
    model.set_weights([w * 0.5 for w in model.get_weights()])
    second = layer_outputs(model, x, names, batch_size=128)
    assert not np.array_equal(first["Dense_1"], second["Dense_1"])
    one = layer_outputs(model, x, ["Dense_1"], batch_size=128)["Dense_1"]
    np.testing.assert_array_equal(one, second["Dense_1"])
