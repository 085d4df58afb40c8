"""`python -m oiplab.lanes`: the pipeline's stale stages as soon as their upstream stages are
done, N at a time, each a DVC run of its own; and the thread count it relies on not changing a
trained network's bits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from oiplab.backend import INTRA_OP_ENV
from oiplab.lanes import (
    STOP_GRACE_S,
    Plan,
    Progress,
    dvc_command,
    plan_from_graph,
    startable,
)
from tests.conftest import REPO_ROOT, STUDY_THREADS

# a diamond with a tail: a -> (b, c, d) -> e, and f beside it all
ORDER = ["a", "b", "c", "d", "e", "f"]
UPSTREAM = {"a": [], "b": ["a"], "c": ["a"], "d": ["a"], "e": ["b", "c", "d"], "f": []}


def test_plan_takes_the_stale_stages_and_everything_downstream_of_them() -> None:
    plan = plan_from_graph(ORDER, UPSTREAM, stale={"c"})
    assert plan.stages == ("c", "e")  # a, b, d are up to date; e reads c
    assert plan.needs == {"c": frozenset(), "e": frozenset({"c"})}  # b, d: done already
    assert plan_from_graph(ORDER, UPSTREAM, stale=set()).stages == ()
    assert plan_from_graph(ORDER, UPSTREAM, stale={"a", "f"}).stages == tuple(ORDER)


def test_priority_puts_the_stages_with_most_downstream_first() -> None:
    plan = plan_from_graph(ORDER, UPSTREAM, stale=set(ORDER))
    assert plan.dependants("a") == {"b", "c", "d", "e"}
    assert plan.by_priority() == ["a", "b", "c", "d", "e", "f"]  # ties keep DVC's order
    assert plan.direct_needs("e") == ["b", "c", "d"]
    late = Plan(("x", "y", "z"), {"x": frozenset(), "y": frozenset(), "z": frozenset({"y"})})
    assert late.by_priority() == ["y", "x", "z"]  # y unlocks z


def test_ready_waits_for_every_upstream_stage() -> None:
    progress = Progress(plan_from_graph(ORDER, UPSTREAM, stale=set(ORDER)))
    assert progress.ready(["b", "e", "f"]) == ["f"]
    progress.done += ["a", "b", "c"]
    assert progress.ready(["d", "e"]) == ["d"]
    progress.done.append("d")
    assert progress.ready(["e"]) == ["e"]
    assert progress.count() == "4 of 6 done"


def test_a_stage_marked_alone_runs_with_no_other_after_the_shared_ones() -> None:
    plan = plan_from_graph(ORDER, UPSTREAM, stale={"b", "c", "d", "f"}, alone={"c", "d", "z"})
    assert plan.alone == {"c", "d"}  # only planned stages
    assert startable(plan, ["b", "c", "d", "f"], [], jobs=2) == ["b", "f"]  # shared first
    assert startable(plan, ["c", "d", "f"], ["b"], jobs=2) == ["f"]
    assert startable(plan, ["c", "d"], ["f"], jobs=2) == []  # c waits for f to end
    assert startable(plan, ["c", "d"], [], jobs=2) == ["c"]  # then runs by itself
    assert startable(plan, ["d", "e"], ["c"], jobs=2) == []  # nothing joins it
    assert startable(plan, ["e"], [], jobs=1) == ["e"]
    shared = plan_from_graph(ORDER, UPSTREAM, stale={"b", "c", "d"})
    assert startable(shared, ["b", "c", "d"], [], jobs=2) == ["b", "c"]  # unmarked: two at once


def test_dvc_yaml_marks_the_comparisons_alone() -> None:
    """The stages whose float64 work runs on multi-threaded OpenBLAS (see oiplab.lanes)."""
    import yaml

    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    marked = {name for name, stage in stages.items() if stage.get("meta", {}).get("lanes")}
    assert marked == {"compare", "compare_split", "alignment"}
    assert {stages[name]["meta"]["lanes"] for name in marked} == {"alone"}


# Each toy stage records when it ran (stamp.py); `fail` makes it exit 3 after its sleep.
STAMP = """import json, os, sys, time
name, seconds = sys.argv[1], float(sys.argv[2])
start = time.time()
with open(name + ".pid", "w") as f:
    f.write(str(os.getpid()))
time.sleep(seconds)
if len(sys.argv) > 3:
    sys.exit(3)
json.dump({"start": start, "end": time.time(),
           "execution": os.environ.get("OIPLAB_EXECUTION"),
           "threads": os.environ.get("TF_NUM_INTRAOP_THREADS")}, open(name + ".json", "w"))
