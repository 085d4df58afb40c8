"""The pipeline's own overheads: what a stage process pays before and around its work (the
interpreter, imports, an MLflow run, a model load, the prepared data, DVC's own start), each
measured in a fresh process, the items interleaved over the repeats (the machine is shared).

    python -m benchmarks.bench_overheads          # needs the default study's models/ and data/
    # writes benchmarks/results/overheads.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

from benchmarks.common import write_results

ROOT = Path(__file__).resolve().parents[1]

# Each snippet prints the seconds of the part measured (after what it needs is imported), so the
# interpreter's own start is counted once, in its own row.
SNIPPETS = {
    "interpreter start (python -c pass)": None,
    "import oiplab.stages.<stage> (module only)": "import oiplab.stages.compare",
    "import numpy": "import numpy",
    "import tensorflow + keras": "import keras",
    "import mlflow": "import mlflow",
    "open + close one MLflow run (sqlite store, existing)": "RUN",
    "load one trained model (model.keras)": "MODEL",
    "read the prepared training split (60,000 images)": "TRAIN",
    "read the prepared test split (10,000 images)": "TEST",
}

# How often the default `make pipeline` pays each item (dvc.yaml, seeds 0-4, the seed-split design
# of 2 designs x 2 members): 19 stage processes (prepare, 5 train, 4 train_split, select_images,
# activations, oip, precursor, compare, compare_split, alignment, oip_compare, report), 17 of
# them import TensorFlow (prepare and report do not); 32 stage runs (the three `--each-seed`
# stages open one per seed, `compare_split --each-design` one per design); models loaded:
# select_images, activations, oip, precursor, compare, oip_compare 5 each, compare_split 5 (the
# shared seed's once, 2 members per design); the test split read by every stage but prepare and
# report, once per seed in the `--each-seed` stages (once for both designs); the training split
# by the 9 trainings and the two comparison stages (their interpolation's training images).
PER_PIPELINE = {
    "interpreter start (python -c pass)": 19,
    "import oiplab.stages.<stage> (module only)": 19,
    "import numpy": 19,
    "import tensorflow + keras": 17,
    "import mlflow": 19,
    "open + close one MLflow run (sqlite store, existing)": 32,
    "load one trained model (model.keras)": 35,
    "read the prepared training split (60,000 images)": 11,
    "read the prepared test split (10,000 images)": 27,
    "dvc start (dvc version)": 1,
    "dvc status of the default pipeline": 1,
}

SETUP = {
    "RUN": (
        "import mlflow\nmlflow.set_tracking_uri(URI)\nmlflow.set_experiment('overheads')\n",
        "with mlflow.start_run():\n    mlflow.log_metric('x', 1.0)\n",
    ),
    "MODEL": (
        "import keras\nfrom oiplab.model import load_model\n",
        "load_model('models/seed_0/model.keras')\n",
    ),
    "TRAIN": (
        "from oiplab.data import load_prepared\nd = load_prepared('data/prepared')\n",
        "d.x_train\n",
    ),
    "TEST": (
        "from oiplab.data import load_prepared\nd = load_prepared('data/prepared')\n",
        "d.x_test\n",
    ),
}


NOTES = """
Rows overlap (importing TensorFlow or MLflow imports NumPy too); `pipeline_s` is the row's median
times how often the default `make pipeline` pays it (`times_per_pipeline`, see PER_PIPELINE in
benchmarks/bench_overheads.py), an upper bound on what removing it could save.

What this says, and what was done (issue 28, item 2):
- Stage modules import nothing heavy at module level already (TensorFlow, MLflow and SciPy are
  imported where used): `import oiplab.stages.<stage>` is the module row. 18 of the 20 stage
  processes need TensorFlow (every stage that loads or trains a network); only prepare and
  report do without it, and they do not import it. What is left per process is the interpreter,
  TensorFlow + Keras, MLflow and one run, paid once per DVC stage.
- The trainings are 9 of the 20 processes and most of the pipeline's time; `python -m
  oiplab.lanes` (run by `make pipeline` before `dvc repro`) runs every stale stage as soon as
  the stages it reads are done, two at a time, so one stage's single-core parts (start-up,
  data, evaluation, logging) overlap another's work (benchmarks/results/lanes.md for two
  trainings, dag.md for the whole pipeline). One thread per process would change the weights'
  last bits; the lanes keep TensorFlow's default thread count, which gives the bits of a
  training alone.
- The comparison recomputed work within a layer: the rotation null recomputed each trained
  pair's correlations (14% of the matching's samples in a py-spy profile of the stage), each
  network's Gram was computed once per pair and again for its sibling rate, the trained x
  untrained cross pairs ran a full match (permutation, margins) where only the matched r is used,
  and per-image moments were kept for every trained pair where only the two-seed bootstrap
  reads them. Now each is computed once, or where used; the answer is the same to the bit
  (a digest of `compare_networks`' answer and details, old against new code, 3 seeds and 2).
- Left: the untrained networks' side of the comparison (their outputs, their pairs' matches,
  halves and linear fits) is the same in `compare` and both `compare_split` stages and is
  computed three times; sharing it needs a DVC stage of its own (a dvc.yaml change).
"""


def _script(code: str | None, uri: str) -> str:
    if code is None:
        return "pass"
    setup, timed_part = SETUP.get(code, ("", code + "\n"))
    return (
        f"URI = {uri!r}\n{setup}import time\nt = time.perf_counter()\n{timed_part}"
        "print(time.perf_counter() - t)\n"
    )


def measure(code: str | None, uri: str, env: dict[str, str]) -> float:
    """Seconds of one item in a fresh process (the whole process for the interpreter's row)."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _script(code, uri)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - start
    return wall if code is None else float(done.stdout.strip().splitlines()[-1])


def dvc_seconds(args: list[str], env: dict[str, str]) -> float:
    dvc = shutil.which("dvc", path=str(Path(sys.executable).parent)) or "dvc"
    start = time.perf_counter()
    subprocess.run([dvc, *args], cwd=ROOT, env=env, capture_output=True, check=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    seconds: dict[str, list[float]] = {k: [] for k in SNIPPETS}
    seconds |= {"dvc start (dvc version)": [], "dvc status of the default pipeline": []}
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        measure("RUN", uri, env)  # creates the store (its migrations are a first run's cost)
        for _ in range(args.repeats):  # interleaved: every item once per round
            for name, code in SNIPPETS.items():
                seconds[name].append(measure(code, uri, env))
            seconds["dvc start (dvc version)"].append(dvc_seconds(["version"], env))
            seconds["dvc status of the default pipeline"].append(dvc_seconds(["status"], env))
    rows = [
        {
            "item": name,
            "median_s": round(median(values), 3),
            "min_s": round(min(values), 3),
            "max_s": round(max(values), 3),
            "times_per_pipeline": PER_PIPELINE[name],
            "pipeline_s": round(median(values) * PER_PIPELINE[name], 1),
        }
        for name, values in seconds.items()
    ]
    meta = {"repeats": args.repeats, "load_average_1min_at_end": round(os.getloadavg()[0], 1)}
    path = write_results("overheads", rows, meta)
    path.write_text(path.read_text() + NOTES)
    print(json.dumps(rows, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
