"""MLflow bookkeeping (`oiplab.tracking`): the store's URI, the run handle a stage logs through
(a disabled one records nothing), the parent run of an execution, and queries of the store.
Runs log to a real sqlite store under tmp_path."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from oiplab import tracking
from oiplab.tracking import identity, store


def _client(cfg):
    from mlflow.tracking import MlflowClient

    return MlflowClient(cfg.tracking.uri)


def test_a_resumed_training_run_has_each_epoch_once(tmp_path):
    """The epochs a killed job completed are replayed into the resuming run, the rest are live."""
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracking.use_uri(uri)
    mlflow.set_experiment("resume")
    with mlflow.start_run() as run:
        handle = tracking.TrackedRun(run)
        for epoch in (2, 3):  # logged live after resuming from a checkpoint after epoch 1
            handle.log_metrics({"val_accuracy": epoch / 10}, step=epoch)
        handle.continue_from({"history": {"val_accuracy": [0.1, 0.2, 0.3]}, "epochs_done": 1})
    curve = MlflowClient(uri).get_metric_history(run.info.run_id, "val_accuracy")
    assert sorted((m.step, m.value) for m in curve) == [(1, 0.1), (2, 0.2), (3, 0.3)]


def _log_everything(run: tracking.Run, folder: Path) -> None:
    """Every write of the handle, once."""
    (folder / "a.txt").write_text("a")
    run.log_metrics({"loss": 0.5, "ok": True, "nan": float("nan"), "name": "x"}, step=1)
    run.log_results({"seed": 3, "accuracy": {"mean": 0.75}}, folder, "outputs")
    run.log_json({"answer": 42}, "meta/answer.json")
    run.log_text("<p>report</p>", "report/index.html")
    run.describe("the verdict")
    run.set_tags({"oiplab.seed_runs": "r1,r2"})
    x, y = np.zeros((4, 2, 2, 1), np.float32), np.arange(4)
    run.log_dataset((x, y), "tiny-train", "ab" * 32, str(folder), "training")
    run.epoch_logger().on_epoch_end(0, {"val_accuracy": 0.25})
    run.continue_from({"run_id": None, "history": {"val_loss": [0.9, 0.8]}, "epochs_done": 2})


def test_a_disabled_run_records_nothing_and_raises_nothing(smoke_cfg, tmp_path):
    import mlflow

    smoke_cfg.tracking.enabled = False
    with tracking.stage_run(smoke_cfg, "train", seed=0) as run:
        assert type(run) is tracking.Run and not run.enabled
        assert run.record == {} and run.run_id is None
        _log_everything(run, tmp_path)
        run.log_keras_model(None, np.zeros(1), "never-registered")  # no model is even looked at
        assert mlflow.active_run() is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]  # no store was created


def test_a_runs_writes_go_to_its_store(smoke_cfg, tmp_path):
    with tracking.stage_run(smoke_cfg, "train", seed=0) as run:
        assert run.enabled and run.record == {
            "run_id": run.run_id,
            "experiment_id": run.experiment_id,
        }
        folder = tmp_path / "out"
        folder.mkdir()
        _log_everything(run, folder)
    client = _client(smoke_cfg)
    logged = client.get_run(run.run_id)
    assert logged.info.status == "FINISHED"
    assert logged.info.experiment_id == run.record["experiment_id"]
    assert logged.data.metrics == {
        "loss": 0.5,
        "accuracy.mean": 0.75,
        "val_accuracy": 0.25,
        "val_loss": 0.8,
    }
    assert [m.step for m in client.get_metric_history(run.run_id, "val_loss")] == [1, 2]
    assert logged.data.tags["mlflow.note.content"] == "the verdict"
    assert logged.data.tags["oiplab.seed_runs"] == "r1,r2"
    assert logged.data.tags["oiplab.stage"] == "train" and logged.data.tags["oiplab.seed"] == "0"
    artifacts = {a.path for a in client.list_artifacts(run.run_id)}
    assert artifacts == {"outputs", "meta", "report"}
    assert {a.path for a in client.list_artifacts(run.run_id, "outputs")} == {"outputs/a.txt"}
    answer = client.download_artifacts(run.run_id, "meta/answer.json", str(tmp_path))
    assert json.loads(Path(answer).read_text()) == {"answer": 42}
    inputs = {d.dataset.name: d.dataset.digest for d in logged.inputs.dataset_inputs}
    assert inputs == {"tiny-train": "ab" * 8}


def test_the_parent_run_shares_the_stage_runs_tags(smoke_cfg, monkeypatch):
    """One parent run per execution: its tags are the stage runs' shared part, plus its own."""
    monkeypatch.setenv("OIPLAB_EXECUTION", "sweep:/tmp/one-sweep")
    with tracking.stage_run(smoke_cfg, "train", seed=0) as first:
        pass
    with tracking.stage_run(smoke_cfg, "compare") as second:
        pass
    client = _client(smoke_cfg)
    stage = client.get_run(first.run_id).data.tags
    parent_id = stage["mlflow.parentRunId"]
    assert client.get_run(second.run_id).data.tags["mlflow.parentRunId"] == parent_id
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED"  # closed by its last stage
    own = {"oiplab.execution": "sweep:/tmp/one-sweep", "oiplab.stage": "pipeline"}
    ours = {k: v for k, v in parent.data.tags.items() if k.startswith("oiplab.")}
    assert ours == own | identity.shared_tags(smoke_cfg)
    not_shared = (
        "oiplab.stage",
        "oiplab.seed",
        "oiplab.dvc_exp",
        "oiplab.v.",
        "oiplab.host",
        "oiplab.pid",
    )
    shared = {k: v for k, v in stage.items() if k.startswith("oiplab.")}
    shared = {k: v for k, v in shared.items() if not k.startswith(not_shared)}
    assert ours == own | shared
    assert parent.data.tags["mlflow.runName"] == "smoke: /tmp/one-sweep"


