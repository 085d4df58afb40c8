"""Check that two versions of the code train the same weights to the last bit: train one seed
with whichever `oiplab` is first on PYTHONPATH, save its weights, then compare two such files.

    # the lead's code, then this checkout's, then the byte-for-byte comparison:
    PYTHONPATH=/work/main/src:$PWD python -m benchmarks.same_weights train --out /tmp/main.npz
    PYTHONPATH=$PWD/src:$PWD python -m benchmarks.same_weights train --out /tmp/branch.npz
    python -m benchmarks.same_weights compare /tmp/main.npz /tmp/branch.npz

`train` uses the default study's settings (conf/) on data/prepared, or with `--synthetic` the
test suite's tiny synthetic images; `--epochs` and `--seed` choose the run.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
from types import SimpleNamespace

import numpy as np

log = logging.getLogger(__name__)


def _synthetic():
    from oiplab.data import make_synthetic
    from oiplab.data.prepared import standardization_of

    raw = make_synthetic(1024, 256, seed=1)
    stats = standardization_of(raw.x_train)
    return SimpleNamespace(
        x_train=stats.apply(raw.x_train[..., None] / 255.0),
        y_train=raw.y_train.astype(np.int64),
        x_test=stats.apply(raw.x_test[..., None] / 255.0),
        y_test=raw.y_test.astype(np.int64),
    )


def train_and_save(args: argparse.Namespace) -> None:
    """Train as the train stage does (a checkpoint folder included) and save every weight, the
    trajectory and the history."""
    import tempfile
    from pathlib import Path

    import oiplab
    from benchmarks.common import default_config
    from oiplab.data import load_prepared
    from oiplab.training import Checkpointing, train

    cfg = default_config()
    updates = {"seed": args.seed, "epochs": args.epochs}
    if args.synthetic:
        data = _synthetic()
        updates |= {"batch_size": 32, "trajectory_every": 16, "eval_batch_size": 128}
    else:
        data = load_prepared(args.prepared)
    train_cfg = cfg.train.model_copy(update=updates)
    with tempfile.TemporaryDirectory() as tmp:
        result = train(data, cfg.model, train_cfg, Checkpointing(Path(tmp) / "ck", "w"), verbose=0)
    arrays = {f"weight_{i}": w for i, w in enumerate(result.model.get_weights())}
    for k, snapshot in enumerate(result.trajectory.weights):
        arrays |= {f"trajectory_{k}_{i}": w for i, w in enumerate(snapshot)}
    arrays["trajectory_steps"] = np.asarray(result.trajectory.steps)
    arrays |= {f"history_{key}": np.asarray(v) for key, v in result.history.items()}
    np.savez(args.out, **arrays)
    log.info("%s: code %s, %s", args.out, oiplab.__file__, digest(arrays))


def digest(arrays: dict[str, np.ndarray]) -> str:
    sha = hashlib.sha256()
    for key in sorted(arrays):
        sha.update(key.encode() + np.ascontiguousarray(arrays[key]).tobytes())
    return sha.hexdigest()[:16]


def compare(a_path: str, b_path: str) -> bool:
    """True when both files hold the same arrays, byte for byte; logs every difference."""
    with np.load(a_path) as a, np.load(b_path) as b:
        a_arrays, b_arrays = {k: a[k] for k in a.files}, {k: b[k] for k in b.files}
    same = a_arrays.keys() == b_arrays.keys()
    for key in sorted(a_arrays.keys() & b_arrays.keys()):
        x, y = a_arrays[key], b_arrays[key]
        if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
            same = False
            log.info(
                "differs: %s (max |diff| %s)",
                key,
                np.max(np.abs(x - y)) if x.shape == y.shape else "shape",
            )
    log.info(
        "%s: %s vs %s (%d arrays)",
        "SAME" if same else "DIFFERENT",
        digest(a_arrays),
        digest(b_arrays),
        len(a_arrays),
    )
    return same


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("train")
    run.add_argument("--out", required=True)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--epochs", type=int, default=1)
    run.add_argument("--prepared", default="data/prepared")
    run.add_argument("--synthetic", action="store_true")
    check = sub.add_parser("compare")
    check.add_argument("files", nargs=2)
    args = parser.parse_args()
    if args.command == "train":
        train_and_save(args)
    else:
        sys.exit(0 if compare(*args.files) else 1)


if __name__ == "__main__":
    main()
