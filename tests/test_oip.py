"""The OIP engine on tiny hand-built networks whose maps respond to known patterns."""

from __future__ import annotations

import numpy as np
import pytest

from oiplab.data.prepared import Standardization
from oiplab.oip.engine import AscentSettings, ascend, snapshot_steps
from oiplab.oip.init import NoiseScales, multiscale_noise, start_images, upsample_bicubic
from oiplab.oip.objectives import channel_objectives, neuron_objectives

STATS = Standardization(mean=0.1307, std=0.3081)


def pattern(kind: str) -> np.ndarray:
    """A smooth 28x28 pattern, zero-mean and unit-norm."""
    r, c = np.mgrid[0:28, 0:28] / 27.0
    p = {
        "diagonal": np.sin(2 * np.pi * (r + c) * 1.5),
        "blob": np.exp(-((r - 0.3) ** 2 + (c - 0.6) ** 2) / 0.02),
        "vertical": np.cos(2 * np.pi * c * 2),
    }[kind]
    p = p - p.mean()
    return (p / np.linalg.norm(p)).astype(np.float32)


def tiny_network(patterns: list[np.ndarray], bias: float = 5.0, dead: int = 0):
    """Input -> one 28x28 conv whose map k computes relu(<pattern_k, x> + bias) (a 1x1 map each);
    `dead` extra maps have zero weights and bias -1, so they never respond."""
    import keras

    n = len(patterns) + dead
    kernel = np.zeros((28, 28, 1, n), dtype=np.float32)
    biases = np.full(n, -1.0, dtype=np.float32)
    for k, p in enumerate(patterns):
        kernel[:, :, 0, k] = p
        biases[k] = bias
    inputs = keras.Input((28, 28, 1))
    conv = keras.layers.Conv2D(n, 28, activation="relu", name="maps")
    model = keras.Model(inputs, conv(inputs))
    conv.set_weights([kernel, biases])
    return model


SETTINGS = AscentSettings(
    epsilon=0.05, n_steps=60, convergence_tol=0.0, n_snapshots=4, chunk_size=64
)


def _starts(n: int, seed: int = 0) -> np.ndarray:
    return start_images(n, NoiseScales((3, 7, 28), (0.5, 0.3, 0.2)), seed, STATS)


def test_start_images_are_standardized_and_reproducible():
    a, b, c = _starts(5, seed=1), _starts(5, seed=1), _starts(5, seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    pixels01 = STATS.invert(a)  # back on the [0, 1] scale, each image spans it exactly
    np.testing.assert_allclose(pixels01.min(axis=(1, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(pixels01.max(axis=(1, 2, 3)), 1.0, atol=1e-5)
    assert a.shape == (5, 28, 28, 1) and a.dtype == np.float32


def test_noise_scales_and_bicubic_upsampling():
    assert upsample_bicubic(np.full((1, 3, 3), 0.7))[0].std() < 1e-6  # constant stays constant
    coarse = multiscale_noise(8, (3,), (1.0,), seed=0)
    fine = multiscale_noise(8, (28,), (1.0,), seed=0)

    # neighbouring pixels agree far more in coarse (3x3) noise than in pixel noise
    def roughness(x):
        return float(np.abs(np.diff(x, axis=2)).mean())

    assert roughness(coarse) < 0.3 * roughness(fine)
    with pytest.raises(ValueError, match="2 grid sizes but 1 weights"):
        multiscale_noise(1, (3, 7), (1.0,), seed=0)


def test_ascent_raises_the_objective_and_finds_the_pattern():
    patterns = [pattern("diagonal"), pattern("blob")]
    model = tiny_network(patterns)
    starts = _starts(4)
    maps = np.repeat([0, 1], 2)
    result = ascend(
        model,
        np.concatenate([starts[:2], starts[2:]]),
        channel_objectives(maps, (1, 1, 2)),
        SETTINGS,
        progress=None,
    )
    assert (result.loss > result.loss_history[:, 0] + 1.0).all()  # raised, within 60 steps
    for k, m in enumerate(maps):
        image = result.images[k, ..., 0].ravel()
        corr = np.corrcoef(image, patterns[m].ravel())[0, 1]
        assert corr > 0.9, (k, corr)
    assert not result.silent.any()
    assert list(result.snapshot_steps) == list(snapshot_steps(60, 4)) == [1, 4, 15, 60]


def test_dead_map_is_reported_silent():
    model = tiny_network([pattern("vertical")], dead=1)
    result = ascend(
        model, _starts(2), channel_objectives(np.array([1, 0]), (1, 1, 2)), SETTINGS, progress=None
    )
    assert result.silent.tolist() == [True, False]
    assert result.steps[0] == 0 and result.loss[0] == 0.0
    assert result.steps[1] == SETTINGS.n_steps and result.loss[1] > 0


def test_batched_equals_one_map_at_a_time():
    model = tiny_network([pattern("diagonal"), pattern("blob"), pattern("vertical")], dead=1)
    starts = _starts(2, seed=3)
    maps = np.repeat(np.arange(4), 2)
    tiled = np.tile(starts, (4, 1, 1, 1))
    settings = AscentSettings(epsilon=0.05, n_steps=40, convergence_tol=1e-3, chunk_size=3)
    batched = ascend(model, tiled, channel_objectives(maps, (1, 1, 4)), settings, progress=None)
    for k in range(len(maps)):
        single = ascend(
            model,
            tiled[k : k + 1],
            channel_objectives(maps[k : k + 1], (1, 1, 4)),
            settings,
            progress=None,
        )
        assert single.steps[0] == batched.steps[k]
        assert single.silent[0] == batched.silent[k]
        assert single.converged[0] == batched.converged[k]
        np.testing.assert_allclose(single.images[0], batched.images[k], atol=1e-4)
        np.testing.assert_allclose(single.loss[0], batched.loss[k], rtol=1e-4, atol=1e-5)


def test_neuron_objective_reads_one_position():
    import keras

    inputs = keras.Input((28, 28, 1))
    conv = keras.layers.Conv2D(2, 3, activation="relu", name="maps")
    model = keras.Model(inputs, conv(inputs))
    starts = _starts(1)
    grid = (26, 26, 2)  # a 3x3 valid convolution of a 28x28 image, two maps
    obj = neuron_objectives(np.array([1]), np.array([[5, 7]]), grid)
    result = ascend(model, starts, obj, AscentSettings(n_steps=1, n_snapshots=0), progress=None)
    direct = np.asarray(model.predict(starts, verbose=0))[0, 5, 7, 1]
    assert result.loss_history[0, 0] == pytest.approx(direct, rel=1e-5, abs=1e-6)
    with pytest.raises(ValueError, match="inside|lie in"):
        neuron_objectives(np.array([0]), np.array([[26, 0]]), grid)
    with pytest.raises(ValueError, match=r"map indices \[2\] outside 0..1"):
        channel_objectives(np.array([2]), grid)