def test_git_is_asked_once_per_process_and_folder(tmp_path, monkeypatch):
    import subprocess

    calls = []
    real = subprocess.run

    def counted(*args, **kwargs):
        calls.append(kwargs.get("cwd"))
        return real(*args, **kwargs)

    identity._git_commit.cache_clear()
    monkeypatch.setattr(subprocess, "run", counted)
    assert (
        identity.git_commit(tmp_path) == identity.git_commit(tmp_path) == "unknown"
    )  # not a checkout
    assert calls == [str(tmp_path)]  # `git rev-parse` failed once, and was not asked again


def test_the_store_of_a_dvc_temporary_workspace_is_the_projects(tmp_path, monkeypatch, smoke_cfg):
    workspace = tmp_path / ".dvc" / "tmp" / "exps" / "tmpabc"
    workspace.mkdir(parents=True)
    assert store.store_root(workspace) == tmp_path.resolve()
    monkeypatch.chdir(workspace)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    smoke_cfg.tracking.uri = "sqlite:///mlflow.db"
    assert tracking.tracking_uri(smoke_cfg) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert tracking.default_uri() == f"sqlite:///{tmp_path.resolve()}/mlflow.db"


def test_an_unreachable_server_is_a_tracking_error_naming_the_way_out():
    with pytest.raises(tracking.TrackingError, match="tracking.enabled=false"):
        tracking.check_server("http://127.0.0.1:9", timeout=2)


def test_a_stage_sets_its_executions_description_and_headline_metrics(smoke_cfg, monkeypatch):
    """The compare and report stages put the answers on the pipeline's parent run."""
    monkeypatch.setenv("OIPLAB_EXECUTION", "sweep:/tmp/described")
    with tracking.stage_run(smoke_cfg, "compare") as run:
        run.describe_execution("**Same filters?** yes", {"default.Conv2D_1.same_index": 0.5})
        run.describe_execution("**Same filters?** no", {"x": float("nan"), "y": 2.0})
    client = _client(smoke_cfg)
    parent = client.get_run(client.get_run(run.run_id).data.tags["mlflow.parentRunId"])
    assert parent.data.tags["mlflow.note.content"] == "**Same filters?** no"  # the last one
    assert parent.data.metrics == {"default.Conv2D_1.same_index": 0.5, "y": 2.0}  # no NaN
    own = client.get_run(run.run_id).data
    assert "mlflow.note.content" not in own.tags and not own.metrics


def test_outside_an_execution_there_is_no_parent_to_describe(smoke_cfg, monkeypatch):
    monkeypatch.delenv("OIPLAB_EXECUTION", raising=False)
    with tracking.stage_run(smoke_cfg, "compare") as run:
        run.describe_execution("text", {"a": 1.0})  # nothing to describe, and no error
    assert "mlflow.parentRunId" not in _client(smoke_cfg).get_run(run.run_id).data.tags


# Values with quotes in search filters (MLflow's filter grammar has no escape character)

QUOTED = ["o'brien sweep", 'say "hi"', "both ' and \"", 'both x and "', "end\\", "100%", "1000"]


def test_runs_are_found_by_tag_values_with_any_quotes_exactly(tmp_path):
    from mlflow.tracking import MlflowClient

    from oiplab.tracking.search import find_runs

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.create_experiment("quotes")
    ids = {v: client.create_run(experiment, tags={"oiplab.k": v}).info.run_id for v in QUOTED}
    for value in QUOTED:  # "both x and ..." also matches the wildcard of "both ' and ..."
        found = find_runs(client, [experiment], {"oiplab.k": value})
        assert [r.info.run_id for r in found] == [ids[value]], value


