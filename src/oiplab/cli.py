"""oiplab: do independently trained CNNs learn the same maps, in the same order? The study's
command line, beside `dvc repro` (which runs every stage) and `make help`.

  oiplab run <stage> [key=value ...]       one stage from params.yaml, with overrides
  oiplab run <stage> -m key=a,b ...        a Hydra sweep over conf/ (outputs under multirun/)
  oiplab run <stage> --help | --cfg job    the stage's flags, config groups and composed config
  oiplab params [overrides] | --check      write params.yaml from conf/, or check it
  oiplab ui [--port P]                     the MLflow UI on the project's store (tracking.ui)
  oiplab runs [--study S] [--parent ID]    the runs of the latest (or a given) execution
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from urllib.parse import urlsplit

from oiplab.credentials import redact
from oiplab.errors import OiplabError
from oiplab.layout import STAGES

# Studies run as Hydra sweeps beside the DVC pipeline (`oiplab run <study> -m experiment=...`).
STUDIES = ("width",)

DEFAULT_UI = "http://127.0.0.1:5000"


def _stage_summary(stage: str) -> str:
    """The first paragraph of a stage module's docstring, without its "Stage `x`:" prefix."""
    # read, not imported: `oiplab ui` or `oiplab runs` need not load ten stage modules
    spec = importlib.util.find_spec(f"oiplab.stages.{stage}")
    source = Path(spec.origin).read_text(encoding="utf-8") if spec and spec.origin else ""
    doc = ast.get_docstring(ast.parse(source)) or ""
    first = " ".join(doc.strip().split("\n\n")[0].split())
    return first.removeprefix(f"Stage `{stage}`: ").removeprefix(f"Study `{stage}`: ")


def _stages_help() -> str:
    """The stages, one entry each, for `oiplab run --help`."""
    width = max(len(s) for s in STAGES) + 4
    lines = [
        textwrap.fill(
            _stage_summary(stage),
            width=100,
            initial_indent=f"  {stage:<{width - 2}}",
            subsequent_indent=" " * width,
        )
        for stage in (*STAGES, *STUDIES)
    ]
    studies = len(STAGES)
    return (
        "the stages, in pipeline order:\n"
        + "\n".join(lines[:studies])
        + "\nthe studies beside the pipeline (Hydra sweeps):\n"
        + "\n".join(lines[studies:])
    )


def _stage(args: argparse.Namespace) -> None:
    """`oiplab run <stage> ...`: the stage's own command line (`oiplab.stages.stage_parser`)."""
    if args.stage not in (*STAGES, *STUDIES):
        got = "no stage given" if args.stage is None else f"no stage '{args.stage}'"
        print(f"error: {got}; the stages: {', '.join((*STAGES, *STUDIES))}", file=sys.stderr)
        raise SystemExit(2)
    module = importlib.import_module(f"oiplab.stages.{args.stage}")
    module.main(args.args, as_oiplab_run=True)


def _ui(args: argparse.Namespace) -> None:
    from oiplab.tracking.store import default_uri

    uri = default_uri()
    if uri.startswith("http"):
        shown = redact(uri)
        raise SystemExit(f"error: MLFLOW_TRACKING_URI is a server ({shown}): open it in a browser")
    configured = configured_ui()
    parts = urlsplit(configured)
    args.host = args.host or parts.hostname or "127.0.0.1"
    args.port = args.port or parts.port or 5000
    if not _port_free(args.host, args.port):
        raise SystemExit(f"error: port {args.port} on {args.host} is in use: pass --port N")
    warning = exposure_warning(args.host, args.port)
    if warning:
        print(warning, file=sys.stderr)
    mlflow = Path(sys.executable).parent / "mlflow"
    address = f"http://{args.host}:{args.port}"
    print(f"MLflow UI on {address} (store {redact(uri)}); Ctrl-C to stop")
    if address != configured.rstrip("/"):
        print(
            f"note: the report links runs to {configured} (tracking.ui in params.yaml); for "
            f"links to this UI: `dvc exp run -S tracking.ui={address}`"
        )
    runs_page = _runs_page(uri, args.experiment)
    if runs_page:  # the UI itself opens on its GenAI overview
        print(f"the project's runs: {address}/{runs_page}")
    command = [str(mlflow), "ui", "--backend-store-uri", uri]
    raise SystemExit(_serve([*command, "--host", args.host, "--port", str(args.port)]))


def configured_ui(params: Path | None = None) -> str:
    """Where the UI is meant to serve (`tracking.ui` of the params file; the report links
    there), or 127.0.0.1:5000 without a readable params file."""
    import yaml

    from oiplab.params import PARAMS_FILE

    try:
        text = (params or Path(PARAMS_FILE)).read_text(encoding="utf-8")
        found = yaml.safe_load(text)["tracking"]["ui"]
    except (OSError, TypeError, KeyError, yaml.YAMLError):
        return DEFAULT_UI
    return str(found)


