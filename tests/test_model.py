"""The articles' CNN: layer names, shapes, parameter count; safe loading of model files."""

from __future__ import annotations

import pytest

from oiplab.config import ModelConfig
from oiplab.model import ARTICLES_PARAM_COUNT, ModelFileError, build_model, load_model


def test_articles_architecture():
    model = build_model(ModelConfig())
    assert model.count_params() == ARTICLES_PARAM_COUNT == 208_982
    shapes = {layer.name: tuple(layer.output.shape[1:]) for layer in model.layers}
    assert shapes["Conv2D_1"] == (26, 26, 32)
    assert shapes["Max_Pool_1"] == (13, 13, 32)
    assert shapes["Conv2D_2"] == (11, 11, 64)
    assert shapes["Max_Pool_2"] == (5, 5, 64)
    assert shapes["Conv2D_3"] == (3, 3, 128)
    assert shapes["Dense_1"] == (100,)
    assert shapes["Dense_2"] == (10,)


def test_saved_model_loads_in_safe_mode(tmp_path):
    model = build_model(ModelConfig())
    model.save(tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    assert loaded.count_params() == model.count_params()


def test_corrupt_or_foreign_model_files_give_clear_errors(tmp_path):
    import keras

    (tmp_path / "junk.keras").write_bytes(b"not a zip archive")
    with pytest.raises(ModelFileError, match="junk.keras.*not a readable Keras model"):
        load_model(tmp_path / "junk.keras")
    foreign = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    foreign.save(tmp_path / "foreign.keras")
    with pytest.raises(ModelFileError, match="not an oiplab CNN"):
        load_model(tmp_path / "foreign.keras")
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "absent.keras")
