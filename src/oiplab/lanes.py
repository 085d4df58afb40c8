"""Run the pipeline's stale stages as soon as the stages they read are done, N at a time.

    python -m oiplab.lanes                 # `make pipeline` runs this, then `dvc repro`
    python -m oiplab.lanes --jobs 3        # at most 3 stages at once (default 2)
    python -m oiplab.lanes --dry           # only list the stages to run and what each waits for
    python -m oiplab.lanes train           # only these targets and their stale upstream stages

DVC runs a pipeline's stages one after another. Much of a stage is one core's work (importing
TensorFlow and MLflow, reading data, saving and logging models), so on a 2-core machine the
other core idles (benchmarks/results/lanes.md, dag.md). This takes the stages `dvc repro` would
consider, in DVC's own graph (`dvc.repo.Repo`: the same stage collection, frozen stages and
dependency edges as `dvc repro`), and starts each stale stage, and each stage downstream of one,
once every stage it depends on has finished: one `dvc repro --single-item <stage>` per stage, at
most `--jobs` at a time. Each is an ordinary DVC run of that stage (DVC releases its repository
lock while a stage's command runs and records the stage in dvc.lock and its cache as `dvc repro`
does), so the `dvc repro` after this finds everything up to date and dvc.lock is what `dvc repro`
alone gives. Each stage process runs TensorFlow and BLAS on the study's `threads` (2 by default,
`oiplab.backend.pin_threads`), whether it runs alone or beside another: one thread per process
would change a trained network's last bits (TensorFlow splits its reductions by thread count),
and two processes of two threads each give the bits of one alone (tests/test_lanes.py).

A stage that dvc.yaml marks `meta: {lanes: alone}` runs with no other beside it, after the
stages that share the machine well, once nothing else is ready. These are the comparisons. In two
fresh-clone runs (benchmarks/results/schedule.md) `alignment` took 177 s beside `compare_split`
and 33 s alone, `compare` 269 s beside other stages and 83 s alone. A profile of `alignment`
beside `compare_split` put the lost time in its float64 matrix products (NumPy's OpenBLAS, a
thread per core): `cross_correlation` 66 s there, 6.6 s alone. One BLAS thread
(OPENBLAS_NUM_THREADS=1) removed most of the loss in one try, but it changed their float64
results in the last bits (0.9874583082794 became 0.9874583082793871), as TensorFlow's thread
count does the networks', so the stages keep the study's count and run alone instead.

Every stage of one call belongs to one MLflow parent run: the children inherit OIPLAB_EXECUTION
(`make pipeline` sets it; this sets one when it is unset). Each stage's output goes to its log,
`.dvc/tmp/lanes/<stage>.log`; the terminal gets one line per start and end. A stage that fails
stops its dependants, not the stages beside it: the running ones finish, the independent ones
still run, and the exit status is 1, naming each failed stage and its log. Ctrl-C (or SIGTERM)
interrupts the running stages and waits for them to close their runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from oiplab import logs
from oiplab.errors import OiplabError

log = logging.getLogger(__name__)

LOG_DIR = Path(".dvc") / "tmp" / "lanes"  # DVC's own scratch folder (git-ignored by .dvc/)
POLL_S = 0.2  # how often the running stages are checked: small beside a stage's seconds
STOP_GRACE_S = 60.0  # after Ctrl-C, how long a stage may take to close its MLflow run
TAIL_LINES = 15  # of a failed stage's log, shown on the terminal
META_KEY, ALONE = "lanes", "alone"  # dvc.yaml: a stage's `meta: {lanes: alone}`


class LaneError(OiplabError):
    """The pipeline's graph could not be read, or a stage failed."""


def dvc_command() -> str:
    """The `dvc` next to this interpreter (the project's .venv), else the one on PATH."""
    return shutil.which("dvc", path=str(Path(sys.executable).parent)) or "dvc"


@dataclass(frozen=True)
class Plan:
    """The stages to run, in `dvc repro`'s order, and the planned stages each one waits for."""

    stages: tuple[str, ...]
    needs: Mapping[str, frozenset[str]]
    alone: frozenset[str] = frozenset()  # stages that run with no other beside them

    def dependants(self, stage: str) -> set[str]:
        """The planned stages downstream of `stage`, however far."""
        found: set[str] = set()
        frontier = [stage]
        while frontier:
            current = frontier.pop()
            for other in self.stages:
                if current in self.needs[other] and other not in found:
                    found.add(other)
                    frontier.append(other)
        return found

    def by_priority(self) -> list[str]:
        """The stages with the most stages downstream first (they unlock the most work, and the
        long chains, like oip -> precursor, start early), ties in `dvc repro`'s order."""
        downstream = {s: len(self.dependants(s)) for s in self.stages}
        return sorted(self.stages, key=lambda s: -downstream[s])  # sorted() is stable

    def direct_needs(self, stage: str) -> list[str]:
        """The stages `stage` waits for that no other of them already waits for (for reading)."""
        implied: set[str] = set()
        frontier = [n for u in self.needs[stage] for n in self.needs[u]]
        while frontier:
            current = frontier.pop()
            if current not in implied:
                implied.add(current)
                frontier.extend(self.needs[current])
        return sorted(self.needs[stage] - implied)