def exposure_warning(host: str, port: int) -> str | None:
    """The warning for serving the UI on `host` when that is not only this machine (loopback):
    `mlflow ui` has no login, and it can change and delete runs, not only show them."""
    import ipaddress
    import socket

    try:
        found = {str(i[4][0]) for i in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
        if all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in found):
            return None
    except (OSError, ValueError):
        pass  # an address this machine cannot resolve: warn
    return (
        f"warning: --host {host} lets anyone who can reach this machine's port {port} read, "
        "change and delete every run, artifact and model of this store, with no login; keep "
        "the default 127.0.0.1 and use `ssh -L 5000:127.0.0.1:5000 <host>`, or run "
        "`mlflow server --app-name basic-auth` behind HTTPS (README: a team server)"
    )


STOPS = (signal.SIGTERM, signal.SIGHUP)  # besides Ctrl-C: a kill, a closed terminal


def _serve(cmd: list[str]) -> int:
    """Run a server that starts workers of its own (`mlflow ui`: uvicorn, job runners) in a
    process group of its own, and stop the whole group when this command ends: on Ctrl-C,
    SIGTERM or SIGHUP, or when the server exits. The exit code: the server's, or 128 + the
    signal's number (130 for Ctrl-C)."""

    def stop(signum, _frame):
        raise SystemExit(128 + signum)

    proc = subprocess.Popen(cmd, start_new_session=True)
    previous = {s: signal.getsignal(s) for s in (*STOPS, signal.SIGINT)}
    for s in STOPS:
        signal.signal(s, stop)
    try:
        code = proc.wait()
        return 128 - code if code < 0 else code  # killed by a signal: as a shell reports it
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    finally:
        for s in previous:  # a second signal must not cut the stop short
            signal.signal(s, signal.SIG_IGN)
        _stop_group(proc)
        for s, handler in previous.items():
            signal.signal(s, handler)


def _stop_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM to `proc`'s process group; SIGKILL to what of it still runs after `grace` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        deadline = time.monotonic() + grace
        try:
            os.killpg(proc.pid, sig)
            while time.monotonic() < deadline:
                _reap(proc.pid)
                os.killpg(proc.pid, 0)  # raises once no process of the group is left
                time.sleep(0.1)
        except ProcessLookupError:
            return


def _reap(group: int) -> None:
    """Collect the exit of every ended member of `group` that is this process's child: the
    leader, and orphaned workers when this process is PID 1 or a subreaper."""
    try:
        while os.waitpid(-group, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass  # none (left) to collect


def _port_free(host: str, port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _runs_page(uri: str, experiment: str) -> str | None:
    """The UI fragment of `experiment`'s runs table, when the store exists and holds it."""
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return None
    from mlflow.tracking import MlflowClient

    found = MlflowClient(uri).get_experiment_by_name(experiment)
    return f"#/experiments/{found.experiment_id}/runs" if found else None


def _runs(args: argparse.Namespace) -> None:
    from oiplab.tracking.query import execution_table

    table = execution_table(args.uri, args.experiment, args.study, args.parent)
    try:
        print(table, flush=True)
    except BrokenPipeError:  # `oiplab runs | head`: the reader stopped reading, as it may
        # Python's own advice: point stdout at /dev/null, so the flush at exit fails no more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(1) from None


def parser() -> argparse.ArgumentParser:
    """The `oiplab` command line (a stage's own flags: `oiplab.stages.stage_parser`)."""
    from oiplab import params

    top = argparse.ArgumentParser(
        prog="oiplab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="command")
    run = sub.add_parser(
        "run",
        help="run one stage (`oiplab run --help`: the stages; `oiplab run <stage> --help`)",
        description=_stages_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="oiplab run <stage> [--params FILE] [--each-seed | --each-design] [-m] [--cfg job] "
        "[--help] [key=value ...]",
    )
    run.add_argument("stage", nargs="?", help="a stage (listed above)")
    run.add_argument(
        "args", nargs=argparse.REMAINDER, help="the stage's (see `oiplab run <stage> --help`)"
    )
    params.add_arguments(
        sub.add_parser(
            "params",
            help="write params.yaml from conf/, or check it",
            description=params.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    )
    ui = sub.add_parser("ui", help="the MLflow UI on the project's store")
    ui.add_argument("--host", default=None, help="default: tracking.ui's host (127.0.0.1)")
    ui.add_argument("--port", type=int, default=None, help="default: tracking.ui's port (5000)")
    ui.add_argument("--experiment", default="oiplab", help="the experiment whose runs to link")
    runs = sub.add_parser("runs", help="the stage runs of a pipeline execution or sweep")
    runs.add_argument("--uri", default=None, help="tracking URI (default: the project's)")
    runs.add_argument("--experiment", default="oiplab")
    runs.add_argument("--study", default=None, help="only executions of this study")
    runs.add_argument("--parent", default=None, help="the parent run id (default: the latest)")
    return top


def main(argv: list[str] | None = None) -> None:
    """Run the `oiplab` command (see the module docstring)."""
    from oiplab import params

    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    if argv is None and args.command == "run":  # a stage in this process: TensorFlow's noise
        from oiplab.logs import filter_native_stderr

        filter_native_stderr()
    commands = {"run": _stage, "params": params.execute, "ui": _ui, "runs": _runs}
    try:
        commands[args.command](args)
    except OiplabError as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
