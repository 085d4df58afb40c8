"""`python -m oiplab.lanes`: the stale training stages, two at a time, as DVC runs of their own;
and the thread count it relies on not changing a trained network's bits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from oiplab.lanes import dvc_command, pairs
from tests.conftest import REPO_ROOT


def test_pairs_are_in_order_with_a_lone_last() -> None:
    assert pairs(["a", "b", "c"]) == [["a", "b"], ["c"]]
    assert pairs(["a", "b"]) == [["a", "b"]]
    assert pairs([]) == []


# A toy pipeline shaped like the study's: `prepare`, then a matrix of trainings that record when
# they ran and with how many threads TensorFlow would have started.
TOY = """\
stages:
  prepare:
    cmd: echo data > data.txt
    outs: [data.txt]
  train:
    matrix:
      seed: [0, 1, 2]
    cmd: >-
      python -c "import os, time, json; t = time.time(); time.sleep(3);
      json.dump({'start': t, 'end': time.time(),
      'threads': os.environ.get('TF_NUM_INTRAOP_THREADS')}, open('out_${item.seed}', 'w'))"
    deps: [data.txt]
    outs:
      - out_${item.seed}
"""


def _lanes(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT / "src"),
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"],
    }
    return subprocess.run(
        [sys.executable, "-m", "oiplab.lanes", *args, "train"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )


@pytest.mark.integration
def test_lanes_train_two_at_a_time_into_dvc_lock(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([dvc_command(), "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "dvc.yaml").write_text(TOY)
    _lanes(tmp_path)
    ran = {s: json.loads((tmp_path / f"out_{s}").read_text()) for s in range(3)}
    assert ran[0]["start"] < ran[1]["end"] and ran[1]["start"] < ran[0]["end"]  # together
    assert ran[2]["start"] >= max(ran[0]["end"], ran[1]["end"])  # then the lone last one
    assert [ran[s]["threads"] for s in range(3)] == [None] * 3  # TensorFlow's default count
    status = subprocess.run(
        [dvc_command(), "status", "--json"], cwd=tmp_path, capture_output=True, text=True
    )
    assert json.loads(status.stdout) == {}  # every stage recorded in dvc.lock, cached
    assert "[lanes] 0 training stage(s) to run" in _lanes(tmp_path, "--dry").stdout


# Trains the default CNN for a few batches of the default size (seeded, op determinism on) and
# prints a digest of its weights.
DIGEST = """\
import hashlib, numpy as np
from oiplab.backend import seed_everything
from oiplab.model import build_model
from oiplab.training import compile_model
from tests.conftest import model_cfg, train_cfg
seed_everything(0)
cfg = train_cfg()
model = build_model(model_cfg(), cfg.l2)
compile_model(model, cfg, n_train=4 * cfg.batch_size)
rng = np.random.default_rng(0)
x = rng.standard_normal((4 * cfg.batch_size, 28, 28, 1)).astype("float32")
y = rng.integers(0, 10, len(x))
model.fit(x, y, batch_size=cfg.batch_size, epochs=1, shuffle=False, verbose=0)
print(hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights())).hexdigest())
"""


def _digests(count: int) -> list[str]:
    """Weight digests of `count` trainings run side by side, each its own process."""
    env = {**os.environ, "PYTHONPATH": f"{REPO_ROOT / 'src'}{os.pathsep}{REPO_ROOT}"}
    procs = [
        subprocess.Popen([sys.executable, "-c", DIGEST], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(count)
    ]
    return [p.communicate()[0].split()[-1] for p in procs]


@pytest.mark.slow
def test_side_by_side_trains_the_bits_of_alone() -> None:
    # what `oiplab.lanes` runs; with one thread each the bits differ (TensorFlow splits its
    # reductions by thread count: benchmarks/results/lanes.md), so the lanes keep the default
    assert _digests(2) == _digests(1) * 2
