"""What a stage tells its user (`oiplab.logs`): the console and job-log format, the level from
OIPLAB_LOG_LEVEL, TensorFlow's start-up noise filtered from descriptor 2 (its errors and a crash's
last words kept), the expected retracing warning dropped, and the pipeline position under DVC."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

import oiplab
from oiplab import logs
from tests.conftest import REPO_ROOT

SRC = Path(oiplab.__file__).resolve().parents[1]  # this checkout's package, for child processes
BANNER = logs.ABSL_BANNER.decode()
ONEDNN = (
    "I0000 00:00:1796583344.728982    2079 port.cc:153] oneDNN custom operations are on. "
    "You may see slightly different numerical results"
)
THREADPOOL = (
    "E0000 00:00:1796582666.530667   25241 node_def_util.cc:682] NodeDef mentions attribute "
    "use_unbounded_threadpool which is not in the op definition: Op<name=MapDataset>"
)
REAL_ERROR = "E0000 00:00:1796582666.530667   25241 cuda_driver.cc:12] failed call to cuInit"


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    full |= {"PYTHONPATH": str(SRC), **env}
    return subprocess.run(
        [sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    ("line", "min_level", "kept"),
    [
        (BANNER, 2, False),
        (ONEDNN, 2, False),  # abseil INFO, below TF_CPP_MIN_LOG_LEVEL=2
        (ONEDNN, 0, True),  # ... which a user who asks for everything gets
        ("W0000 00:00:1.5 7 gpu.cc:9] no GPU found", 2, False),
        ("W0000 00:00:1.5 7 gpu.cc:9] no GPU found", 1, True),
        (REAL_ERROR, 2, True),
        (THREADPOOL, 2, False),  # TensorFlow's own harmless "error"
        ("Traceback (most recent call last):", 3, True),
        ("error: params.yaml: params file not found", 3, True),
        ("I don't start like abseil", 2, True),
    ],
)
def test_a_native_stderr_line_is_kept_unless_it_is_known_start_up_noise(line, min_level, kept):
    assert logs.keep_line(line.encode(), min_level) is kept


def test_tensorflow_start_up_lines_never_reach_stderr_but_errors_do():
    code = (
        "import os\n{filter}import tensorflow as tf\n"
        f"os.write(2, {(REAL_ERROR + chr(10)).encode()!r})\n"
        "raise SystemExit('the last words')"
    )
    unfiltered = _python(code.format(filter=""), TF_CPP_MIN_LOG_LEVEL="2")
    assert BANNER in unfiltered.stderr  # TF_CPP_MIN_LOG_LEVEL alone does not silence it
    filtered = _python(code.format(filter="from oiplab import logs\nlogs.filter_native_stderr()\n"))
    assert filtered.returncode == 1
    assert filtered.stderr.splitlines() == [REAL_ERROR, "the last words"], filtered.stderr


def test_a_crashed_process_loses_nothing_it_wrote_to_stderr():
    """The filter is a separate process: it forwards what the stage wrote before it died."""
    code = (
        "import os\nfrom oiplab import logs\nlogs.filter_native_stderr()\n"
        "os.write(2, b'" + ONEDNN + "\\n')\n"
        "for k in range(3000):\n    os.write(2, b'line %d\\n' % k)\nos.abort()"
    )
    done = _python(code)
    assert done.returncode == -6  # SIGABRT
    assert done.stderr.splitlines() == [f"line {k}" for k in range(3000)]


def test_the_console_says_stage_and_message_and_warnings_go_to_stderr(capsys, tmp_path):
    logs.setup("train", tmp_path / "train.log")
    try:
        logging.getLogger("oiplab.training").info("seed %d: done", 3)
        logging.getLogger("oiplab.training").debug("not shown at info")
        logging.getLogger("__main__").warning("careful")
        out, err = capsys.readouterr()
        assert out == "[train] seed 3: done\n" and err == "warning: careful\n"
        kept = (tmp_path / "train.log").read_text().splitlines()
        assert kept[0].endswith("INFO oiplab.training: seed 3: done")
        assert kept[1].endswith("WARNING __main__: careful") and len(kept) == 2
    finally:
        logs.setup("train")  # closes the file


def test_the_level_comes_from_oiplab_log_level(monkeypatch):
    monkeypatch.setenv(logs.LEVEL_ENV, "DEBUG")
    assert logs.level() == logging.DEBUG
    monkeypatch.setenv(logs.LEVEL_ENV, "Loud")  # echoed as given, not lower-cased
    with pytest.raises(logs.LogLevelError, match="OIPLAB_LOG_LEVEL='Loud': expected one of debug"):
        logs.level()
    monkeypatch.delenv(logs.LEVEL_ENV)
    assert logs.level() == logging.INFO


def _record(message: str) -> logging.LogRecord:
    return logging.LogRecord("tensorflow", logging.WARNING, "f.py", 1, message, None, None)


def test_only_the_expected_predict_retracing_warning_is_dropped():
    keras = (
        "5 out of the last 5 calls to <function TensorFlowTrainer.make_predict_function.<locals>"
        ".one_step_on_data_distributed at 0x7f> triggered tf.function retracing. Tracing is"
    )
    ours = "5 out of the last 5 calls to <function step at 0x7f> triggered tf.function retracing"
    assert logs.expected_retracing(_record(keras)) is False
    assert logs.expected_retracing(_record(ours)) is True  # our own retracing would be a bug
    assert logs.expected_retracing(_record("AutoGraph could not transform")) is True


def test_keras_draws_a_bar_only_on_a_terminal(monkeypatch):
    class Terminal:
        def isatty(self) -> bool:
            return True

    assert logs.keras_verbosity() == 0  # pytest's captured stdout is no terminal: we log epochs
    monkeypatch.setattr(sys, "stdout", Terminal())
    assert logs.keras_verbosity() == 1


def test_the_pipeline_position_is_dvc_s_order_of_the_whole_pipeline():
    first = logs.pipeline_position(REPO_ROOT, "prepare")
    assert first is not None
    k, n = first
    assert k == 1 and n >= 12  # every stage, the per-seed ones once per seed
    assert logs.pipeline_position(REPO_ROOT, "report") == (n, n)
    train = logs.pipeline_position(REPO_ROOT, "train@0")
    assert train is not None and 1 < train[0] < n
    assert logs.pipeline_position(REPO_ROOT, "no_such_stage") is None


def test_a_bad_log_level_stops_a_stage_with_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "oiplab.stages.prepare", "--params", "params.yaml"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(SRC), logs.LEVEL_ENV: "loud"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and done.stdout == ""
    expected = "error: OIPLAB_LOG_LEVEL='loud': expected one of debug, info, warning, error\n"
    assert done.stderr == expected
