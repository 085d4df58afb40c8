"""Two trainings one after another against the same two side by side (`python -m oiplab.lanes`),
each a fresh process as a DVC stage is: imports, the default CNN built and compiled, a fit of
`--batches` batches of the default size on fixed random images, weights digested. The settings
interleaved over the repeats (the machine is shared); ratios are side-by-side / one-after-another.

    python -m benchmarks.bench_lanes
    # writes benchmarks/results/lanes.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

from benchmarks.common import write_results

ROOT = Path(__file__).resolve().parents[1]

FIT = """\
import hashlib, sys, numpy as np
from oiplab.backend import seed_everything
from oiplab.model import build_model
from oiplab.training import compile_model
from benchmarks.common import default_config
cfg = default_config()
batches = int(sys.argv[1])
seed_everything(0)
model = build_model(cfg.model, cfg.train.l2)
compile_model(model, cfg.train, n_train=batches * cfg.train.batch_size)
rng = np.random.default_rng(0)
x = rng.standard_normal((batches * cfg.train.batch_size, 28, 28, 1)).astype("float32")
y = rng.integers(0, 10, len(x))
model.fit(x, y, batch_size=cfg.train.batch_size, epochs=1, shuffle=False, verbose=0)
print(hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights())).hexdigest())
"""

ONE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
SETTINGS = {
    "one after another (default threads)": (False, {}),
    "side by side (default threads each)": (True, {}),
    "side by side (one thread each)": (True, ONE_THREAD),
}


NOTES = """
Read with care: these runs were taken while other work loaded the machine (the 1-minute load
average is in the header; 2 cores). There, two processes of two threads each also take a larger
share of the CPU from the other users than one process does, which flatters "side by side";
a quiet machine's ratio is still to be measured. Two runs so far (ratios side by side / one after
another, median of 2 rounds each): 120 batches, load ~15-27: default threads 0.594, one thread
0.765; 400 batches, load ~10: default threads 0.681, one thread 1.333. In every run the default
thread count gave the weights of a training alone (`weights_as_default`) and one thread per
process did not, so `python -m oiplab.lanes` keeps the default count.
"""


def _start(batches: int, extra: dict[str, str]) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        **extra,
    }
    cmd = [sys.executable, "-c", FIT, str(batches)]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)


def two_trainings(batches: int, together: bool, extra: dict[str, str]) -> tuple[float, list[str]]:
    """Wall seconds of two training processes, and their weight digests."""
    start = time.perf_counter()
    if together:
        procs = [_start(batches, extra), _start(batches, extra)]
    else:
        procs = []
        for _ in range(2):
            procs.append(_start(batches, extra))
            procs[-1].wait()
    digests = [p.communicate()[0].split()[-1] for p in procs]
    return time.perf_counter() - start, digests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    seconds: dict[str, list[float]] = {k: [] for k in SETTINGS}
    digests: dict[str, set[str]] = {k: set() for k in SETTINGS}
    for _ in range(args.repeats):
        for name, (together, extra) in SETTINGS.items():
            wall, found = two_trainings(args.batches, together, extra)
            seconds[name].append(wall)
            digests[name] |= set(found)
    serial = seconds["one after another (default threads)"]
    reference = digests["one after another (default threads)"]
    rows = [
        {
            "setting": name,
            "median_s": round(median(values), 2),
            "ratio_vs_one_after_another": round(
                median(v / s for v, s in zip(values, serial, strict=True)), 3
            ),
            "weights_as_default": digests[name] == reference,
        }
        for name, values in seconds.items()
    ]
    meta = {
        "workload": f"2 processes x {args.batches} batches",
        "repeats": args.repeats,
        "load_average_1min_at_end": round(os.getloadavg()[0], 1),  # other users of the machine
    }
    path = write_results("lanes", rows, meta)
    path.write_text(path.read_text() + NOTES)
    print(json.dumps(rows, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
