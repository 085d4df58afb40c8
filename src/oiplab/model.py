"""The articles' CNN, in backend-neutral Keras 3.

Layer recipe and names from the series (part VI's model summary): 28x28x1 -> Conv2D_1 (32, 3x3)
-> Max_Pool_1 -> Conv2D_2 (64, 3x3) -> Max_Pool_2 -> Conv2D_3 (128, 3x3) -> Flatten -> Dense 100
-> Dense 10 (softmax); 208,982 trainable parameters with the default sizes.
"""

from __future__ import annotations

from oiplab.config import ANALYSED_LAYERS, ModelConfig
from oiplab.errors import OiplabError

__all__ = ["ANALYSED_LAYERS", "build_model", "load_model"]

CONV_LAYERS = ("Conv2D_1", "Conv2D_2", "Conv2D_3")
ARTICLES_PARAM_COUNT = 208_982


def build_model(cfg: ModelConfig, l2: float = 0.0):
    """Build the (uncompiled) CNN; `l2` adds an L2 penalty on every kernel."""
    import keras
    from keras import layers

    reg = keras.regularizers.L2(l2) if l2 > 0 else None
    conv = {
        "kernel_size": cfg.kernel_size,
        "activation": "relu",
        "padding": "valid",
        "kernel_regularizer": reg,
    }
    inputs = keras.Input(shape=tuple(cfg.input_shape), name="image")
    x = layers.Conv2D(cfg.filters[0], name="Conv2D_1", **conv)(inputs)
    x = layers.MaxPooling2D(2, name="Max_Pool_1")(x)
    x = layers.Conv2D(cfg.filters[1], name="Conv2D_2", **conv)(x)
    x = layers.MaxPooling2D(2, name="Max_Pool_2")(x)
    x = layers.Conv2D(cfg.filters[2], name="Conv2D_3", **conv)(x)
    x = layers.Flatten(name="Flatten")(x)
    x = layers.Dense(cfg.dense_units, activation="relu", kernel_regularizer=reg, name="Dense_1")(x)
    outputs = layers.Dense(
        cfg.n_classes, activation="softmax", kernel_regularizer=reg, name="Dense_2"
    )(x)
    return keras.Model(inputs, outputs, name="oiplab_cnn")


class ModelFileError(OiplabError, RuntimeError):
    """A model file is missing, corrupt, or not a model this project wrote."""


def load_model(path):
    """Load a saved `.keras` model in Keras' safe mode (no arbitrary code from the file)."""
    from pathlib import Path

    import keras

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found (run `dvc repro train` first)")
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many types for a bad archive
        raise ModelFileError(
            f"{path}: not a readable Keras model file ({type(exc).__name__}: {exc})"
        ) from exc
    missing = [n for n in CONV_LAYERS if n not in {layer.name for layer in model.layers}]
    if missing:
        raise ModelFileError(f"{path}: not an oiplab CNN (no layer(s) {', '.join(missing)})")
    return model
