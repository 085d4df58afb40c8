"""The comparison stages' work done twice: `compare` and the seed-split designs' `compare_split`,
old code (one process per design, each measuring the untrained side anew) against new code (both
designs in one `--each-design` process sharing it), alternating in fresh processes on the same
trained networks; and whether their outputs are the same files, byte for byte.

    git archive <old commit> src | tar -x -C /tmp/old       # the code to compare against
    python -m benchmarks.bench_untrained --workspace WS --old-src /tmp/old/src [--repeats 2]
    # WS holds params.yaml (the old code's), data/prepared, models/seed_*,
    # models_split/<design>/seed_* (a pipeline's own folders, or copies); the new code runs
    # with this checkout's params.yaml; writes benchmarks/results/untrained.{json,md}
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import write_results

NEW_SRC = Path(__file__).resolve().parents[1] / "src"
NEW_PARAMS = NEW_SRC.parent / "params.yaml"  # the new code's own (its conf/ may have new keys)
INPUTS = ("data", "models", "models_split", "bin")
# Compared byte for byte: the default study's numbers and each design's answer and numbers
# (`run.json` names the MLflow run, another one per run by design).
COMPARED = ("metrics/headline.json", "metrics/answer.json", "metrics/learning_curves.json")


def commands(variant: str, designs: list[str], with_compare: bool) -> list[list[str]]:
    """The stage processes of one variant, in pipeline order (`compare` first where timed)."""
    stage = [sys.executable, "-m"]
    compare = [[*stage, "oiplab.stages.compare", "--params", "params.yaml"]] if with_compare else []
    split = [*stage, "oiplab.stages.compare_split", "--params", "params.yaml"]
    if variant == "old":
        return [*compare, *([*split, f"split.design={d}"] for d in designs)]
    return [*compare, [*split, "--each-design"]]


def fresh_workspace(workspace: Path, target: Path, params: Path) -> Path:
    """A folder with the inputs of `workspace` linked in, `params` as its params.yaml, and no
    outputs."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for name in INPUTS:
        (target / name).symlink_to((workspace / name).resolve())
    shutil.copyfile(params, target / "params.yaml")
    return target


def run_variant(variant: str, src: Path, folder: Path, designs: list[str], with_compare: bool):
    """Run the variant's stage processes in `folder`; the wall seconds of each."""
    env = {**os.environ, "PYTHONPATH": str(src), "TF_CPP_MIN_LOG_LEVEL": "2"}
    seconds = []
    for cmd in commands(variant, designs, with_compare):
        start = time.perf_counter()
        done = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True)
        seconds.append(time.perf_counter() - start)
        if done.returncode:
            raise SystemExit(f"{variant}: {' '.join(cmd[2:])} failed:\n{done.stderr[-3000:]}")
    return seconds


def outputs(folder: Path, designs: list[str], with_compare: bool) -> list[str]:
    """The files compared between variants, relative to the workspace."""
    found = list(COMPARED) if with_compare else []
    for d in designs:
        found += [
            str(p.relative_to(folder))
            for p in sorted((folder / "artifacts/compare_split" / d).rglob("*"))
            if p.is_file() and p.name != "run.json"
        ]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--old-src", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/bench_untrained"))
    parser.add_argument(
        "--skip-compare",
        action="store_true",
        help="time compare_split only (compare's work is the same in both variants)",
    )
    args = parser.parse_args()
    import yaml

    params = yaml.safe_load((args.workspace / "params.yaml").read_text())
    designs = list(params["split"]["designs"])
    rows, kept, with_compare = [], {}, not args.skip_compare
    for k in range(args.repeats):
        order = ("old", "new") if k % 2 == 0 else ("new", "old")
        for variant in order:
            src = args.old_src if variant == "old" else NEW_SRC
            params = args.workspace / "params.yaml" if variant == "old" else NEW_PARAMS
            folder = fresh_workspace(args.workspace, args.scratch / f"{variant}_{k}", params)
            load = os.getloadavg()[0]
            seconds = run_variant(variant, src, folder, designs, with_compare)
            kept.setdefault(variant, folder)
            rows.append(
                {
                    "repeat": k,
                    "variant": variant,
                    "processes": len(seconds),
                    "compare_s": round(seconds[0], 1) if with_compare else "",
                    "compare_split_s": round(sum(seconds[int(with_compare) :]), 1),
                    "total_s": round(sum(seconds), 1),
                    "load_1min_at_start": round(load, 1),
                }
            )
            print(rows[-1], flush=True)
    old, new = kept["old"], kept["new"]
    files = outputs(old, designs, with_compare)
    same = [f for f in files if (new / f).is_file() and filecmp.cmp(old / f, new / f, False)]
    totals = {v: [r["total_s"] for r in rows if r["variant"] == v] for v in ("old", "new")}
    meta = {
        "repeats": args.repeats,
        "designs": designs,
        "old_src": str(args.old_src),
        "ratio_new_over_old_total": round(sum(totals["new"]) / sum(totals["old"]), 3),
        "files_compared": len(files),
        "files_identical": len(same),
        "files_differing": sorted(set(files) - set(same)),
    }
    print(meta, flush=True)
    print(write_results("untrained", rows, meta))


if __name__ == "__main__":
    main()
