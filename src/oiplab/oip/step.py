"""The one backend-specific piece of the OIP engine: a compiled gradient-ascent step on the input.

`make_step(probe, epsilon)` returns `step(x, onehot, spatial, target_mean, target_std)`
-> `(x_next, loss, grad_is_zero)` for a whole batch at once:

* loss[b] = sum over positions of probe(x)[b, i, j, map_b] * spatial[b, i, j] (the objective at x);
* the input gradient of each element is normalized by its root mean square (Chollet's recipe, which
  the articles follow), scaled by epsilon and added;
* the image is re-standardized: its pixel mean and standard deviation are set back to
  `target_mean` / `target_std` (the start image's), as the articles re-standardize after each step.

Everything else (the loop, convergence, snapshots) is plain NumPy in `engine.py`, the same for
TensorFlow (the default backend) and JAX (the GPU machines).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from oiplab.backend import backend_name

if TYPE_CHECKING:
    import keras

Tensor = Any  # a tensor of the active backend (Keras has no type information)

GRAD_EPS = 1e-8  # guards the RMS normalization of an all-zero gradient
STD_EPS = 1e-12


def _objective(probe: Callable[..., Tensor], x: Tensor, onehot: Tensor, spatial: Tensor) -> Tensor:
    from keras import ops

    act = probe(x, training=False)
    shape = ops.shape(act)
    if len(act.shape) == 2:  # dense layer: nodes are 1x1 maps
        act = ops.reshape(act, (shape[0], 1, 1, shape[1]))
    weight = onehot[:, None, None, :] * spatial[:, :, :, None]
    return ops.sum(act * weight, axis=(1, 2, 3))


def _update(
    x: Tensor, grad: Tensor, epsilon: float, target_mean: Tensor, target_std: Tensor
) -> tuple[Tensor, Tensor]:
    from keras import ops

    rms = ops.sqrt(ops.mean(ops.square(grad), axis=(1, 2, 3), keepdims=True))
    x = x + epsilon * grad / (rms + GRAD_EPS)
    mean = ops.mean(x, axis=(1, 2, 3), keepdims=True)
    std = ops.std(x, axis=(1, 2, 3), keepdims=True)
    scale = ops.where(std > STD_EPS, target_std[:, None, None, None] / (std + STD_EPS), 1.0)
    x = (x - mean) * scale + target_mean[:, None, None, None]
    return x, ops.all(ops.equal(grad, 0.0), axis=(1, 2, 3))


def make_step(probe: keras.Model, epsilon: float) -> Callable:
    """Compile one batched ascent step for the active Keras backend."""
    name = backend_name()
    if name == "tensorflow":
        return _tensorflow_step(probe, epsilon)
    if name == "jax":
        return _jax_step(probe, epsilon)
    raise NotImplementedError(f"OIP ascent supports the tensorflow and jax backends, not {name}")


def _tensorflow_step(probe: keras.Model, epsilon: float) -> Callable:
    import tensorflow as tf

    @tf.function(reduce_retracing=True, jit_compile=False)
    def step(
        x: Tensor, onehot: Tensor, spatial: Tensor, target_mean: Tensor, target_std: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = _objective(probe, x, onehot, spatial)
            total = tf.reduce_sum(loss)  # elements are independent: the sum's gradient is exact
        grad = tape.gradient(total, x)
        x_next, zero = _update(x, grad, epsilon, target_mean, target_std)
        return x_next, loss, zero

    return step


def _jax_step(probe: keras.Model, epsilon: float) -> Callable:
    import jax

    trainable = [v.value for v in probe.trainable_variables]
    frozen = [v.value for v in probe.non_trainable_variables]

    def total(x: Tensor, onehot: Tensor, spatial: Tensor) -> Tensor:
        act, _ = probe.stateless_call(trainable, frozen, x, training=False)
        return _objective(lambda _x, training: act, x, onehot, spatial)

    def summed(x: Tensor, onehot: Tensor, spatial: Tensor) -> tuple[Tensor, Tensor]:
        loss = total(x, onehot, spatial)
        return loss.sum(), loss

    grad_fn = jax.grad(summed, has_aux=True)

    @jax.jit
    def step(
        x: Tensor, onehot: Tensor, spatial: Tensor, target_mean: Tensor, target_std: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        grad, loss = grad_fn(x, onehot, spatial)
        x_next, zero = _update(x, grad, epsilon, target_mean, target_std)
        return x_next, loss, zero

    return step