"""


def _stage(
    name: str, seconds: float, deps: list[str], fail: bool = False, alone: bool = False
) -> str:
    cmd = f"python stamp.py {name} {seconds}" + (" fail" if fail else "")
    lines = [f"  {name}:", *(["    meta:", "      lanes: alone"] if alone else [])]
    lines += [f"    cmd: {cmd}", "    deps:", "      - stamp.py"]
    lines += [f"      - {d}.json" for d in deps]
    return "\n".join([*lines, "    outs:", f"      - {name}.json"])


def _project(root: Path, stages: list[str]) -> None:
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run([dvc_command(), "init", "-q"], cwd=root, check=True)
    (root / "stamp.py").write_text(STAMP)
    (root / "dvc.yaml").write_text("stages:\n" + "\n".join(stages) + "\n")


def _env() -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT / "src"),
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"],
    }
    env.pop("OIPLAB_EXECUTION", None)
    env.pop(INTRA_OP_ENV, None)  # conftest's, for in-process stages: the lanes must set none
    return env


def _lanes(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "oiplab.lanes", *args]
    return subprocess.run(cmd, cwd=root, env=_env(), capture_output=True, text=True, check=False)


def _ran(root: Path, names: str) -> dict[str, dict]:
    return {n: json.loads((root / f"{n}.json").read_text()) for n in names}


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    return max(sum(s <= t < e for s, e in spans) for t, _ in spans)


@pytest.mark.integration
def test_lanes_run_a_dag_in_order_two_at_a_time_into_dvc_lock(tmp_path: Path) -> None:
    diamond = [_stage("a", 0.5, []), *(_stage(n, 2, ["a"]) for n in "bcd")]
    _project(tmp_path, [*diamond, _stage("e", 0.5, ["b", "c", "d"])])
    done = _lanes(tmp_path, "--jobs", "2")
    assert done.returncode == 0, done.stderr
    ran = _ran(tmp_path, "abcde")
    assert all(ran[n]["start"] >= ran["a"]["end"] for n in "bcd")  # after what they read
    assert ran["e"]["start"] >= max(ran[n]["end"] for n in "bcd")
    assert _most_at_once([(r["start"], r["end"]) for r in ran.values()]) == 2  # never 3
    assert len({r["execution"] for r in ran.values()} - {None}) == 1  # one MLflow parent run
    assert {r["threads"] for r in ran.values()} == {None}  # each stage pins its own count
    assert "[lanes] done e in" in done.stdout and "5 of 5 done" in done.stdout
    status = subprocess.run(
        [dvc_command(), "status", "--json"], cwd=tmp_path, capture_output=True, text=True
    )
    assert json.loads(status.stdout) == {}  # every stage recorded in dvc.lock, cached
    repro = subprocess.run([dvc_command(), "repro"], cwd=tmp_path, capture_output=True, text=True)
    assert "Running stage" not in repro.stdout and "didn't change" in repro.stdout
    assert _ran(tmp_path, "abcde") == ran  # nothing ran again
    assert "0 stage(s) to run: every stage is up to date" in _lanes(tmp_path, "--dry").stdout


@pytest.mark.integration
def test_a_stage_dvc_yaml_marks_alone_runs_by_itself(tmp_path: Path) -> None:
    stages = [_stage("a", 0.5, []), _stage("b", 2, ["a"], alone=True), _stage("c", 2, ["a"])]
    _project(tmp_path, [*stages, _stage("d", 2, ["a"]), _stage("e", 0.5, ["b", "c", "d"])])
    done = _lanes(tmp_path, "--jobs", "2")
    assert done.returncode == 0, done.stderr
    ran = _ran(tmp_path, "abcde")
    others = [(r["start"], r["end"]) for n, r in ran.items() if n != "b"]
    assert all(end <= ran["b"]["start"] or start >= ran["b"]["end"] for start, end in others)
    assert ran["b"]["start"] >= max(ran["c"]["end"], ran["d"]["end"])  # c, d went two at once
    assert ran["e"]["start"] >= ran["b"]["end"]
    assert "[lanes] start b alone (running: b;" in done.stdout
    (tmp_path / "stamp.py").write_text(STAMP + "\n")  # every stage stale again
    assert "  b (alone) after: a" in _lanes(tmp_path, "--dry").stdout


@pytest.mark.integration
def test_a_failed_stage_stops_its_dependants_only(tmp_path: Path) -> None:
    stages = [_stage("a", 0.1, []), _stage("b", 0.5, ["a"], fail=True)]
    stages += [_stage("c", 0.1, ["b"]), _stage("d", 2, ["a"])]
    _project(tmp_path, stages)
    done = _lanes(tmp_path, "--jobs", "2")
    assert done.returncode == 1
    log = tmp_path / ".dvc" / "tmp" / "lanes" / "b.log"
    assert "stage b failed (its `dvc repro` exited" in done.stderr and str(log) in done.stderr
    assert "not run: c" in done.stderr and "failed: b (log:" in done.stderr
    assert "stamp.py b 0.5 fail" in log.read_text()  # DVC's own account of the stage
    assert "  b | " in done.stdout and "  b | " not in done.stderr  # the log's tail: no errors
    assert (tmp_path / "d.json").exists()  # beside the failure: still run, finished
    assert not (tmp_path / "c.json").exists()


@pytest.mark.integration
def test_ctrl_c_stops_the_running_stages(tmp_path: Path) -> None:
    _project(tmp_path, [_stage("slow", 60, [])])
    cmd = [sys.executable, "-m", "oiplab.lanes"]
    lanes = subprocess.Popen(cmd, cwd=tmp_path, env=_env(), stderr=subprocess.PIPE, text=True)
    pid_file = tmp_path / "slow.pid"
    deadline = time.monotonic() + 60
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    stage_pid = int(pid_file.read_text())
    lanes.send_signal(signal.SIGINT)
    _, err = lanes.communicate(timeout=STOP_GRACE_S + 60)  # a stage slow to stop is killed
    assert lanes.returncode == 130 and "interrupted" in err
    with pytest.raises(ProcessLookupError):
        os.kill(stage_pid, 0)  # the stage's command is gone, not left running
    assert not (tmp_path / "slow.json").exists()


# Trains the default CNN for a few batches of the default size (seeded, op determinism on) and
# prints a digest of its weights; given a thread count, pinned to it first, as a stage does.
DIGEST = """\
import hashlib, sys
from pathlib import Path
import numpy as np
from oiplab.backend import pin_threads, seed_everything
if len(sys.argv) > 1:
    pin_threads(int(sys.argv[1]))
