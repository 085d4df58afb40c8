"""Pipeline stages. Each module holds a pure `run(cfg) -> dict` and a tiny `main()`.

One command line serves every stage, as `python -m oiplab.stages.<stage>` and as
`oiplab run <stage>` (`stage_parser`: its own flags beside Hydra's). A stage runs in one of two
ways:

* from the composed parameters, as `dvc.yaml` does:
  `python -m oiplab.stages.train --params params.yaml train.seed=3`
  (the file is `conf/` composed by DVC; trailing `key=value` items override it); a per-seed
  stage given `--each-seed` runs once for every seed of `seeds`, one after the other in one
  process (one MLflow run and one output folder per seed, as separate processes would give);
  a per-design stage (the seed-split design's) given `--each-design` runs so for every design
  of `split.designs`.
  `oiplab run <stage> [key=value ...]` is this with `--params params.yaml`;
* as a Hydra app composing `conf/` itself: without `--params`, or with any of Hydra's flags
  (`-m`, `--help`, `--cfg job`, `--info`, ...) or a `hydra.*` / `hydra/` override, e.g. a sweep:
  `python -m oiplab.stages.train -m train.seed=0,1,2 hydra/launcher=joblib`.
"""

from __future__ import annotations

import argparse
import functools
import gc
import inspect
import io
import logging
import os
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, cast

from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from oiplab import logs
from oiplab.config import Config, ConfigError, to_typed
from oiplab.errors import OiplabError
from oiplab.params import PARAMS_FILE, check_params

if TYPE_CHECKING:
    from oiplab.tracking import Run

RunFn = Callable[[Config], dict[str, Any]]

log = logging.getLogger(__name__)


def load_params(path: str | Path, overrides: Sequence[str] = ()) -> Config:
    """Read a composed params file, apply `key=value` overrides, and validate it."""
    import yaml
    from omegaconf import OmegaConf

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found (generate it: `python -m oiplab.params`)")
    try:
        raw = OmegaConf.load(path)
    except Exception as exc:  # YAML syntax errors come in several types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{path}: not a readable YAML params file ({first})") from None
    if not isinstance(raw, DictConfig):
        raise ConfigError(f"{path}: expected a mapping of settings, got a {type(raw).__name__}")
    check_params(path, cast(dict[str, Any], OmegaConf.to_container(raw)))
    bad = [o for o in overrides if "=" not in o or o.startswith("-")]
    if bad:
        raise ConfigError(f"overrides must look like key=value, got {bad}")
    for item in overrides:
        key, value = item.split("=", 1)
        if OmegaConf.select(raw, key, default="__missing__") == "__missing__":
            raise ConfigError(f"override '{item}': config key '{key}' does not exist in {path}")
        OmegaConf.update(raw, key, yaml.safe_load(value) if value else value, merge=True)
    return to_typed(raw)


def record(run: Run, folder: Path, metrics: dict[str, Any], artifact_name: str) -> None:
    """Write a stage's numbers (`METRICS`) and its run's identity (`RUN`) into its staged output
    folder, then log the numbers and the whole folder to the stage's run."""
    from oiplab.io import to_json
    from oiplab.layout import METRICS, RUN

    (folder / METRICS).write_text(to_json(metrics))
    (folder / RUN).write_text(to_json(run.record))
    run.log_results(metrics, folder, artifact_name)


def log_data(run: Run, data: Any, source: Path, contexts: dict[str, str]) -> None:
    """Log the prepared data's splits (`contexts`: split -> what the run used it for) as the
    run's MLflow datasets `<data>-<split>`, each with its content digest."""
    for split, context in contexts.items():
        arrays = (getattr(data, f"x_{split}"), getattr(data, f"y_{split}"))
        name, digest = f"{data.name}-{split}", data.meta.sha256[split]
        run.log_dataset(arrays, name, digest, str(source), context)


# A training's numbers fixed for its run (params: a one-point metric charts as one bar), and
# those measured on the test set (metrics linked to that data set).
TRAINING_CONSTANTS = ("epochs", "n_params", "train_seconds", "images_per_second")
TEST_METRICS = ("test_accuracy", "test_loss")


