"""Stop signals during a stage (`oiplab.stops`): a SIGTERM or SIGINT ends the stage's run KILLED,
waits for a store write under way, survives Python swallowing its exception, and keeps the
previous outputs; the stop ends with its stage. Runs log to a real sqlite store under tmp_path."""

from __future__ import annotations

import os
import signal

import pytest

from oiplab import stops, tracking
from oiplab.stops import StageInterrupted


def _stopped_run(smoke_cfg, work) -> tuple[str, BaseException | None]:
    """Run `work(run)` inside a stage's run; the run's status and what ended it."""
    from mlflow.tracking import MlflowClient

    raised, run_id = None, None
    try:
        with tracking.stage_run(smoke_cfg, "train", seed=0) as run:
            run_id = run.run_id
            work(run)
    except StageInterrupted as exc:
        raised = exc
    client = MlflowClient(smoke_cfg.tracking.uri)
    if run_id is None:  # stopped before the work began: the newest run
        experiment = client.get_experiment_by_name(smoke_cfg.tracking.experiment)
        run_id = client.search_runs([experiment.experiment_id], max_results=1)[0].info.run_id
    return client.get_run(run_id).info.status, raised


def _signalling(module, name: str, before: bool):
    """`module.name` wrapped to send this process SIGTERM before or after the real call."""
    import os
    import signal

    real = getattr(module, name)

    def call(*args, **kwargs):
        if before:
            os.kill(os.getpid(), signal.SIGTERM)
        result = real(*args, **kwargs)
        if not before:
            os.kill(os.getpid(), signal.SIGTERM)
        return result

    return call


def test_a_sigterm_during_a_store_write_waits_for_the_write_then_ends_the_run_killed(
    smoke_cfg, monkeypatch
):
    """Raised inside MLflow's SQLAlchemy session, the signal would leave the store locked and the
    run RUNNING; held, the write completes, the stage stops right after it, the run is KILLED."""
    import signal

    import mlflow
    from mlflow.tracking import MlflowClient

    after = []

    def work(run):
        with monkeypatch.context() as patch:  # delivered before the real write starts
            patch.setattr(mlflow, "log_metrics", _signalling(mlflow, "log_metrics", before=True))
            run.log_metrics({"loss": 0.5}, step=1)
        after.append("ran on")

    status, raised = _stopped_run(smoke_cfg, work)
    assert status == "KILLED" and str(raised) == "stopped by SIGTERM" and after == []
    run = MlflowClient(smoke_cfg.tracking.uri).search_runs(
        [mlflow.get_experiment_by_name(smoke_cfg.tracking.experiment).experiment_id]
    )[0]
    assert run.data.metrics == {"loss": 0.5}  # the write was completed, not torn
    assert _stopped_run(smoke_cfg, lambda _run: None) == ("FINISHED", None)  # the store still works
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_sigterm_whose_exception_python_swallows_still_ends_the_run_killed(smoke_cfg):
    """A signal handled inside a finalizer raises there, and Python only prints "Exception
    ignored"; the stop is kept and the run ends KILLED when the work returns."""
    import gc
    import os
    import signal

    class SignalsWhileCollected:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGTERM)
            sum(range(1000))  # the handler runs here, inside the finalizer

    def work(_run):
        SignalsWhileCollected()
        gc.collect()

    status, raised = _stopped_run(smoke_cfg, work)
    assert status == "KILLED" and str(raised) == "stopped by SIGTERM"
    stops.raise_if_interrupted()  # the stop ended with its stage: later work of the process runs
    assert _stopped_run(smoke_cfg, lambda _run: None) == ("FINISHED", None)


def test_a_sigterm_while_the_run_opens_or_closes_never_leaves_it_running(smoke_cfg, monkeypatch):
    import mlflow

    with monkeypatch.context() as patch:  # the run just started, its parameters not yet logged
        patch.setattr(mlflow, "start_run", _signalling(mlflow, "start_run", before=False))
        status, raised = _stopped_run(smoke_cfg, lambda _run: pytest.fail("the work ran"))
    assert status == "KILLED" and str(raised) == "stopped by SIGTERM"
    with monkeypatch.context() as patch:  # the work is done, the run being closed
        patch.setattr(mlflow, "end_run", _signalling(mlflow, "end_run", before=True))
        status, raised = _stopped_run(smoke_cfg, lambda _run: None)
    assert status == "FINISHED" and str(raised) == "stopped by SIGTERM"  # closed, then stopped


def test_a_stop_beside_a_failing_work_ends_the_run_killed(smoke_cfg):
    def work(_run):
        stops.STOP.pending = "SIGTERM"  # as a swallowed signal leaves it
        raise ValueError("the work failed too")

    assert _stopped_run(smoke_cfg, work)[0] == "KILLED"


def test_a_pending_stop_keeps_the_previous_output(tmp_path):
    from oiplab.io import atomic_dir, atomic_path

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a").write_text("old")
    (tmp_path / "f.txt").write_text("old")
    try:
        with pytest.raises(StageInterrupted), atomic_dir(tmp_path / "out") as tmp:
            (tmp / "a").write_text("new")
            stops.STOP.pending = "SIGTERM"
        with pytest.raises(StageInterrupted), atomic_path(tmp_path / "f.txt") as tmp:
            tmp.write_text("new")
    finally:
        stops.STOP.pending = None
    assert (tmp_path / "out" / "a").read_text() == (tmp_path / "f.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt", "out"]


def test_a_stop_inside_a_held_block_waits_for_its_end_and_a_second_one_does_not():
    """No store needed: the handler, the held count and the pending stop on their own."""
    reached = []
    with pytest.raises(StageInterrupted, match="^stopped by SIGTERM$"), stops.signals_raise():
        with stops.held():
            os.kill(os.getpid(), signal.SIGTERM)
            reached.append("the write ran on")
        reached.append("the stage ran on")
    assert reached == ["the write ran on"] and stops.StopRequest() == stops.STOP
    second = pytest.raises(StageInterrupted, match="a second SIGINT")
    with second, stops.signals_raise(), stops.held():
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
        reached.append("never")
    assert "never" not in reached and stops.StopRequest() == stops.STOP
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_held_write_unchecked_leaves_the_stop_to_the_next_check():
    calls = []

    @stops.holding
    def write(value: int) -> int:
        calls.append(value)
        return value

    with pytest.raises(StageInterrupted), stops.signals_raise():
        with stops.held(check=False):
            os.kill(os.getpid(), signal.SIGTERM)
            assert stops.STOP.pending == "SIGTERM"
        calls.append("after the unchecked block")
        write(1)  # runs whole, then the stop raises
    assert calls == ["after the unchecked block", 1]


def test_a_disabled_stage_run_still_ends_on_a_stop(smoke_cfg):
    smoke_cfg.tracking.enabled = False
    with pytest.raises(StageInterrupted), tracking.stage_run(smoke_cfg, "prepare") as run:
        assert not run.enabled
        os.kill(os.getpid(), signal.SIGTERM)
        pytest.fail("the stop did not raise")
