"""Pipeline stages. Each module holds a pure `run(cfg) -> dict` and a tiny `main()`.

`main()` runs a stage in one of two ways:

* from the composed parameters, as `dvc.yaml` does:
  `python -m oiplab.stages.train --params params.yaml train.seed=3`
  (the file is `conf/` composed by DVC; trailing `key=value` items override it); a per-seed
  stage given `--each-seed` runs once for every seed of `seeds`, one after the other in one
  process (one MLflow run and one output folder per seed, as separate processes would give);
* as a Hydra app composing `conf/` itself, for sweeps:
  `python -m oiplab.stages.train -m train.seed=0,1,2 hydra/launcher=joblib`.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oiplab.config import Config, ConfigError, to_typed
from oiplab.errors import OiplabError
from oiplab.params import check_params

if TYPE_CHECKING:
    from oiplab.tracking import Run

RunFn = Callable[[Config], dict[str, Any]]


def load_params(path: str | Path, overrides: Sequence[str] = ()) -> Config:
    """Read a composed params file, apply `key=value` overrides, and validate it."""
    import yaml
    from omegaconf import DictConfig, OmegaConf

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
    check_params(path, OmegaConf.to_container(raw))
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


OUTPUT_PATHS = ("models", "metrics", "artifacts", "reports", "checkpoints")


def preflight(cfg: Config) -> Config:
    """Checks worth failing on before any work: output folders that cannot be written, and an
    unreachable tracking server (within seconds)."""
    from oiplab.io import check_writable

    for key in OUTPUT_PATHS:
        check_writable(Path(getattr(cfg.paths, key)), f"paths.{key}")
    if cfg.tracking.enabled:
        from oiplab.tracking import check_server, tracking_uri

        check_server(tracking_uri(cfg))
    return cfg


def _fail(exc: BaseException, code: int = 2) -> None:
    print(f"error: {exc}", file=sys.stderr)
    raise SystemExit(code)


def _guarded(run: RunFn, cfg: Config) -> None:
    from oiplab.stops import StageInterrupted

    try:
        run(preflight(cfg))
    except OiplabError as exc:
        _fail(exc)
    except StageInterrupted as exc:
        _fail(exc, 130)


EACH_SEED = "--each-seed"


def seed_configs(path: str | Path, overrides: Sequence[str]) -> list[Config]:
    """The parameters of a per-seed stage for every seed of `seeds`, in order (`--each-seed`)."""
    if any(o.split("=", 1)[0] == "train.seed" for o in overrides):
        raise ConfigError(f"{EACH_SEED} runs each seed of `seeds`: set seeds=[...], not train.seed")
    seeds = load_params(path, overrides).seeds
    return [load_params(path, [*overrides, f"train.seed={seed}"]) for seed in seeds]


def stage_main(run: RunFn, argv: Sequence[str] | None = None, *, per_seed: bool = False) -> None:
    """Entry point shared by every stage module (see the module docstring). `per_seed`: the
    stage works on one seed (`train.seed`) and accepts `--each-seed`."""
    # Quiet TensorFlow's C++ start-up chatter (set before the backend is first imported).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stdout.reconfigure(line_buffering=True)  # progress lines appear as they are printed
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--params"]:
        if len(args) < 2:
            _fail(ConfigError("--params needs a file name"))
        each, overrides = EACH_SEED in args[2:], [a for a in args[2:] if a != EACH_SEED]
        try:
            if each and not per_seed:
                raise ConfigError(f"{EACH_SEED}: this stage is not run per seed; drop the flag")
            if each:
                configs = seed_configs(args[1], overrides)
            else:
                configs = [load_params(args[1], overrides)]
        except OiplabError as exc:
            _fail(exc)
        for cfg in configs:
            _guarded(run, cfg)
    else:
        _hydra_main(run)
    # The stage is done and has closed its files. Freezing the objects spares the interpreter's
    # last garbage collection over the whole TensorFlow object graph (1.2-2 s per process here,
    # 14 processes per pipeline); exit handlers still run.
    gc.freeze()


def hydra_outputs(cfg: Config, output_dir: Path, overridden: set[str]) -> Config:
    """Put a Hydra job's outputs under its own output folder (a sweep's jobs never write into
    the pipeline's DVC-tracked folders, nor into each other's), except the `paths.*` keys the
    command line set. The prepared data stays where it is: it is an input."""
    for key in OUTPUT_PATHS:
        if f"paths.{key}" not in overridden:
            setattr(cfg.paths, key, str(output_dir / getattr(cfg.paths, key)))
    return cfg


def _hydra_main(run: RunFn) -> None:
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import DictConfig

    from oiplab.params import conf_dir

    @hydra.main(version_base="1.3", config_path=str(conf_dir().resolve()), config_name="config")
    def app(raw: DictConfig) -> None:
        hc = HydraConfig.get()
        if hc.mode == RunMode.MULTIRUN:  # one parent MLflow run for the whole sweep
            os.environ["OIPLAB_EXECUTION"] = f"sweep:{Path(hc.sweep.dir).resolve()}"
        overridden = {o.split("=", 1)[0].lstrip("+~") for o in hc.overrides.task}
        try:
            cfg = hydra_outputs(to_typed(raw), Path(hc.runtime.output_dir), overridden)
        except OiplabError as exc:
            _fail(exc)
        _guarded(run, cfg)

    app()
