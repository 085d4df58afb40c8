"""The articles' CNN and every fact about it the rest of the project needs, in one place.

Layer recipe and names from the series (part VI's model summary): 28x28x1 -> Conv2D_1 (32, 3x3)
-> Max_Pool_1 -> Conv2D_2 (64, 3x3) -> Max_Pool_2 -> Conv2D_3 (128, 3x3) -> Flatten -> Dense 100
-> Dense 10 (softmax); 208,982 trainable parameters with the default sizes. `model.width`
multiplies every convolution's filters and the hidden dense units (1: the articles' network).

`LAYERS` names the analysable layers in forward order; `MATCHED` the hidden ones the comparison
matches across seeds (Dense_2's nodes are the classes, already in the same order); `PERMUTABLE`
the chain of layers whose units can be re-ordered without changing the function (a pool shares
the permutation of the convolution before it: `PERMUTATION_OF`). `layer_shapes` gives each
layer's output shape; a test checks it against the built Keras model.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from oiplab.checks import NonFiniteError, non_finite_weights
from oiplab.errors import OiplabError, missing_input

if TYPE_CHECKING:
    import keras

CONV_LAYERS = ("Conv2D_1", "Conv2D_2", "Conv2D_3")
POOL_LAYERS = ("Max_Pool_1", "Max_Pool_2")
DENSE_LAYERS = ("Dense_1", "Dense_2")
LAYERS = ("Conv2D_1", "Max_Pool_1", "Conv2D_2", "Max_Pool_2", "Conv2D_3", "Dense_1", "Dense_2")
MATCHED = LAYERS[:-1]
PERMUTABLE = ("Conv2D_1", "Conv2D_2", "Conv2D_3", "Dense_1")
# The permutable layer whose unit order a layer's maps follow.
PERMUTATION_OF = {n: n for n in PERMUTABLE} | {"Max_Pool_1": "Conv2D_1", "Max_Pool_2": "Conv2D_2"}
ARTICLES_PARAM_COUNT = 208_982

Shape = tuple[int, int, int]  # (height, width, n_maps); a dense layer is (1, 1, n_nodes)


Count = Annotated[int, Field(ge=1)]


class ModelConfig(BaseModel):
    """The architecture's sizes (`conf/model/`); the schema `config.Config` holds it as `model`."""

    # strict: "5" is not an integer; extra="forbid": a misspelt key is an error, not ignored.
    model_config = ConfigDict(extra="forbid", strict=True)

    filters: Annotated[list[Count], Field(min_length=3, max_length=3)]
    kernel_size: Annotated[int, Field(ge=1, le=3)]
    dense_units: Count
    n_classes: Annotated[int, Field(ge=2)]
    input_shape: Annotated[list[Count], Field(min_length=3, max_length=3)]
    # A multiplier of every convolution's filters and the hidden dense units (the width studies
    # of Morcos et al. 2018 and Entezari et al. 2022 scale every hidden layer alike); 1 is the
    # articles' network. The default lets a model of explicit sizes be written without it.
    width: Annotated[float, Field(gt=0)] = 1.0

    @property
    def conv_filters(self) -> list[int]:
        """Each convolution's number of filters at this width."""
        return [scaled(f, self.width) for f in self.filters]

    @property
    def hidden_units(self) -> int:
        """Dense_1's number of nodes at this width."""
        return scaled(self.dense_units, self.width)

    @model_validator(mode="after")
    def _every_layer_has_a_unit(self) -> Self:
        sizes = dict(zip(CONV_LAYERS, self.conv_filters, strict=True))
        empty = [n for n, k in (sizes | {"Dense_1": self.hidden_units}).items() if k < 1]
        if empty:
            raise ValueError(
                f"model.width={self.width} leaves {', '.join(empty)} with no unit (filters "
                f"{self.filters}, dense_units {self.dense_units} times the width, rounded); "
                "use a larger width"
            )
        return self


def scaled(units: int, width: float) -> int:
    """`units` times `width`, rounded half up (2.5 -> 3: Python's `round` would give 2)."""
    return math.floor(units * width + 0.5)


class ModelFileError(OiplabError, RuntimeError):
    """A model file is missing, corrupt, or not a model this project wrote."""