def record_training(run: Run, folder: Path, metrics: dict[str, Any], test_set: str) -> None:
    """`record` for a trained network: its constants logged as parameters, its test numbers as
    metrics of the data set `test_set` (logged by the run before), the folder as artifacts."""
    from oiplab.io import to_json
    from oiplab.layout import METRICS, RUN

    (folder / METRICS).write_text(to_json(metrics))
    (folder / RUN).write_text(to_json(run.record))
    run.log_params({k: metrics[k] for k in TRAINING_CONSTANTS})
    run.log_metrics({k: metrics[k] for k in TEST_METRICS}, dataset=test_set)
    run.log_artifacts(folder, "outputs")


def keep_figures(folder: Path, figures: Path, names: list[str]) -> None:
    """Copy the key figures `names` of a stage's staged output folder into its staged folder of
    git-tracked figures (`Layout.figures_dir`), which `dvc plots show` and `dvc plots diff` draw."""
    for name in names:
        shutil.copyfile(folder / name, figures / name)


OUTPUT_PATHS = ("models", "split_models", "metrics", "artifacts", "reports", "checkpoints")


def preflight(cfg: Config) -> Config:
    """Checks worth failing on before any work: output folders that cannot be written, and an
    unreachable tracking server (within seconds). Then the thread count the numbers depend on."""
    from oiplab.backend import pin_threads
    from oiplab.io import check_writable

    for key in OUTPUT_PATHS:
        check_writable(Path(getattr(cfg.paths, key)), f"paths.{key}")
    if cfg.tracking.enabled:
        from oiplab.tracking import check_server, tracking_uri

        check_server(tracking_uri(cfg))
    pin_threads(cfg.threads)
    return cfg


def _fail(exc: BaseException, code: int = 2) -> NoReturn:
    from oiplab.credentials import redact

    log.error(redact(str(exc)))
    raise SystemExit(code)


@dataclass(frozen=True)
class JobFailed:
    """What a Hydra sweep's job returns when its stage failed with a one-line error: the sweep
    goes on with its other jobs, and `SweepReport` reports this one at the end."""

    error: str
    code: int


def _failed(exc: BaseException, code: int, tree: Mapping[str, Any] | None, stage: str) -> int:
    """Record a stage's failure (a FAILED run, where none recorded it yet) and report it."""
    from oiplab.tracking.runs import record_failure

    record_failure(tree, stage, exc)
    log.error(str(exc))
    return code


def _guarded(run: RunFn, cfg: Config) -> JobFailed | None:
    """Run a stage; a one-line failure ends the process, or, in a Hydra sweep's job, is
    returned (the sweep runs its other jobs)."""
    from oiplab.stops import StageInterrupted
    from oiplab.tracking.runs import runs_opened

    opened = runs_opened()
    try:
        run(preflight(cfg))
    except (OiplabError, StageInterrupted) as exc:
        code = 130 if isinstance(exc, StageInterrupted) else 2
        tree = cfg.model_dump() if runs_opened() == opened else None  # else its run has it
        _failed(exc, code, tree, stage_name(run))
        if code == 2 and _in_sweep():  # a stop signal ends the whole sweep, not just this job
            return JobFailed(str(exc).splitlines()[0], code)
        raise SystemExit(code) from None
    return None


