"""The articles' CNN: layer names, shapes, parameter count; safe loading of model files."""

from __future__ import annotations

import pytest

from oiplab.errors import MissingInputError
from oiplab.model import (
    ARTICLES_PARAM_COUNT,
    LAYERS,
    PERMUTABLE,
    PERMUTATION_OF,
    ModelFileError,
    build_model,
    layer_shapes,
    load_model,
)
from tests.conftest import model_cfg


def test_articles_architecture():
    model = build_model(model_cfg())
    assert model.count_params() == ARTICLES_PARAM_COUNT == 208_982
    shapes = {layer.name: tuple(layer.output.shape[1:]) for layer in model.layers}
    assert shapes["Conv2D_1"] == (26, 26, 32)
    assert shapes["Max_Pool_1"] == (13, 13, 32)
    assert shapes["Conv2D_2"] == (11, 11, 64)
    assert shapes["Max_Pool_2"] == (5, 5, 64)
    assert shapes["Conv2D_3"] == (3, 3, 128)
    assert shapes["Dense_1"] == (100,)
    assert shapes["Dense_2"] == (10,)


@pytest.mark.parametrize(
    "changes",
    [{}, {"filters": [8, 16, 24], "dense_units": 30}, {"kernel_size": 2}, {"n_classes": 3}],
    ids=["articles", "narrow", "kernel2", "classes3"],
)
def test_layer_shapes_are_the_built_models_shapes(changes):
    """The one arithmetic the project uses for layer shapes agrees with Keras' own."""
    cfg = model_cfg().model_copy(update=changes)
    model = build_model(cfg)
    for name, (h, w, c) in layer_shapes(cfg).items():
        built = tuple(model.get_layer(name).output.shape[1:])
        assert built == ((c,) if name.startswith("Dense") else (h, w, c)), name
    assert [layer.name for layer in model.layers if layer.name in LAYERS] == list(LAYERS)
    assert set(PERMUTATION_OF.values()) == set(PERMUTABLE)


def test_saved_model_loads_in_safe_mode(tmp_path):
    model = build_model(model_cfg())
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
    with pytest.raises(MissingInputError, match=r"not found.*dvc repro train.*train\.seed=N"):
        load_model(tmp_path / "absent.keras")


def test_configured_backend_follows_keras_rules_without_importing_it(tmp_path, monkeypatch):
    import subprocess
    import sys

    script = (
        "import sys; from oiplab.backend import configured_backend; "
        "print(configured_backend(), 'keras' in sys.modules)"
    )

    def ask(**env):
        base = {k: v for k, v in __import__("os").environ.items() if k != "KERAS_BACKEND"}
        out = subprocess.run(
            [sys.executable, "-c", script], env={**base, **env}, capture_output=True, text=True
        )
        return out.stdout.split()

    (tmp_path / "keras.json").write_text('{"backend": "jax"}')
    assert ask(KERAS_HOME=str(tmp_path)) == ["jax", "False"]
    assert ask(KERAS_HOME=str(tmp_path), KERAS_BACKEND="torch") == ["torch", "False"]
    assert ask(KERAS_HOME=str(tmp_path / "none")) == ["tensorflow", "False"]
    assert ask(KERAS_HOME=str(tmp_path), KERAS_BACKEND="") == ["jax", "False"]  # empty: unset


def test_keras_home_is_the_folder_keras_itself_chooses(tmp_path, monkeypatch):
    import os
    import subprocess
    import sys

    from oiplab.backend import keras_home

    script = (
        "from oiplab.backend import keras_home; import keras; "
        "from keras.src.backend.config import keras_home as theirs; print(keras_home(), theirs())"
    )
    env = {k: v for k, v in os.environ.items() if k != "KERAS_HOME"} | {"HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert out.stdout.split() == [str(tmp_path / ".keras")] * 2, out.stderr[-500:]
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "k"))
    assert keras_home() == tmp_path / "k"
    monkeypatch.delenv("KERAS_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(os, "access", lambda *_a, **_k: False)  # a home that is not writable
    assert str(keras_home()) == "/tmp/.keras"
