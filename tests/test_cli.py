"""The `oiplab` command and the stages' command line: help, Hydra's flags, one-line errors, the
stage names, and `oiplab ui`'s server."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

import oiplab
from oiplab import cli
from oiplab.layout import STAGES, Layout
from oiplab.params import compose
from oiplab.stages import EACH_SEED, parse_stage_args, stage_parser
from tests.conftest import REPO_ROOT, compose_typed

SRC = Path(oiplab.__file__).resolve().parents[1]  # this checkout's package, for child processes


def _oiplab(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """`oiplab ...` as a user runs it, in `cwd` (a project needs its conf/ there)."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "oiplab.cli", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder holding only the project's conf/, so a test sees every file a command adds."""
    shutil.copytree(REPO_ROOT / "conf", tmp_path / "conf")
    return tmp_path


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if "conf" not in p.parts)


# Stage names


def test_every_stage_is_a_module_and_every_module_a_stage() -> None:
    from oiplab.cli import STUDIES

    modules = {p.stem for p in (SRC / "oiplab" / "stages").glob("*.py") if p.stem != "__init__"}
    assert modules == set(STAGES) | set(STUDIES)  # a study: a Hydra sweep beside the pipeline
    assert not set(STAGES) & set(STUDIES)


def test_the_layout_and_the_runs_table_know_only_stages() -> None:
    from oiplab.tracking.query import KEY_METRIC

    lay = Layout.of(compose_typed())
    for stage in STAGES:  # every stage has its DVC inputs and outputs
        assert lay.stage_io(stage, 0, "same_init")["outs"], stage
    with_records = [s for s in STAGES if _has_output_dir(lay, s)]
    assert {"train", "compare", "oip_compare"} <= set(with_records)
    assert set(KEY_METRIC) <= set(STAGES)


def _has_output_dir(lay: Layout, stage: str) -> bool:
    try:
        lay.output_dir(stage, 0, "same_init")
    except KeyError:
        return False
    return True


# `oiplab` and `oiplab run` help


