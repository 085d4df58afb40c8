"""benchmarks/pipeline.py: the stage seconds of the newest complete execution, read back from a
real sqlite MLflow store with known start and end times."""

from __future__ import annotations

import pytest

from benchmarks.pipeline import pick, stage_totals
from oiplab.tracking.query import StageRow


def _execution(client, experiment_id: str, start_ms: int, stages: list[tuple[str, str, int]]):
    """A parent run tagged as a pipeline execution with child runs of (stage, seed, seconds)."""
    tags = {"oiplab.stage": "pipeline"}
    parent = client.create_run(experiment_id, start_time=start_ms, tags=tags)
    clock = start_ms
    for stage, seed, seconds in stages:
        tags = {"mlflow.parentRunId": parent.info.run_id, "oiplab.stage": stage}
        tags |= {"oiplab.seed": seed} if seed else {}
        child = client.create_run(experiment_id, start_time=clock, tags=tags)
        clock += seconds * 1000
        client.set_terminated(child.info.run_id, end_time=clock)
    client.set_terminated(parent.info.run_id, end_time=clock + 5000)
    return parent.info.run_id


def test_the_newest_complete_execution_and_its_stage_totals(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.create_experiment("bench", artifact_location=str(tmp_path / "art"))
    full = [("prepare", "", 5), ("train", "0", 60), ("train", "1", 90), ("compare", "", 30)]
    complete = _execution(client, experiment, 1_000_000, full)
    _execution(client, experiment, 2_000_000, [("compare", "", 20)])  # a later partial rerun

    head, rows = pick(uri, "bench", complete=True)
    assert head.info.run_id == complete
    assert [(r.stage, r.seed, r.seconds) for r in rows] == [
        ("prepare", "", 5.0),
        ("train", "0", 60.0),
        ("train", "1", 90.0),
        ("compare", "", 30.0),
    ]
    newest, rerun = pick(uri, "bench", complete=False)
    assert newest.info.run_id != complete and [r.stage for r in rerun] == ["compare"]
    totals = {t["stage"]: t for t in stage_totals(rows)}
    assert totals["train"]["runs"] == 2 and totals["train"]["seconds"] == 150.0
    assert totals["train"]["seconds_per_run"] == "60.0-90.0"
    assert totals["compare"]["share"] == pytest.approx(30 / 185)


def test_stage_totals_keep_the_first_run_order():
    runs = (("b", 1.0), ("a", 2.0), ("b", 3.0))
    rows = [StageRow(stage, "", "FINISHED", seconds, "", None) for stage, seconds in runs]
    assert [t["stage"] for t in stage_totals(rows)] == ["b", "a"]


TIME_V = """[lanes] all 3 stage(s) done
\tCommand being timed: "make pipeline JOBS=2"
\tUser time (seconds): 2347.10
\tSystem time (seconds): 134.50
\tPercent of CPU this job got: 191%
\tElapsed (wall clock) time (h:mm:ss or m:ss): 21:33.42
\tExit status: 0
"""


def test_the_schedule_row_reads_time_v_and_splits_training_from_the_rest(tmp_path):
    """benchmarks/bench_schedule.py: one way's row from `/usr/bin/time -v`'s report and the
    clone's own MLflow store; a log without the report is an error naming the log."""
    from mlflow.tracking import MlflowClient

    from benchmarks.bench_schedule import clock, parse_time, way_row

    assert clock("21:33.42") == pytest.approx(1293.42) and clock("1:02:03") == 3723.0
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.create_experiment("oiplab", artifact_location=str(tmp_path / "art"))
    stages = [("prepare", "", 5), ("train", "0", 60), ("train_split", "1", 40), ("oip", "0", 30)]
    _execution(client, experiment, 1_000_000, stages)
    log_path = tmp_path / "jobs2.time"
    log_path.write_text(TIME_V)
    row = way_row(2, tmp_path, log_path)
    assert (row["wall_s"], row["wall_min"], row["cpu_s"]) == (1293.4, "21:33.4", 2481.6)
    assert row["cpu_percent"] == 192 and row["exit"] == 0 and row["stage_runs"] == 4
    assert (row["training_stage_s"], row["other_stage_s"]) == (100.0, 35.0)
    with pytest.raises(SystemExit, match="jobs2.time: no `Elapsed"):
        parse_time("make: *** [pipeline] Error 1\n", log_path)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--jobs"], "nothing to measure"),
        (["--jobs", "0"], "each at least 1"),
        (["--jobs", "--ingest", "2=nonsense"], "expected N=DIR:LOG"),
        (["--jobs", "--ingest", "2={tmp}:{tmp}/none.time"], "none.time does not exist"),
    ],
)
def test_the_schedule_benchmark_refuses_bad_arguments_before_cloning(
    argv, message, tmp_path, monkeypatch, capsys
):
    from benchmarks import bench_schedule

    monkeypatch.setattr(bench_schedule, "run_clone", lambda *a: pytest.fail("cloned"))
    argv = [a.format(tmp=tmp_path) for a in argv]
    monkeypatch.setattr("sys.argv", ["bench_schedule", *argv])
    with pytest.raises(SystemExit) as exit_info:
        bench_schedule.main()
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_the_schedule_benchmark_keeps_earlier_rows_when_asked(tmp_path, monkeypatch):
    """`--keep`: the rows of runs whose clones are gone stay, first; ratios are to the first row."""
    import json

    from mlflow.tracking import MlflowClient

    from benchmarks import bench_schedule, common

    monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(bench_schedule, "run_clone", lambda *a: pytest.fail("cloned"))
    (tmp_path / "results").mkdir()
    earlier = {"jobs": 2, "commit": "84ea2a8", "wall_s": 2586.8, "wall_ratio_vs_first": 1}
    (tmp_path / "results" / "schedule.json").write_text(
        json.dumps({"ingested": "JOBS=2: /gone (/gone.out)", "rows": [earlier]})
    )
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.create_experiment("oiplab", artifact_location=str(tmp_path / "art"))
    _execution(client, experiment, 1_000_000, [("prepare", "", 5), ("train", "0", 60)])
    (tmp_path / "jobs2.time").write_text(TIME_V)
    argv = ["--jobs", "--keep", "--ingest", f"2={tmp_path}:{tmp_path}/jobs2.time"]
    monkeypatch.setattr("sys.argv", ["bench_schedule", *argv])
    bench_schedule.main()
    written = json.loads((tmp_path / "results" / "schedule.json").read_text())
    assert [row["wall_s"] for row in written["rows"]] == [2586.8, 1293.4]
    assert [row["wall_ratio_vs_first"] for row in written["rows"]] == [1, 0.5]
    sources = f"JOBS=2: /gone (/gone.out), JOBS=2: {tmp_path} ({tmp_path}/jobs2.time)"
    assert written["ingested"] == sources
    # the same run again, with a remark: it replaces its row, and is named once
    monkeypatch.setattr("sys.argv", ["bench_schedule", *argv, "--remark", "tests beside it"])
    bench_schedule.main()
    again = json.loads((tmp_path / "results" / "schedule.json").read_text())
    assert [row.get("remark") for row in again["rows"]] == [None, "tests beside it"]
    assert again["ingested"] == sources


def test_the_schedule_benchmark_refuses_keep_without_earlier_rows(tmp_path, monkeypatch, capsys):
    from benchmarks import bench_schedule, common

    monkeypatch.setattr(common, "RESULTS", tmp_path)
    monkeypatch.setattr("sys.argv", ["bench_schedule", "--jobs", "2", "--keep"])
    monkeypatch.setattr(bench_schedule, "run_clone", lambda *a: pytest.fail("cloned"))
    with pytest.raises(SystemExit) as exit_info:
        bench_schedule.main()
    assert exit_info.value.code == 2 and "--keep: no rows to keep in" in capsys.readouterr().err
