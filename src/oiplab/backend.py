"""The few places where the Keras backend (TensorFlow by default, JAX on the GPU machines) matters.

Everything else in the project is backend-neutral Keras 3. Nothing here runs at import time.
"""

from __future__ import annotations

import os
from pathlib import Path

from oiplab.errors import OiplabError

JIT_MODES: dict[str, bool | str] = {"auto": "auto", "on": True, "off": False}


def backend_name() -> str:
    import keras

    return keras.backend.backend()


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and the backend, and make the backend's kernels deterministic.

    Same seed, CPU type, software and `threads` (`pin_threads`; any number of cores): bit-identical
    weights after training.
    """
    import keras

    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    keras.utils.set_random_seed(seed)
    if backend_name() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


INTRA_OP_ENV = "TF_NUM_INTRAOP_THREADS"  # TensorFlow reads it when its runtime starts


class ThreadsError(OiplabError, RuntimeError):
    """TensorFlow already runs in this process with another thread count than the one asked."""


def pin_threads(threads: int) -> None:
    """Run TensorFlow's kernels and NumPy's BLAS on `threads` threads, whatever the machine's cores.

    Both split their sums by thread count, so a trained network's weights (TensorFlow) and float64
    products (OpenBLAS) differ in the last bits between thread counts; by default both take one
    thread per core. A fixed count makes machines of other core counts compute the same numbers
    (`tests/test_lanes.py` trains on one core and on two); another CPU type (instruction set) or
    software version may still give other bits. The JAX backend is not pinned.
    """
    import sys

    # Load NumPy's and SciPy's OpenBLAS (each has its own) so the limit finds both: one loaded
    # later would start with a thread per core (its environment variable cannot ask for more).
    import numpy  # noqa: F401
    import scipy.linalg  # noqa: F401
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads, user_api="blas")  # process-wide, from now on
    started_with = _started_with()  # what a TensorFlow already running read
    os.environ[INTRA_OP_ENV] = str(threads)  # a TensorFlow started later, here or in a child
    if "tensorflow" not in sys.modules:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:  # its runtime already started (an earlier stage in this process)
        running = tf.config.threading.get_intra_op_parallelism_threads() or started_with
        if running != threads:
            raise ThreadsError(
                f"threads={threads}, but TensorFlow already runs in this process with {running} "
                "threads (it started before the stage); run the stage in a process of its own"
            ) from None


def _started_with() -> int:
    """TensorFlow's thread count when none was set through its API: the environment's, else one
    per core this process may use."""
    value = os.environ.get(INTRA_OP_ENV, "")
    return int(value) if value.isdigit() and int(value) > 0 else len(os.sched_getaffinity(0))


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