def test_oiplab_help_describes_the_commands_with_usage_lines(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: oiplab" in out and "same maps, in the same order" in out
    for usage in ("oiplab run <stage> -m key=a,b", "oiplab params", "oiplab ui", "oiplab runs"):
        assert usage in out


def test_oiplab_run_help_lists_every_stage_with_its_summary(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    for stage in STAGES:
        assert stage in lines, stage
    assert "train the articles' CNN for one seed" in lines["train"]
    assert "Stage `" not in out  # the summaries without their docstrings' prefix


def test_oiplab_params_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["params", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: oiplab params" in out and "--check" in out and "experiment=smoke" in out


@pytest.mark.parametrize("argv", [["run", "nosuchstage"], ["run"]])
def test_an_unknown_or_missing_stage_is_one_line_listing_the_stages(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    assert ", ".join(STAGES) in err


# A stage's command line


def _parse(argv: list[str], default_params: str | None = None) -> argparse.Namespace:
    return parse_stage_args(stage_parser("test", ""), argv, default_params)


def test_a_stage_reads_params_or_asks_hydra_as_its_command_line_says() -> None:
    # `oiplab run <stage>`: params.yaml unless Hydra is asked for
    assert _parse([], "params.yaml").params == "params.yaml"
    args = _parse(["train.seed=3", EACH_SEED, "seeds=[1]"], "params.yaml")
    assert (args.params, args.each_seed) == ("params.yaml", True)
    assert args.overrides == ["train.seed=3", "seeds=[1]"]  # in order, around the flag
    for hydra in (["-m", "train.seed=0,1"], ["--cfg", "job"], ["--info"], ["hydra.run.dir=x"]):
        assert _parse(hydra, "params.yaml").params is None, hydra
    assert _parse(["hydra/launcher=joblib"], "params.yaml").params is None
    # `python -m oiplab.stages.<stage>`: a Hydra app unless --params is given
    assert _parse(["train.seed=3"]).params is None
    assert _parse(["--params", "p.yaml", "train.seed=3"]).params == "p.yaml"
    # --help wins: Hydra prints it, whatever else is given
    assert _parse(["--params", "p.yaml", "--help"]).params is None


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--params", "p.yaml", "-m"], "--params reads a composed file; Hydra's --multirun"),
        (["-m", EACH_SEED], f"{EACH_SEED} needs --params"),
        (["-m", "--bogus"], "unrecognized arguments: --bogus"),
        (["--params"], "--params: expected one argument"),
    ],
)
def test_a_stage_command_line_mistake_is_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], stage_logs: None
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _parse(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["foo"], "overrides must look like key=value, got \\['foo'\\]"),
        (["--bogus"], "overrides must look like key=value, got \\['--bogus'\\]"),
        (["train.sed=3"], "config key 'train.sed' does not exist in params.yaml"),
        ([EACH_SEED], f"{EACH_SEED}: this stage is not run per seed"),
    ],
)
def test_oiplab_run_with_a_bad_override_is_one_line(
    extra: list[str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(OmegaConf.to_yaml(compose([], root=REPO_ROOT)))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", "compare", *extra])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and re.search(message, err), err
    assert _files(tmp_path) == ["params.yaml"]  # nothing ran


def test_oiplab_run_missing_params_file_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", "prepare"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "error: params.yaml: params file not found (generate it: `python -m oiplab.params`)"
    )


# Hydra's flags (child processes: Hydra configures the logging of the process it runs in)


def test_oiplab_run_train_help_prints_the_flags_config_groups_and_composed_config(
    project: Path,
) -> None:
    done = _oiplab(project, "run", "train", "--help", "experiment=smoke")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("usage: oiplab run train [--params FILE] [--each-seed] [key=value")
    assert "--each-design" not in out  # offered only by a per-design stage
    assert "Stage `train`: train the articles' CNN" in out  # the stage's docstring
    assert "== Configuration groups of stage `train` ==" in out
    assert "experiment: articles, fashion, same_init, same_order, seeds10, smoke" in out
    assert "== Config of stage `train` ==" in out and "name: synthetic" in out  # smoke's data
    assert _files(project) == []  # nothing ran


def test_oiplab_run_cfg_job_prints_the_composed_config_and_runs_nothing(project: Path) -> None:
    done = _oiplab(project, "run", "train", "--cfg", "job", "experiment=smoke", "train.seed=7")
    assert done.returncode == 0, done.stderr
    cfg = OmegaConf.create(done.stdout)
    assert cfg.train.seed == 7 and cfg.data.name == "synthetic" and "hydra" not in cfg
    assert _files(project) == []  # no output folder, no store


def test_a_hydra_job_is_named_after_its_stage(project: Path) -> None:
    """Without --params the stage runs as a Hydra app: its job (and log file) is the stage's,
    and the log file holds what the stage said."""
    args = ["experiment=smoke", "tracking.enabled=false", "hydra.run.dir=job"]
    done = _oiplab(project, "run", "prepare", *args)
    assert done.returncode == 0, done.stderr
    said = [line for line in done.stdout.splitlines() if line.startswith("[prepare] ")]
    assert len(said) == 2 and said[1].startswith("[prepare] wrote data/prepared (mean ")
    kept = (project / "job" / "prepare.log").read_text().splitlines()
    assert [line.split(": ", 1)[1] for line in kept] == [s.removeprefix("[prepare] ") for s in said]
    assert OmegaConf.load(project / "job" / ".hydra" / "hydra.yaml").hydra.job.name == "prepare"
    assert (project / "data" / "prepared" / "meta.json").is_file()


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_prints_its_help_and_exits_0(project: Path, stage: str) -> None:
    done = _oiplab(project, "run", stage, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: oiplab run {stage} [--params FILE]")
    assert f"== Config of stage `{stage}` ==" in done.stdout and done.stderr == ""


@pytest.mark.slow
def test_a_training_job_shows_no_tensorflow_start_up_lines(project: Path) -> None:
    """A stage that imports TensorFlow, run as a user runs it: its stderr holds none of the
    abseil start-up lines, its job log what it said, its stdout one Keras line per epoch."""
    args = ["experiment=smoke", "tracking.enabled=false"]
    assert _oiplab(project, "run", "prepare", *args, "hydra.run.dir=prep").returncode == 0
    done = _oiplab(project, "run", "train", *args, "hydra.run.dir=job")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # before: 3 to 4 abseil lines, and the use_unbounded_threadpool one
    assert "[train] seed 0: test accuracy" in done.stdout
    # in a pipe: no Keras bar (escape codes) but one line of ours per epoch, naming the training
    assert "\x1b[" not in done.stdout
    assert re.search(r"^\[train\] seed 0 epoch 1/1: \d+ s, accuracy ", done.stdout, re.M)
    assert "seed 0: test accuracy" in (project / "job" / "train.log").read_text()


# `oiplab ui` (moved from test_stages.py)


def test_oiplab_ui_links_the_runs_table_of_the_project_store(tmp_path: Path) -> None:
    """The UI opens on its GenAI overview; `oiplab ui` prints the link to the runs instead."""
    from mlflow.tracking import MlflowClient

    from oiplab.cli import _runs_page

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("oiplab")
    client.create_run(experiment_id)
    page = _runs_page(uri, "oiplab")
    assert page == f"#/experiments/{experiment_id}/runs"
    assert _runs_page(f"sqlite:///{tmp_path}/none.db", "oiplab") is None
    assert not (tmp_path / "none.db").exists()  # looking did not create a store


def _session_members(session: int) -> list[int]:
    """The processes of a session (field 6 of /proc/<pid>/stat)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended while listed
        if int(fields[3]) == session:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.integration
@pytest.mark.parametrize("stop", ["SIGTERM", "SIGINT", "SIGHUP"])
def test_stopping_oiplab_ui_stops_the_mlflow_server_and_its_workers(tmp_path, stop):
    """`mlflow ui` starts uvicorn and job runners; none of them outlives `oiplab ui`."""
    import os
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    from tests.conftest import free_port

    port = free_port()
    oiplab = Path(sys.executable).parent / "oiplab"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.Popen(
        [oiplab, "ui", "--port", str(port)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            break
        except OSError:
            assert proc.poll() is None and time.time() < deadline, proc.stdout.read()
            time.sleep(0.5)
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    assert len(children) == 1
    server = int(children[0])  # `mlflow ui`, leader of a session of its own
    assert len(_session_members(server)) > 1  # it did start workers
    proc.send_signal(getattr(signal, stop))
    assert proc.wait(timeout=60) == 128 + getattr(signal, stop)
    assert _session_members(server) == []
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)


def test_oiplab_ui_on_a_port_in_use_says_so_and_starts_nothing(tmp_path):
    import socket
    import subprocess
    import sys

    oiplab = Path(sys.executable).parent / "oiplab"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([oiplab, "ui", "--port", str(port)], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode != 0 and f"port {port} on 127.0.0.1 is in use" in done.stderr
    assert "MLflow UI on" not in done.stdout
    assert not (tmp_path / "mlflow.db").exists()


# `oiplab runs` with a table far larger than a pipe's buffer (the store's query replaced).
LONG_TABLE = """\
import oiplab.tracking.query as query
from oiplab import cli
query.execution_table = lambda *args: "a row of the runs table\\n" * 100_000
cli.main(["runs"])
"""


def test_oiplab_runs_piped_into_a_reader_that_stops_ends_without_a_traceback() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    proc = subprocess.Popen([sys.executable, "-c", LONG_TABLE], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline() == "a row of the runs table\n"
    proc.stdout.close()  # as `head -1` does once it has its line
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 1 and err == "", err