@pytest.mark.parametrize("folder", ["/home/o'brien/o'brien sweep", "/x/both ' and \" \\"])
def test_a_sweep_in_a_folder_with_quotes_has_one_parent_run(smoke_cfg, monkeypatch, folder):
    """Such a sweep once failed at its first job: "Invalid clause(s) in filter string"."""
    monkeypatch.setenv("OIPLAB_EXECUTION", f"sweep:{folder}")
    runs = []
    for seed in (0, 1):
        with tracking.stage_run(smoke_cfg, "train", seed=seed) as run:
            runs.append(run.run_id)
    client = _client(smoke_cfg)
    parents = {client.get_run(r).data.tags["mlflow.parentRunId"] for r in runs}
    assert len(parents) == 1
    parent = client.get_run(parents.pop())
    assert parent.data.tags["oiplab.execution"] == f"sweep:{folder}"
    assert parent.info.status == "FINISHED"


# Runs whose process is gone


def _ended_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_runs_of_ended_processes_on_this_host_are_closed_killed(smoke_cfg, monkeypatch, capsys):
    """A SIGKILLed stage leaves its run RUNNING: the next run of its stage closes it (and its
    parent, when it was the last running stage), `oiplab runs` those of every stage. Runs whose
    process lives, runs of another host and runs without a pid are left alone."""
    import os
    import socket

    import psutil

    from oiplab.tracking.stale import HOST, PID, STARTED

    monkeypatch.setenv("OIPLAB_EXECUTION", "sweep:/tmp/stale")
    with tracking.stage_run(smoke_cfg, "train", seed=0) as first:
        pass
    client = _client(smoke_cfg)
    experiment = first.experiment_id
    parent = client.get_run(first.run_id).data.tags["mlflow.parentRunId"]
    here, dead = socket.gethostname(), str(_ended_pid())
    me = {PID: str(os.getpid()), STARTED: f"{psutil.Process().create_time():.2f}"}
    cases = {
        "ended": {HOST: here, PID: dead, STARTED: "1.00"},
        "pid reused": {HOST: here, PID: me[PID], STARTED: "1.00"},
        "alive": {HOST: here, **me},
        "another host": {HOST: "elsewhere", PID: dead, STARTED: "1.00"},
        "no pid": {HOST: here},
        "other stage": {HOST: here, PID: dead, STARTED: "1.00", "oiplab.stage": "compare"},
    }
    ids = {}
    for name, tags in cases.items():
        tags = {"oiplab.stage": "train", "mlflow.parentRunId": parent} | tags
        ids[name] = client.create_run(experiment, tags=tags, run_name=name).info.run_id
    client.update_run(parent, status="RUNNING")

    def statuses() -> dict[str, str]:
        return {name: client.get_run(i).info.status for name, i in ids.items()}

    monkeypatch.delenv("OIPLAB_EXECUTION")  # a run of its own, outside the sweep
    with tracking.stage_run(smoke_cfg, "train", seed=1):
        pass
    killed = {"ended": "KILLED", "pid reused": "KILLED"}
    assert statuses() == {name: killed.get(name, "RUNNING") for name in cases}
    reason = client.get_run(ids["ended"]).data.tags["oiplab.error"]
    assert f"pid {dead} on {here}" in reason and "the next run of `train`" in reason
    assert "closed stale run ended" in capsys.readouterr().out
    assert client.get_run(parent).info.status == "RUNNING"  # `alive` still runs under it

    client.set_terminated(ids["alive"])
    client.set_tag(ids["alive"], "oiplab.design", "same_order")
    client.set_tag(ids["alive"], "oiplab.stage", "compare_split")  # the longest name shown
    table = tracking.execution_table(smoke_cfg.tracking.uri, smoke_cfg.tracking.experiment)
    assert "\ncompare_split same_order " in table  # a seed-split run says its design
    header, *rows = table.splitlines()[1:]
    column = header.index(" status") + 1  # every row's status sits under the header's
    assert rows and all(r[column:].split()[0] in {"FINISHED", "KILLED", "RUNNING"} for r in rows)
    assert statuses()["other stage"] == "KILLED"
    assert "closed stale run other stage" in capsys.readouterr().out
    assert statuses()["another host"] == statuses()["no pid"] == "RUNNING"
    assert client.get_run(ids["other stage"]).data.tags["oiplab.error"].endswith("`oiplab runs`")
    assert "KILLED" in table


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        (
            "(raised as a result of Query-invoked autoflush; ...)\n(sqlite3.OperationalError) "
            "attempt to write a readonly database\n[SQL: INSERT INTO runs ...]",
            "read-only: its database file or folder cannot be written",
        ),
        ("(sqlite3.OperationalError) database or disk is full", "no space left on its disk"),
        (
            "API request to endpoint /api/2.0/mlflow/runs/create failed with error code 401 != "
            "200. Response body: 'You are not authenticated.'",
            "the server asks for a login (HTTP 401): set MLFLOW_TRACKING_USERNAME",
        ),
        (
            OSError(13, "Permission denied", "/s/mlruns/1/ab/artifacts"),
            "cannot write /s/mlruns/1/ab/artifacts (Permission denied; the store is read-only",
        ),
        (
            OSError(28, "No space left on device", "/s/mlruns/x"),
            "cannot write /s/mlruns/x (No space left on device; free space on the store's disk)",
        ),
    ],
)
def test_a_store_failure_is_one_line_naming_the_store_and_the_cause(error, cause):
    from mlflow.exceptions import MlflowException

    exc = MlflowException(error) if isinstance(error, str) else error
    message = str(store.store_error(exc, "http://alice:Pa55word@mlflow.lab:5000"))
    assert message.startswith(f"MLflow store http://mlflow.lab:5000: {cause}")
    assert "\n" not in message and "Pa55word" not in message


