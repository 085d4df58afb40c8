"""Train the stale seeds two at a time, before `dvc repro` runs the rest of the pipeline.

    python -m oiplab.lanes                 # `make pipeline` runs this, then `dvc repro`
    python -m oiplab.lanes --dry           # only say which training stages would run, paired

DVC runs a pipeline's stages one after another. A training stage is not all fit: importing
TensorFlow and MLflow, reading the data, evaluating and logging the model run on one core, so
two trainings side by side finish sooner than one after another on a 2-core machine
(benchmarks/results/lanes.md). This runs the stale training stages (`train@<seed>`,
`train_split@<design>-<member>`) in pairs: one `dvc repro --single-item <stage>` per training,
two at a time. Each is an ordinary DVC run of that stage (DVC releases its repository lock while
a stage's command runs, and records each stage in dvc.lock and its cache as `dvc repro` does), so
the per-seed caching and the stages' MLflow runs are those `dvc repro` alone would give; the
`dvc repro` after this finds them up to date. Each process keeps TensorFlow's default thread
count: one thread per process changes the weights' last bits (TensorFlow splits its reductions by
thread count), the default count gives the bits a stage run alone gives (tests/test_lanes.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from oiplab import logs
from oiplab.errors import OiplabError

log = logging.getLogger(__name__)

TRAINING_STAGES = ("train", "train_split")  # dvc.yaml's matrix stages that train a network


class LaneError(OiplabError):
    """A DVC command of the paired training failed."""


def dvc_command() -> str:
    """The `dvc` next to this interpreter (the project's .venv), else the one on PATH."""
    return shutil.which("dvc", path=str(Path(sys.executable).parent)) or "dvc"


def _dvc(args: Sequence[str], capture: bool = False) -> str:
    """Run `dvc <args>` (waiting for DVC's lock, not failing on it); its output if `capture`."""
    cmd = [dvc_command(), "--wait-for-lock", *args]
    done = subprocess.run(cmd, text=True, check=False, capture_output=capture)
    if done.returncode != 0:
        raise LaneError(f"`dvc {' '.join(args)}` failed with exit code {done.returncode}")
    return done.stdout or ""


def stale_stages(groups: Sequence[str]) -> list[str]:
    """The stages of `groups` (dvc.yaml stage names, a matrix stage's name meaning all of its
    items) that `dvc repro` would run, in dvc.yaml's order."""
    names = _dvc(["stage", "list", "--name-only"], capture=True).split()
    members = [n for n in names if n.split("@", 1)[0] in groups]
    if not members:
        return []
    status = json.loads(_dvc(["status", "--json", *members], capture=True) or "{}")
    return [n for n in members if n in status]


def pairs(stages: Sequence[str]) -> list[list[str]]:
    """The stages two at a time, in order (a lone last one alone)."""
    return [list(stages[k : k + 2]) for k in range(0, len(stages), 2)]


def run_together(stages: Sequence[str]) -> None:
    """`dvc repro --single-item` of each stage, all at once; wait for all, then fail naming
    every stage that failed."""
    procs = {
        s: subprocess.Popen([dvc_command(), "--wait-for-lock", "repro", "--single-item", s])
        for s in stages
    }
    failed = [s for s, p in procs.items() if p.wait() != 0]
    if failed:
        raise LaneError(f"training stage(s) {', '.join(failed)} failed (see their output above)")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry", action="store_true", help="only list the pairs")
    parser.add_argument(
        "groups", nargs="*", default=list(TRAINING_STAGES), help="dvc.yaml's training stages"
    )
    args = parser.parse_args(argv)
    logs.setup("lanes")
    try:
        if not args.dry:
            _dvc(["repro", "prepare"])  # the trainings' input, made once before they share it
        todo = pairs(stale_stages(args.groups))
        log.info("%d training stage(s) to run, paired: %s", sum(map(len, todo)), todo)
        for group in [] if args.dry else todo:
            run_together(group)
    except LaneError as exc:
        log.error("%s", exc)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
