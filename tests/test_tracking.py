"""MLflow bookkeeping (`oiplab.tracking`): the store's URI, the run handle a stage logs through
(a disabled one records nothing), the parent run of an execution, and queries of the store.
Runs log to a real sqlite store under tmp_path."""

from __future__ import annotations

import json
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
    not_shared = ("oiplab.stage", "oiplab.seed", "oiplab.dvc_exp", "oiplab.v.")
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
