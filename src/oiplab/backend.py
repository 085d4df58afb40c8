"""The few places where the Keras backend (TensorFlow by default, JAX on the GPU machines) matters.

Everything else in the project is backend-neutral Keras 3. Nothing here runs at import time.
"""

from __future__ import annotations

import os
from pathlib import Path

JIT_MODES: dict[str, bool | str] = {"auto": "auto", "on": True, "off": False}


def backend_name() -> str:
    import keras

    return keras.backend.backend()


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and the backend, and make the backend's kernels deterministic.

    Same seed, same machine and backend: bit-identical weights after training.
    """
    import keras

    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    keras.utils.set_random_seed(seed)
    if backend_name() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def jit_compile_arg(choice: str) -> bool | str:
    """Translate the config's `auto|on|off` into Keras' `jit_compile` argument.

    Keras' own `auto` turns XLA off for TensorFlow on a CPU (where XLA measured slower, see
    benchmarks/results/) and on for JAX, which is the per-backend choice we want.
    """
    return JIT_MODES[choice]


def keras_home() -> Path:
    """The folder Keras reads `keras.json` from, by Keras's own rule: `$KERAS_HOME`, else
    `~/.keras`, or `/tmp/.keras` when the home folder is not writable."""
    if "KERAS_HOME" in os.environ:
        return Path(os.environ["KERAS_HOME"])
    base = Path.home() if os.access(Path.home(), os.W_OK) else Path("/tmp")
    return base / ".keras"


def configured_backend() -> str:
    """The backend Keras will use, without importing it (an import costs seconds): the running
    one once Keras is loaded, else what Keras reads at import (a non-empty `KERAS_BACKEND`, then
    the `backend` of `keras.json` in `keras_home()`, else TensorFlow)."""
    import json
    import sys

    if "keras" in sys.modules:
        return backend_name()
    if os.environ.get("KERAS_BACKEND"):  # Keras, too, ignores an empty value
        return os.environ["KERAS_BACKEND"]
    try:
        return str(json.loads((keras_home() / "keras.json").read_text())["backend"])
    except (OSError, ValueError, KeyError, TypeError):
        return "tensorflow"


def versions() -> dict[str, str]:
    """Versions of the numerical stack, for run tags and reports (stages that never use Keras,
    prepare and report, do not import it for this)."""
    import importlib.metadata as md

    out = {"keras_backend": configured_backend()}
    for dist in ("keras", "tensorflow-cpu", "tensorflow", "jax", "numpy", "mlflow", "dvc"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            continue
    return out
