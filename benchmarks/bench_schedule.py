"""The default pipeline from a fresh clone, one stage at a time against `make pipeline`'s two:
wall time, CPU time and every stage's seconds, side by side.

    python -m benchmarks.bench_schedule                      # JOBS=1 and JOBS=2, a clone each
    python -m benchmarks.bench_schedule --jobs 1             # only one of them
    python -m benchmarks.bench_schedule --jobs 1 --ingest 2=/tmp/clone:/tmp/clone.time
    python -m benchmarks.bench_schedule --jobs --ingest 2=/tmp/a:/tmp/a.time --ingest 2=...
    # writes benchmarks/results/schedule.{json,md}

Each way runs `git clone <this checkout's HEAD> <scratch>` and `make pipeline JOBS=<n>` there
under `/usr/bin/time -v` (installation included, as a new user's first command). `--ingest
N=DIR:LOG` (repeatable; rows in the order given, then the ways run) takes a clone where that
already ran (`/usr/bin/time -v make pipeline JOBS=N > LOG 2>&1`), e.g. at another commit, instead
of running it again; each row names its commit. The stage seconds come from the clone's MLflow store
(`benchmarks.pipeline`). The ways run one after another, never side by side: each needs the
whole machine, and nothing else should run meanwhile (the load average is recorded).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import tempfile
from pathlib import Path

from benchmarks import common
from benchmarks.common import write_results
from benchmarks.pipeline import pick
from oiplab.layout import Stage
from oiplab.tracking.query import StageRow

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
TIMED = {  # /usr/bin/time -v's lines
    "wall_s": r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)",
    "user_s": r"User time \(seconds\): (\S+)",
    "sys_s": r"System time \(seconds\): (\S+)",
    "exit": r"Exit status: (\d+)",
}
TRAINING = (Stage.TRAIN, Stage.TRAIN_SPLIT)
# each of these stages' own seconds, shown apart
SHOWN = (Stage.OIP, Stage.COMPARE, Stage.COMPARE_SPLIT, Stage.ALIGNMENT)


def clock(text: str) -> float:
    """Seconds of an `h:mm:ss` or `m:ss.ss` time."""
    seconds = 0.0
    for part in text.split(":"):
        seconds = seconds * 60 + float(part)
    return seconds


def parse_time(log_text: str, log_path: Path) -> dict[str, float]:
    """Wall, user and system seconds and the exit status from `/usr/bin/time -v`'s report."""
    found = {}
    for key, pattern in TIMED.items():
        match = re.search(pattern, log_text)
        if match is None:
            raise SystemExit(f"{log_path}: no `{pattern}` line (was it `/usr/bin/time -v`?)")
        found[key] = clock(match.group(1)) if key == "wall_s" else float(match.group(1))
    return found


