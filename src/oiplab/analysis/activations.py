"""Every analysed layer's output for a set of images, in one pass of a multi-output model."""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import numpy as np

from oiplab.errors import OiplabError


class LayerNameError(OiplabError, KeyError):
    """A requested layer does not exist in the model."""

    def __str__(self) -> str:
        return str(self.args[0])


def probe_model(model, layer_names: Sequence[str]):
    """A Keras model mapping the input to the outputs of `layer_names`, in that order.

    With one name, the model's output is that layer's tensor itself (not a one-element list).
    """
    import keras

    known = [layer.name for layer in model.layers]
    unknown = [n for n in layer_names if n not in known]
    if unknown:
        raise LayerNameError(f"layer(s) {unknown} not in the model; it has {known}")
    outputs = [model.get_layer(n).output for n in layer_names]
    return keras.Model(model.inputs, outputs[0] if len(outputs) == 1 else outputs)


def layer_outputs(
    model, images: np.ndarray, layer_names: Sequence[str], batch_size: int = 256
) -> dict[str, np.ndarray]:
    """Outputs of each named layer for `images` (n, 28, 28, 1), as float32 arrays keyed by name.

    The probe model is built once per (model, layers) and run batch by batch through its compiled
    predict step: a caller that sets new weights into one model and probes it again (the
    alignment over training) pays neither a new model nor a new trace per call. The numbers are
    those of `Model.predict` with the same batch size (TensorFlow on a CPU; a backend compiling
    with XLA may differ in the last bits).
    """
    probe = _probe_for(model, tuple(layer_names))
    starts = range(0, len(images), batch_size)
    batches = [probe.predict_on_batch(images[k : k + batch_size]) for k in starts]
    if len(layer_names) == 1:
        batches = [[b] for b in batches]
    return {
        name: np.concatenate([np.asarray(b[i], dtype=np.float32) for b in batches])
        for i, name in enumerate(layer_names)
    }


_PROBES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _probe_for(model, layer_names: tuple[str, ...]):
    per_model = _PROBES.setdefault(model, {})
    if layer_names not in per_model:
        per_model[layer_names] = probe_model(model, layer_names)
    return per_model[layer_names]