def test_a_later_stage_keeps_the_answer_on_the_parent_run(smoke_cfg, monkeypatch):
    """Compare writes the answer onto the parent run; the stages after it in the execution
    (opened, finished, reopening the parent) leave it there."""
    monkeypatch.setenv("OIPLAB_EXECUTION", "repro:dvc repro")
    with tracking.stage_run(smoke_cfg, "compare") as run:
        run.describe_execution("## The answers", {"accuracy.mean": 0.99308, "gap": None})
    with tracking.stage_run(smoke_cfg, "oip_compare"):
        pass
    client = _client(smoke_cfg)
    parent = client.get_run(client.get_run(run.run_id).data.tags["mlflow.parentRunId"])
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["mlflow.note.content"] == "## The answers"
    assert parent.data.metrics == {"accuracy.mean": 0.99308}  # whole, and no metric for None


def test_no_run_carries_an_empty_or_duplicate_tag(smoke_cfg, monkeypatch, tmp_path):
    """No empty `oiplab.dvc_exp` outside a DVC experiment; the commit only as MLflow's own
    source tag, with `oiplab.git_dirty` only when the checkout differs from it."""
    monkeypatch.setenv("OIPLAB_EXECUTION", "repro:dvc repro")
    monkeypatch.setattr(identity, "git_commit", lambda root=None: "ab" * 20)
    with tracking.stage_run(smoke_cfg, "train", seed=0) as run:
        pass
    client = _client(smoke_cfg)
    tags = client.get_run(run.run_id).data.tags
    parent = client.get_run(tags["mlflow.parentRunId"]).data.tags
    for found in (tags, parent):
        assert all(v != "" for v in found.values()), found
        assert found["mlflow.source.git.commit"] == "ab" * 20
        assert "oiplab.git_commit" not in found and "oiplab.git_dirty" not in found
    assert "oiplab.dvc_exp" not in tags
    monkeypatch.setenv("DVC_EXP_NAME", "wispy-oxen")
    monkeypatch.setattr(identity, "git_commit", lambda root=None: "cd" * 20 + "-dirty")
    found = identity.run_tags(smoke_cfg, "train", 0)
    assert found["oiplab.dvc_exp"] == "wispy-oxen" and found["oiplab.git_dirty"] == "true"
    assert found["mlflow.source.git.commit"] == "cd" * 20


def test_a_stage_run_records_system_metrics_when_asked(smoke_cfg, monkeypatch):
    """`tracking.system_metrics` switches MLflow's sampler (the UI's System metrics tab)."""
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    for enabled in (True, False):
        smoke_cfg.tracking.system_metrics = enabled
        with tracking.stage_run(smoke_cfg, "compare") as run:
            time.sleep(1.0)
        logged = _client(smoke_cfg).get_run(run.run_id).data.metrics
        assert any(k.startswith("system/cpu_utilization") for k in logged) is enabled


@pytest.mark.parametrize(
    ("study", "seed", "alias"),
    [("default", 0, "default-seed0"), ("Width 2x", 3, "width-2x-seed3"), ("a_b", 1, "a_b-seed1")],
)
def test_a_registered_versions_alias_is_one_mlflow_accepts(study, seed, alias):
    found = tracking.Registration("m", study, seed, "mnist", 0.99308)
    assert found.alias == alias
    assert found.tags == {
        "study": study,
        "seed": str(seed),
        "dataset": "mnist",
        "test_accuracy": "0.9931",
    }