def layer_shapes(cfg: ModelConfig) -> dict[str, Shape]:
    """Output shape of every layer in `LAYERS` for model settings `cfg` (valid convs, 2x2 pools)."""
    size, shapes = cfg.input_shape[0], {}
    for i, conv in enumerate(CONV_LAYERS):
        size = size - cfg.kernel_size + 1
        shapes[conv] = (size, size, cfg.conv_filters[i])
        if i < len(POOL_LAYERS):
            size //= 2
            shapes[POOL_LAYERS[i]] = (size, size, cfg.conv_filters[i])
    shapes["Dense_1"] = (1, 1, cfg.hidden_units)
    shapes["Dense_2"] = (1, 1, cfg.n_classes)
    return {name: shapes[name] for name in LAYERS}


def build_model(cfg: ModelConfig, l2: float = 0.0) -> keras.Model:
    """Build the (uncompiled) CNN; `l2` adds an L2 penalty on every kernel."""
    import keras
    from keras import layers

    reg = keras.regularizers.L2(l2) if l2 > 0 else None
    conv = {"kernel_size": cfg.kernel_size, "activation": "relu", "kernel_regularizer": reg}
    x = inputs = keras.Input(shape=tuple(cfg.input_shape), name="image")
    for i, name in enumerate(CONV_LAYERS):
        x = layers.Conv2D(cfg.conv_filters[i], name=name, **conv)(x)
        if i < len(POOL_LAYERS):
            x = layers.MaxPooling2D(2, name=POOL_LAYERS[i])(x)
    x = layers.Flatten(name="Flatten")(x)
    x = layers.Dense(cfg.hidden_units, activation="relu", kernel_regularizer=reg, name="Dense_1")(x)
    outputs = layers.Dense(
        cfg.n_classes, activation="softmax", kernel_regularizer=reg, name="Dense_2"
    )(x)
    return keras.Model(inputs, outputs, name="oiplab_cnn")


def cross_entropy_and_accuracy(probabilities: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of class `probabilities` (n, n_classes) for labels `y`.

    The one evaluation of a network's predictions: the training's test metrics and every point
    of the weight interpolation are scored here.
    """
    picked = np.clip(probabilities[np.arange(len(y)), y], 1e-12, 1.0)
    return float(-np.log(picked).mean()), float((probabilities.argmax(axis=1) == y).mean())


# `dvc repro train` trains the seeds of `seeds`, and only those
OTHER_SEED = "for a seed outside `seeds`: `oiplab run train train.seed=N`"


def load_model(path: str | Path, cfg: ModelConfig | None = None) -> keras.Model:
    """Load a saved `.keras` model in Keras' safe mode (no arbitrary code from the file); every
    weight must be finite, and with `cfg` every layer of the shape those settings give."""
    import keras

    path = Path(path)
    if not path.is_file():
        raise missing_input(path, "model file", "train", OTHER_SEED)
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many types for a bad archive
        raise ModelFileError(
            f"{path}: exists but is not a readable Keras model archive "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); delete it and train it "
            f"again: `dvc repro train`; {OTHER_SEED}"
        ) from exc
    missing = [n for n in CONV_LAYERS if n not in {layer.name for layer in model.layers}]
    if missing:
        raise ModelFileError(f"{path}: not an oiplab CNN (no layer(s) {', '.join(missing)})")
    bad = non_finite_weights(model)
    if bad:
        raise NonFiniteError(
            f"{path}: weights not finite: {'; '.join(bad[:3])}; train it again: `dvc repro train`"
        )
    if cfg is not None:
        _check_shapes(model, cfg, path)
    return model


def _check_shapes(model: keras.Model, cfg: ModelConfig, path: Path) -> None:
    """A model of other sizes under the project's layer names is an error naming the layer."""
    found = {layer.name: layer for layer in model.layers}
    for name, expected in layer_shapes(cfg).items():
        if name not in found:
            raise ModelFileError(f"{path}: not an oiplab CNN (no layer {name})")
        shape = tuple(found[name].output.shape[1:])
        if shape != expected[-len(shape) :] or len(shape) not in (1, 3):
            raise ModelFileError(
                f"{path}: layer {name} has output shape {shape}, the config's model "
                f"(`model.*`) gives {expected if len(shape) == 3 else expected[-1:]}; train it "
                "with these settings (`dvc repro train`) or set `model` to the file's sizes"
            )