def run_clone(jobs: int, scratch: Path) -> tuple[Path, Path]:
    """Clone HEAD into `scratch` and run `make pipeline JOBS=jobs` there: (clone, its log)."""
    way = Path(tempfile.mkdtemp(prefix=f"jobs{jobs}-", dir=scratch))  # `--jobs 2 2`: two clones
    clone, log_path = way / "clone", way / "time.log"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    log.info("JOBS=%d: make pipeline in %s (log %s)", jobs, clone, log_path)
    with log_path.open("wb") as out:
        subprocess.run(
            ["/usr/bin/time", "-v", "make", "pipeline", f"JOBS={jobs}"],
            cwd=clone,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    return clone, log_path


def way_row(jobs: int, clone: Path, log_path: Path) -> dict:
    """One way's row: its times, CPU use and stage seconds (training apart from the rest)."""
    timed = parse_time(log_path.read_text(errors="replace"), log_path)
    head, rows = pick(f"sqlite:///{clone / 'mlflow.db'}", "oiplab", complete=True)
    commit = head.data.tags.get("mlflow.source.git.commit", "?")[:7]
    training = sum(_seconds(r) for r in rows if r.stage in TRAINING)
    other = sum(_seconds(r) for r in rows if r.stage not in TRAINING)
    return {
        "jobs": jobs,
        "commit": commit,
        "exit": int(timed["exit"]),
        "wall_s": round(timed["wall_s"], 1),
        "wall_min": f"{int(timed['wall_s'] // 60)}:{timed['wall_s'] % 60:04.1f}",
        "cpu_s": round(timed["user_s"] + timed["sys_s"], 1),
        "cpu_percent": round(100 * (timed["user_s"] + timed["sys_s"]) / timed["wall_s"]),
        "training_stage_s": round(training, 1),
        "other_stage_s": round(other, 1),
        "stage_runs": len(rows),
        **{
            f"{stage}_s": round(sum(_seconds(r) for r in rows if r.stage == stage), 1)
            for stage in SHOWN
        },
    }


def _run_id(row: dict) -> tuple:
    """What tells one pipeline run's row from another's."""
    return row.get("commit"), row.get("wall_s"), row.get("cpu_s")


def _seconds(row: StageRow) -> float:
    return row.seconds if row.seconds is not None else float("nan")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, nargs="*", default=[1, 2], help="JOBS values to run")
    parser.add_argument(
        "--ingest",
        action="append",
        default=[],
        metavar="N=DIR:LOG",
        help="a clone where `/usr/bin/time -v make pipeline JOBS=N` already ran, and its output",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the rows already in results/schedule.json (runs whose clones are gone) before "
        "the new ones; a new row of the same run (commit, wall and CPU seconds) replaces the old",
    )
    parser.add_argument(
        "--remark", default="", help="a remark on the rows this command adds (e.g. what ran beside)"
    )
    args = parser.parse_args()
    ingested = []
    for item in args.ingest:
        jobs, _, where = item.partition("=")
        clone, _, log_file = where.partition(":")
        if not (jobs.isdigit() and int(jobs) >= 1 and clone and log_file):
            parser.error(f"--ingest {item!r}: expected N=DIR:LOG (N at least 1)")
        for needed in (Path(log_file), Path(clone) / "mlflow.db"):
            if not needed.is_file():
                parser.error(f"--ingest {item!r}: {needed} does not exist")
        ingested.append((int(jobs), Path(clone), Path(log_file)))
    if any(jobs < 1 for jobs in args.jobs):
        parser.error(f"--jobs {args.jobs}: each at least 1")
    if not ingested and not args.jobs:
        parser.error("nothing to measure: give --jobs N or --ingest N=DIR:LOG")
    kept, kept_from = [], "none"
    if args.keep:
        try:
            earlier = json.loads((common.RESULTS / "schedule.json").read_text())
            kept, kept_from = earlier["rows"], earlier["ingested"]
        except (OSError, ValueError, KeyError) as exc:
            parser.error(f"--keep: no rows to keep in {common.RESULTS / 'schedule.json'} ({exc})")
    ways = [(*way, "") for way in ingested]
    if args.jobs:
        scratch = Path(tempfile.mkdtemp(prefix="oiplab-schedule-"))  # the clones stay, to look at
        for jobs in args.jobs:
            ways.append((jobs, *run_clone(jobs, scratch), os.getloadavg()[0]))
    new = [
        way_row(jobs, clone, log_path) | {"load_1min_after": load, "remark": args.remark}
        for jobs, clone, log_path, load in ways
    ]
    rows = [row for row in kept if _run_id(row) not in {_run_id(n) for n in new}] + new
    for row in rows:
        row["wall_ratio_vs_first"] = round(row["wall_s"] / rows[0]["wall_s"], 3)
    sources = [kept_from] if kept_from != "none" else []
    sources += [f"JOBS={j}: {c} ({p})" for j, c, p in ingested if f"{c} ({p})" not in kept_from]
    meta = {
        "workload": "the default study from a fresh clone: `make pipeline JOBS=<n>` (install "
        "included); stage seconds from the clone's MLflow runs",
        "ingested": ", ".join(sources) or "none",
        "load_1min_after": "the 1-minute load average right after each way this command ran "
        "(blank for an ingested way: not known here)",
    }
    path = write_results("schedule", rows, meta)
    log.info("%s", path.read_text())


if __name__ == "__main__":
    main()