from oiplab.config import to_typed
from oiplab.model import build_model
from oiplab.params import compose
from oiplab.training import compile_model
study = to_typed(compose([], root=Path.cwd()))
seed_everything(0)
cfg = study.train
model = build_model(study.model, cfg.l2)
compile_model(model, cfg, n_train=4 * cfg.batch_size)
rng = np.random.default_rng(0)
x = rng.standard_normal((4 * cfg.batch_size, 28, 28, 1)).astype("float32")
y = rng.integers(0, 10, len(x))
model.fit(x, y, batch_size=cfg.batch_size, epochs=1, shuffle=False, verbose=0)
print(hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights())).hexdigest())
"""


def _digests(*runs: tuple[int | None, int]) -> list[str]:
    """Weight digests of trainings run side by side, each its own process; each run is (threads:
    the pin, None for TensorFlow's default of a thread per core; cores: the first that many cores
    this process may use, 0 for all)."""
    env = {k: v for k, v in os.environ.items() if k != INTRA_OP_ENV}  # no count but the pin's
    env["PYTHONPATH"] = str(REPO_ROOT / "src")
    procs = []
    for threads, cores in runs:
        allowed = sorted(os.sched_getaffinity(0))[: cores or None]
        argv = [] if threads is None else [str(threads)]
        procs.append(
            subprocess.Popen([sys.executable, "-c", DIGEST, *argv], cwd=REPO_ROOT, env=env,
                             stdout=subprocess.PIPE, text=True,
                             preexec_fn=lambda allowed=allowed: os.sched_setaffinity(0, allowed))
        )  # fmt: skip
    digests = []
    for proc in procs:
        out, _ = proc.communicate()
        assert proc.returncode == 0 and out.split(), f"the training exited {proc.returncode}"
        digests.append(out.split()[-1])
    return digests


@pytest.mark.slow
def test_side_by_side_trains_the_bits_of_alone() -> None:
    # what `oiplab.lanes` runs: two stage processes at the study's thread count each
    alone = (STUDY_THREADS, 0)
    assert _digests(alone, alone) == _digests(alone) * 2


def test_the_pinned_thread_count_trains_the_same_bits_on_one_core_as_on_two() -> None:
    """`threads` makes the weights independent of the machine's core count; TensorFlow's own
    default (a thread per core) does not: it splits its sums by thread count."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one core: nothing to compare one core with")
    two, on_one, unpinned_on_one, one_thread = _digests((2, 2), (2, 1), (None, 1), (1, 2))
    assert on_one == two  # pinned to 2 threads, on one core: the bits of two cores
    assert unpinned_on_one != two  # unpinned there: one thread, other bits
    assert one_thread == unpinned_on_one  # which are the bits of one thread
