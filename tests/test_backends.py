"""The engine and the stages with Keras' JAX backend (the GPU machines' engine), on CPU: the same
OIPs as with TensorFlow, and every stage running with TensorFlow made unimportable, as on the GPU
machines, which have none."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("jax") is None, reason="jax not installed (pip install -e '.[jax]')"
)

# Makes `import tensorflow` fail in the child process, as on a machine without it.
HIDE_TENSORFLOW = """
import sys
class _NoTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ModuleNotFoundError("tensorflow is hidden for this test")
sys.meta_path.insert(0, _NoTensorFlow())
"""

ENGINE_SCRIPT = """
import json, sys
import numpy as np
from tests.test_oip import SETTINGS, _starts, pattern, tiny_network
from oiplab.oip.engine import ascend
from oiplab.oip.objectives import channel_objectives
model = tiny_network([pattern("diagonal"), pattern("blob")], dead=1)
r = ascend(model, _starts(3), channel_objectives(np.array([0, 1, 2]), (1, 1, 3)), SETTINGS,
           progress=None)
np.save(sys.argv[1], r.images)
print(json.dumps({"silent": r.silent.tolist(), "tf": "tensorflow" in sys.modules}))
"""

STAGES_SCRIPT = """
import json, os, sys
from tests.conftest import compose_typed
from oiplab.stages import activations, alignment, compare, compare_split, oip, oip_compare
from oiplab.stages import precursor, prepare, report, select_images, train, train_split
cfg = compose_typed(
    "experiment=smoke", "tracking.enabled=false", "train.epochs=3", "split.members=[1]"
)
prepare.run(cfg)
for seed in cfg.seeds:
    cfg.train.seed = seed
    train.run(cfg)
select_images.run(cfg)
for seed in cfg.seeds:
    cfg.train.seed = seed
    activations.run(cfg)
    oip.run(cfg)
    precursor.run(cfg)
compare.run(cfg)
for design in cfg.split.designs:
    cfg.split.design, cfg.train.seed = design, 1
    train_split.run(cfg)
    compare_split.run(cfg)
alignment.run(cfg)
oip_compare.run(cfg)
report.run(cfg)
print(json.dumps({"tf": "tensorflow" in sys.modules}))
"""


def _python(script: str, backend: str, cwd: Path, *args: str) -> dict:
    if backend == "jax":
        script = HIDE_TENSORFLOW + script
    env = {
        **os.environ,
        "KERAS_BACKEND": backend,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    proc = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_oip_engine_agrees_between_tensorflow_and_jax(tmp_path):
    on_jax = _python(ENGINE_SCRIPT, "jax", tmp_path, str(tmp_path / "jax.npy"))
    on_tf = _python(ENGINE_SCRIPT, "tensorflow", tmp_path, str(tmp_path / "tf.npy"))
    assert on_jax["tf"] is False and on_tf["tf"] is True
    assert on_jax["silent"] == on_tf["silent"] == [False, False, True]
    np.testing.assert_allclose(
        np.load(tmp_path / "jax.npy"), np.load(tmp_path / "tf.npy"), atol=1e-4
    )


@pytest.mark.slow
def test_every_stage_runs_on_jax_without_tensorflow(tmp_path):
    result = _python(STAGES_SCRIPT, "jax", tmp_path)
    assert result["tf"] is False
    assert (tmp_path / "reports" / "index.html").stat().st_size > 10_000