def _in_sweep() -> bool:
    """Whether this is a job of a Hydra sweep (multirun)."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


EACH_SEED = "--each-seed"


def seed_configs(path: str | Path, overrides: Sequence[str]) -> list[Config]:
    """The parameters of a per-seed stage for every seed of `seeds`, in order (`--each-seed`)."""
    if any(o.split("=", 1)[0] == "train.seed" for o in overrides):
        raise ConfigError(f"{EACH_SEED} runs each seed of `seeds`: set seeds=[...], not train.seed")
    seeds = load_params(path, overrides).seeds
    return [load_params(path, [*overrides, f"train.seed={seed}"]) for seed in seeds]


EACH_DESIGN = "--each-design"


def design_configs(path: str | Path, overrides: Sequence[str]) -> list[Config]:
    """The parameters of a per-design stage for every design of `split.designs`, in order
    (`--each-design`)."""
    if any(o.split("=", 1)[0] == "split.design" for o in overrides):
        raise ConfigError(
            f"{EACH_DESIGN} runs each design of `split.designs`: set split.designs=[...], "
            "not split.design"
        )
    designs = load_params(path, overrides).split.designs
    return [load_params(path, [*overrides, f"split.design={d}"]) for d in designs]


def stage_main(
    run: RunFn,
    argv: Sequence[str] | None = None,
    *,
    per_seed: bool = False,
    per_design: bool = False,
    as_oiplab_run: bool = False,
) -> None:
    """Entry point shared by every stage module (see the module docstring). `per_seed`: the
    stage works on one seed (`train.seed`) and accepts `--each-seed`; `per_design`: on one
    seed-split design (`split.design`), and accepts `--each-design`. `as_oiplab_run`: started
    as `oiplab run <stage>`, which reads params.yaml unless the command line asks for Hydra."""
    # Quiet TensorFlow's C++ start-up chatter (set before the backend is first imported).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if isinstance(sys.stdout, io.TextIOWrapper):  # not a replaced stream (a test's StringIO)
        sys.stdout.reconfigure(line_buffering=True)  # progress lines appear as they are printed
    name = stage_name(run)
    if argv is None:  # this process's entry point (`python -m oiplab.stages.<stage>`)
        logs.filter_native_stderr()
    try:
        logs.setup(name)
    except OiplabError as exc:
        _fail(exc)
    _log_position(name)
    prog = f"oiplab run {name}" if as_oiplab_run else f"python -m oiplab.stages.{name}"
    doc = sys.modules[run.__module__].__doc__ or ""
    parser = stage_parser(prog, doc, (per_seed, per_design))
    args = parse_stage_args(
        parser,
        list(sys.argv[1:] if argv is None else argv),
        default_params=PARAMS_FILE if as_oiplab_run else None,
    )
    if args.params is None:
        _hydra_main(run, args, parser)
    else:
        for cfg in _params_configs(args, (per_seed, per_design), name):
            _guarded(run, cfg)
    # The stage is done and has closed its files. Freezing the objects spares the interpreter's
    # last garbage collection over the whole TensorFlow object graph, a cost every stage process
    # would pay at exit; exit handlers still run.
    gc.freeze()


def _log_position(stage: str) -> None:
    """Under `dvc repro` (which names the stage it runs in DVC_STAGE): where this stage stands
    in the pipeline, "stage k of N" (DVC itself prints only "Running stage 'x'")."""
    address, root = os.environ.get("DVC_STAGE"), os.environ.get("DVC_ROOT")
    if not address or not root:
        return
    found = logs.pipeline_position(Path(root), address)
    if found is not None:
        log.info("pipeline stage %d of %d (%s)", *found, address)


def stage_name(run: RunFn) -> str:
    """The stage a `run` function belongs to: its module's file name (`oiplab.stages.train` ->
    `train`; also under `python -m`, where the module is `__main__`)."""
    return Path(inspect.getfile(run)).stem


class _Parser(argparse.ArgumentParser):
    """Command-line mistakes are one line, as the stages' own errors are."""

    def error(self, message: str) -> NoReturn:
        _fail(ConfigError(f"{message} (see `{self.prog} --help`)"))