def plan_from_graph(
    order: Sequence[str],
    upstream: Mapping[str, Sequence[str]],
    stale: set[str],
    alone: set[str] | frozenset[str] = frozenset(),
) -> Plan:
    """The stale stages of `order` and every stage downstream of one (`dvc repro` reconsiders
    those after their inputs change), each with the planned stages it waits for.

    Args:
        order: every stage `dvc repro` considers, in its order (dependencies first).
        upstream: the stages each stage reads outputs of.
        stale: the stages changed now (`dvc status`).
        alone: the stages dvc.yaml marks `meta: {lanes: alone}`.
    """
    chosen: list[str] = []
    for stage in order:
        if stage in stale or any(u in chosen for u in upstream.get(stage, ())):
            chosen.append(stage)
    needs = {s: frozenset(u for u in upstream.get(s, ()) if u in chosen) for s in chosen}
    return Plan(tuple(chosen), needs, frozenset(s for s in chosen if s in alone))


def read_plan(root: Path, targets: Sequence[str]) -> Plan:
    """What `dvc repro [targets]` in `root` would run, from DVC's own graph and status."""
    from dvc.exceptions import DvcException  # type: ignore[import-untyped]
    from dvc.repo import Repo  # type: ignore[import-untyped]
    from dvc.repo.reproduce import (  # type: ignore[import-untyped]
        collect_stages,
        get_active_graph,
        plan_repro,
    )

    try:
        with Repo(str(root)) as repo:
            # the graph and stage order `dvc repro` itself builds (frozen stages cut loose)
            graph = get_active_graph(repo.index.graph)
            steps = plan_repro(graph, collect_stages(repo, list(targets) or ["dvc.yaml"]))
            order = [s.addressing for s in steps]
            # DVC's edges point from a stage to the stages it reads
            upstream = {s.addressing: [u.addressing for u in graph.successors(s)] for s in steps}
            stale = set(repo.status(targets=order)) if order else set()
            alone = {s.addressing for s in steps if (s.meta or {}).get(META_KEY) == ALONE}
    except DvcException as exc:
        raise LaneError(f"DVC could not read the pipeline in {root}: {exc}") from exc
    return plan_from_graph(order, upstream, stale, alone)


@dataclass
class Running:
    """A stage's `dvc repro --single-item` process."""

    stage: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]
    started: float = field(default_factory=time.monotonic)


def log_path(root: Path, stage: str) -> Path:
    """Where a stage's output goes (a stage of another dvc.yaml has a path in its name)."""
    return root / LOG_DIR / (stage.replace("/", "_").replace(":", "_") + ".log")


