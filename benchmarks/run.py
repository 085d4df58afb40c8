"""Run every benchmark in one go and write benchmarks/results/summary.md.

python -m benchmarks.run            # every benchmark below (needs `dvc repro`)
python -m benchmarks.run --pipeline # also times the default `dvc repro` in a fresh copy
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import RESULTS
from oiplab.io import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]


def _module(name: str, *args: str) -> None:
    print(f"== {name} {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, "-m", name, *args], cwd=ROOT, check=True)


def pipeline_wall_time() -> float:
    """Seconds of a from-scratch `dvc repro` of the default study in a clone of this checkout."""
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        env = {
            **os.environ,
            "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"],
        }
        start = time.perf_counter()
        subprocess.run(
            [shutil.which("dvc", path=env["PATH"]) or "dvc", "repro"],
            cwd=clone,
            env=env,
            check=True,
        )
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", action="store_true")
    args = parser.parse_args()
    _module("benchmarks.bench_train")
    _module("benchmarks.bench_oip", "--full")
    _module("benchmarks.bench_halving")
    _module("benchmarks.bench_precursor")
    _module("benchmarks.bench_rescue")
    _module("benchmarks.bench_screen")
    _module("benchmarks.bench_compare")
    names = ("train", "oip", "halving", "precursor", "rescue", "screen", "compare")
    parts = [(RESULTS / f"{n}.md").read_text() for n in names]
    if args.pipeline:
        seconds = pipeline_wall_time()
        parts.append(f"# pipeline\n\ndefault `dvc repro` from scratch: {seconds:.0f} s\n")
    atomic_write_text(RESULTS / "summary.md", "\n".join(parts))
    print(f"wrote {RESULTS / 'summary.md'}")


if __name__ == "__main__":
    main()
