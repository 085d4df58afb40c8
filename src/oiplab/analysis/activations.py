"""Every analysed layer's output for a set of images, in one pass of a multi-output model."""

from __future__ import annotations

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
    """Outputs of each named layer for `images` (n, 28, 28, 1), as float32 arrays keyed by name."""
    outputs = probe_model(model, layer_names).predict(images, batch_size=batch_size, verbose=0)
    if len(layer_names) == 1:
        outputs = [outputs]
    return {
        name: np.asarray(out, dtype=np.float32)
        for name, out in zip(layer_names, outputs, strict=True)
    }