def start(root: Path, stage: str, env: Mapping[str, str]) -> Running:
    """Start `dvc repro --single-item <stage>` in its own process group (so that Ctrl-C reaches
    it through this scheduler, which then waits for it), its output into its log."""
    path = log_path(root, stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = path.open("wb")
    cmd = [dvc_command(), "--wait-for-lock", "repro", "--single-item", stage]
    proc = subprocess.Popen(
        cmd, cwd=root, env=dict(env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )
    return Running(stage, proc, path, out)


def tail(path: Path, lines: int = TAIL_LINES) -> list[str]:
    """The last `lines` lines of a log."""
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


@dataclass(frozen=True)
class Settings:
    """How the stages run: at most `jobs` at once, in `root`, with `env` as their environment."""

    root: Path
    jobs: int
    env: Mapping[str, str]


@dataclass
class Progress:
    """What has happened to the planned stages so far."""

    plan: Plan
    done: list[str] = field(default_factory=list)
    failed: dict[str, Path] = field(default_factory=dict)  # stage -> its log
    blocked: set[str] = field(default_factory=set)  # downstream of a failed stage: never run

    def ready(self, waiting: Sequence[str]) -> list[str]:
        """The waiting stages whose upstream stages are all done, in `waiting`'s order."""
        finished = set(self.done)
        return [s for s in waiting if self.plan.needs[s] <= finished]

    def count(self) -> str:
        return f"{len(self.done)} of {len(self.plan.stages)} done"


def startable(plan: Plan, ready: Sequence[str], running: Sequence[str], jobs: int) -> list[str]:
    """The ready stages to start now, in `ready`'s order: up to `jobs` at once, except that a
    stage marked alone runs with no other. The others go first: an alone stage starts once
    nothing runs and no other stage is ready (it waits rather than hold the machine while
    stages that share it well could run two at a time)."""
    if any(r in plan.alone for r in running):
        return []
    shared = [s for s in ready if s not in plan.alone]
    if shared or running:
        return shared[: jobs - len(running)]
    return list(ready[:1])


def run_plan(plan: Plan, settings: Settings) -> Progress:
    """Run the plan's stages as their upstream stages finish, at most `settings.jobs` at once;
    on Ctrl-C (KeyboardInterrupt) stop the running ones and re-raise."""
    progress = Progress(plan)
    waiting = plan.by_priority()
    running: dict[str, Running] = {}
    try:
        while waiting or running:
            for stage in startable(plan, progress.ready(waiting), list(running), settings.jobs):
                waiting.remove(stage)
                running[stage] = start(settings.root, stage, settings.env)
                shown = f"{stage} alone" if stage in plan.alone else stage
                log.info("start %s (running: %s; %s)", shown, ", ".join(running), progress.count())
            if not running:  # only stages downstream of a failure are left
                break
            time.sleep(POLL_S)
            for stage in [s for s, r in running.items() if r.proc.poll() is not None]:
                _finish(running.pop(stage), progress, waiting)
    except KeyboardInterrupt:
        stop(list(running.values()))
        raise
    return progress


def _finish(job: Running, progress: Progress, waiting: list[str]) -> None:
    """Record a finished stage; a failure blocks its dependants and says where its log is."""
    job.log_file.close()
    seconds = time.monotonic() - job.started
    if job.proc.returncode == 0:
        progress.done.append(job.stage)
        log.info("done %s in %.1f s (%s)", job.stage, seconds, progress.count())
        return
    progress.failed[job.stage] = job.log_path
    blocked = sorted(progress.plan.dependants(job.stage) & set(waiting))
    progress.blocked |= set(blocked)
    waiting[:] = [s for s in waiting if s not in progress.blocked]
    log.error(
        "stage %s failed (its `dvc repro` exited %d after %.1f s; the stage's own error ends its "
        "log: %s)%s",
        job.stage,
        job.proc.returncode,
        seconds,
        job.log_path,
        f"; not run: {', '.join(blocked)}" if blocked else "",
    )
    for line in tail(job.log_path):  # the log's end, as it is (not each an error of ours)
        log.info("  %s | %s", job.stage, line)


def stop(running: Sequence[Running]) -> None:
    """Interrupt the running stages as Ctrl-C in a terminal would (each stage closes its MLflow
    run KILLED), and wait for them; kill what is still running after STOP_GRACE_S."""
    for job in running:
        log.warning("interrupting %s", job.stage)
        _signal_group(job.proc, signal.SIGINT)
    deadline = time.monotonic() + STOP_GRACE_S
    for job in running:
        try:
            job.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("killing %s: still running %.0f s after Ctrl-C", job.stage, STOP_GRACE_S)
            _signal_group(job.proc, signal.SIGKILL)
            job.proc.wait()
        job.log_file.close()


def _signal_group(proc: subprocess.Popen[bytes], signum: int) -> None:
    with suppress(ProcessLookupError):  # already gone
        os.killpg(proc.pid, signum)  # the dvc process and the stage command it started


def stage_env() -> dict[str, str]:
    """The stages' environment: this one, with one pipeline execution (one MLflow parent run)
    for all of them; `make pipeline` sets it for its final `dvc repro` too."""
    env = dict(os.environ)
    if not env.get("OIPLAB_EXECUTION"):
        stamp = time.strftime("%Y%m%dT%H%M%S")
        env["OIPLAB_EXECUTION"] = f"lanes-{stamp}-{os.getpid()}:python -m oiplab.lanes"
    return env


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the stages as Ctrl-C does


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m oiplab.lanes", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--jobs", type=int, default=2, help="stages at once (default 2)")
    parser.add_argument("--dry", action="store_true", help="only list the stages to run")
    parser.add_argument("targets", nargs="*", help="dvc.yaml stages, as for `dvc repro`")
    args = parser.parse_args(argv)
    logs.setup("lanes")
    if args.jobs < 1:
        log.error("--jobs=%d: expected at least 1", args.jobs)
        raise SystemExit(2)
    root = Path.cwd()
    try:
        plan = read_plan(root, args.targets)
    except LaneError as exc:
        log.error("%s", exc)
        raise SystemExit(2) from None
    if not plan.stages:
        log.info("0 stage(s) to run: every stage is up to date")
        return
    log.info("%d stage(s) to run, at most %d at once", len(plan.stages), args.jobs)
    for stage in plan.stages if args.dry else ():
        alone = " (alone)" if stage in plan.alone else ""
        log.info("  %s%s after: %s", stage, alone, ", ".join(plan.direct_needs(stage)) or "-")
    if args.dry:
        return
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        progress = run_plan(plan, Settings(root, args.jobs, stage_env()))
    except KeyboardInterrupt:
        log.error("interrupted: the running stages were stopped")
        raise SystemExit(130) from None
    if progress.failed:
        named = "; ".join(f"{s} (log: {p})" for s, p in progress.failed.items())
        log.error("failed: %s; not run: %d stage(s) downstream", named, len(progress.blocked))
        raise SystemExit(1)
    log.info("all %d stage(s) done (a `dvc repro` now finds them up to date)", len(plan.stages))


if __name__ == "__main__":
    main()
