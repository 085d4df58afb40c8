"""Pipeline stages. Each module holds a pure `run(cfg) -> dict` and a tiny `main()`.

`main()` runs a stage in one of two ways:

* from the composed parameters, as `dvc.yaml` does:
  `python -m oiplab.stages.train --params params.yaml train.seed=3`
  (the file is `conf/` composed by DVC; trailing `key=value` items override it);
* as a Hydra app composing `conf/` itself, for sweeps:
  `python -m oiplab.stages.train -m train.seed=0,1,2 hydra/launcher=joblib`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from oiplab.config import Config, ConfigError, to_typed
from oiplab.errors import OiplabError

RunFn = Callable[[Config], dict[str, Any]]


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
        raise ConfigError(f"{path}: not a readable YAML params file ({exc})") from exc
    bad = [o for o in overrides if "=" not in o or o.startswith("-")]
    if bad:
        raise ConfigError(f"overrides must look like key=value, got {bad}")
    for item in overrides:
        key, value = item.split("=", 1)
        if OmegaConf.select(raw, key, default="__missing__") == "__missing__":
            raise ConfigError(f"override '{item}': config key '{key}' does not exist in {path}")
        OmegaConf.update(raw, key, yaml.safe_load(value) if value else value, merge=True)
    return to_typed(raw)


def preflight(cfg: Config) -> Config:
    """Checks worth failing on before any work: an unreachable tracking server, within seconds."""
    if cfg.tracking.enabled:
        from oiplab.config import tracking_uri
        from oiplab.tracking import check_server

        check_server(tracking_uri(cfg))
    return cfg


def _fail(exc: Exception) -> None:
    print(f"error: {exc}", file=sys.stderr)
    raise SystemExit(2)


def stage_main(run: RunFn, argv: Sequence[str] | None = None) -> None:
    """Entry point shared by every stage module (see the module docstring)."""
    # Quiet TensorFlow's C++ start-up chatter (set before the backend is first imported).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--params"]:
        if len(args) < 2:
            _fail(ConfigError("--params needs a file name"))
        try:
            run(preflight(load_params(args[1], args[2:])))
        except OiplabError as exc:
            _fail(exc)
        return
    _hydra_main(run)


def _hydra_main(run: RunFn) -> None:
    import hydra
    from omegaconf import DictConfig

    from oiplab.params import conf_dir

    @hydra.main(version_base="1.3", config_path=str(conf_dir().resolve()), config_name="config")
    def app(raw: DictConfig) -> None:
        try:
            run(preflight(to_typed(raw)))
        except OiplabError as exc:
            _fail(exc)

    app()