def stage_parser(
    prog: str, description: str, per: tuple[bool, bool] = (True, True)
) -> argparse.ArgumentParser:
    """The command line of a stage: `--params FILE`, `--each-seed` and `--each-design` (shown
    where the stage is per seed, per design: `per`; elsewhere still parsed, to say why they do
    not apply), and Hydra's own flags and overrides (Hydra's parser, so `--help`, `--cfg`,
    `--info`, `-m` mean what Hydra says)."""
    from hydra._internal.utils import get_args_parser

    offered = [flag for flag, on in zip((EACH_SEED, EACH_DESIGN), per, strict=True) if on]
    each = f" [{' | '.join(offered)}]" if offered else ""
    usage = (
        f"{prog} [--params FILE]{each} [key=value ...]\n"
        f"       {prog} [--multirun | --cfg {{job,hydra,all}} | --info | --help] [key=value ...]"
    )
    parser = _Parser(
        prog=prog,
        usage=usage,
        description=description,
        parents=[get_args_parser()],
        add_help=False,  # Hydra's `--help` prints the stage's help with the composed config
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for action in parser._actions:  # Hydra's text names the file of its own caller
        if action.dest == "shell_completion":
            action.help = "install or uninstall shell completion (see --hydra-help)"
    ours = parser.add_argument_group("reading a composed parameters file (dvc.yaml's way)")
    ours.add_argument(
        "--params",
        metavar="FILE",
        help="read this file (conf/ composed) instead of composing conf/ with Hydra; "
        f"`oiplab run` reads {PARAMS_FILE} unless a Hydra flag or hydra.* override is given",
    )
    ours.add_argument(
        EACH_SEED,
        action="store_true",
        help="run once for every seed of `seeds`, in one process" if per[0] else argparse.SUPPRESS,
    )
    ours.add_argument(
        EACH_DESIGN,
        action="store_true",
        help=(
            "run once for every design of `split.designs`, in one process"
            if per[1]
            else argparse.SUPPRESS
        ),
    )
    return parser


def hydra_asked(args: argparse.Namespace) -> list[str]:
    """The Hydra flags given (`--cfg`, `-m`, ...) and the overrides of Hydra's own settings."""
    from hydra._internal.utils import get_args_parser

    flags = [
        action.option_strings[0]
        for action in get_args_parser()._actions  # `--help` aside: it wins over everything
        if action.option_strings and action.dest != "help" and getattr(args, action.dest, None)
    ]
    keys = [o.lstrip("+~").split("=", 1)[0] for o in args.overrides]
    return flags + [k for k in keys if k == "hydra" or k.startswith(("hydra.", "hydra/"))]


def parse_stage_args(
    parser: argparse.ArgumentParser, argv: list[str], default_params: str | None
) -> argparse.Namespace:
    """Parse a stage's command line and settle the mode: `args.params` is the params file to
    read, or None for a Hydra app. Unknown items are kept as overrides where a params file is
    read, so `load_params` names them ("overrides must look like key=value")."""
    args, unknown = parser.parse_known_intermixed_args(argv)
    hydra = hydra_asked(args)
    if args.help:  # Hydra's help, whatever else is given
        args.params, args.each_seed, args.each_design = None, False, False
    elif args.params is not None and hydra:
        shown = " ".join(hydra)
        parser.error(f"--params reads a composed file; Hydra's {shown} composes conf/: drop one")
    elif args.params is None and not hydra:
        args.params = default_params
    if args.params is None and not args.help:
        if unknown:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        if args.each_seed:
            parser.error(f"{EACH_SEED} needs --params; under Hydra, sweep: -m train.seed=0,1,2")
        if args.each_design:
            parser.error(f"{EACH_DESIGN} needs --params; under Hydra, sweep: -m split.design=...")
    args.overrides = [*args.overrides, *unknown]
    return args


def _params_configs(args: argparse.Namespace, per: tuple[bool, bool], stage: str) -> list[Config]:
    """The configs a params-file run works through: one, one per seed (`--each-seed`), or one
    per seed-split design (`--each-design`); `per`: whether the stage is per seed, per design."""
    per_seed, per_design = per
    # a flag the stage has no use for is a command-line mistake, as argparse's are: no run
    if args.each_seed and not per_seed:
        _fail(ConfigError(f"{EACH_SEED}: this stage is not run per seed; drop the flag"))
    if args.each_design and not per_design:
        _fail(ConfigError(f"{EACH_DESIGN}: this stage is not run per design; drop the flag"))
    try:
        if args.each_seed:
            return seed_configs(args.params, args.overrides)
        if args.each_design:
            return design_configs(args.params, args.overrides)
        return [load_params(args.params, args.overrides)]
    except OiplabError as exc:
        raise SystemExit(_failed(exc, 2, _params_tree(args.params), stage)) from None


def _params_tree(path: str | Path) -> dict[str, Any] | None:
    """The parameters of a params file as far as they are readable (to record a failure)."""
    from omegaconf import OmegaConf

    try:
        raw = OmegaConf.load(path)
        return (
            cast(dict[str, Any], OmegaConf.to_container(raw))
            if isinstance(raw, DictConfig)
            else None
        )
    except Exception:  # missing, unreadable, not YAML: nothing to record with
        return None


class SweepReport(Callback):
    """Hydra callback (`conf/hydra/callbacks/sweep_report.yaml`): each job of a sweep leaves its
    outcome in `<sweep dir>/job_status/<job number>.json` (so it works for launchers that run
    jobs in other processes too); at the end of the sweep, the failed jobs are listed, one line
    each with its overrides and error, and the sweep exits 2. A job's failure does not end the
    sweep: it returns `JobFailed` (or raises, for an unexpected error)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        shutil.rmtree(_job_status_dir(config), ignore_errors=True)  # an earlier sweep's

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        from hydra.core.utils import JobStatus

        from oiplab.io import write_json

        if job_return.hydra_cfg is None or job_return.hydra_cfg.hydra.mode != RunMode.MULTIRUN:
            return
        value = job_return._return_value  # `return_value` raises what a failed job raised
        error = None
        if job_return.status == JobStatus.FAILED:
            error = f"{type(value).__name__}: {value}".splitlines()[0]
        elif isinstance(value, JobFailed):
            error = value.error
        status = {"overrides": " ".join(job_return.overrides or []), "error": error}
        write_json(_job_status_dir(config) / f"{config.hydra.job.num}.json", status)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from oiplab.io import read_json

        found = sorted(_job_status_dir(config).glob("*.json"), key=lambda f: int(f.stem))
        jobs = [(int(f.stem), read_json(f, "sweep job status")) for f in found]
        failed = [(num, job) for num, job in jobs if job["error"] is not None]
        if not failed:
            return
        print(f"error: {len(failed)} of {len(jobs)} sweep jobs failed:", file=sys.stderr)
        for num, job in failed:
            print(f"  job {num} ({job['overrides']}): {job['error']}", file=sys.stderr)
        raise SystemExit(2)


def _job_status_dir(config: DictConfig) -> Path:
    return Path(config.hydra.sweep.dir) / "job_status"


def hydra_outputs(cfg: Config, output_dir: Path, overridden: set[str]) -> Config:
    """Put a Hydra job's outputs under its own output folder (a sweep's jobs never write into
    the pipeline's DVC-tracked folders, nor into each other's), except the `paths.*` keys the
    command line set. The prepared data stays where it is: it is an input."""
    for key in OUTPUT_PATHS:
        if f"paths.{key}" not in overridden:
            setattr(cfg.paths, key, str(output_dir / getattr(cfg.paths, key)))
    return cfg


def _hydra_main(run: RunFn, args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Run `run` as a Hydra app over `conf/`, with the command line `parser` has parsed."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import _flush_loggers
    from hydra.main import _get_rerun_conf
    from hydra.version import setbase
    from omegaconf import OmegaConf

    from oiplab.params import conf_dir

    # Hydra names the job (its log file, `hydra.job.name`, the help's title) after the task
    # function's module: through `wraps`, the stage's, not this package's.
    @functools.wraps(run)
    def app(raw: DictConfig) -> JobFailed | None:
        hc = HydraConfig.get()
        # the job's log file, named after the stage as Hydra's own would be (`hydra.job.name`)
        logs.setup(hc.job.name, Path(hc.runtime.output_dir) / f"{hc.job.name}.log")
        if hc.mode == RunMode.MULTIRUN:  # one parent MLflow run for the whole sweep
            os.environ["OIPLAB_EXECUTION"] = f"sweep:{Path(hc.sweep.dir).resolve()}"
        overridden = {o.split("=", 1)[0].lstrip("+~") for o in hc.overrides.task}
        try:
            cfg = hydra_outputs(to_typed(raw), Path(hc.runtime.output_dir), overridden)
        except OiplabError as exc:
            tree = cast(dict[str, Any], OmegaConf.to_container(raw, resolve=False))
            code = _failed(exc, 2, tree, stage_name(run))
            if hc.mode == RunMode.MULTIRUN:
                return JobFailed(str(exc).splitlines()[0], code)
            raise SystemExit(code) from None
        return _guarded(run, cfg)

    setbase("1.3")
    if args.help:  # the command line first; Hydra adds the config groups and the composed config
        print(parser.format_help())
    if args.experimental_rerun is not None:  # as `hydra.main` does it
        app(_get_rerun_conf(args.experimental_rerun, args.overrides))
        _flush_loggers()
        return
    # `hydra.main` would parse `sys.argv` again with Hydra's parser; `_run_hydra` is what it
    # calls with the parsed flags (hydra-core is pinned in constraints.txt; tests/test_cli.py
    # runs --help, --cfg and a Hydra job through it).
    from hydra._internal.utils import _run_hydra

    _run_hydra(
        args=args,
        args_parser=parser,
        task_function=app,
        config_path=str(conf_dir().resolve()),
        config_name="config",
    )
