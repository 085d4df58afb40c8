"""Compose `conf/` into a plain parameter tree, and write `params.yaml` from it.

This is the same composition DVC performs for `dvc exp run -S ...` when Hydra composition is on
(`.dvc/config`: `hydra.enabled`), so `params.yaml` never needs editing by hand:

    python -m oiplab.params                      # default study -> params.yaml
    python -m oiplab.params experiment=smoke     # any Hydra overrides
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from oiplab.config import project_root
from oiplab.io import atomic_write_text

PARAMS_FILE = "params.yaml"


def conf_dir(root: Path | None = None) -> Path:
    """The `conf/` folder of the project rooted at `root` (default: the working directory)."""
    return (root or project_root()) / "conf"


def compose(overrides: Sequence[str] = (), root: Path | None = None) -> DictConfig:
    """Compose `conf/config.yaml` with Hydra overrides and resolve every interpolation."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    # version_base=None matches the call DVC makes, so both produce the same tree.
    with initialize_config_dir(str(conf_dir(root).resolve()), version_base=None):
        cfg = hydra_compose(config_name="config", overrides=list(overrides))
    OmegaConf.resolve(cfg)
    return cfg


def write_params(overrides: Sequence[str] = (), root: Path | None = None) -> Path:
    """Write the composition of `conf/` (with overrides) to `params.yaml`, atomically."""
    target = (root or project_root()) / PARAMS_FILE
    header = "# Generated from conf/ by `python -m oiplab.params"
    header += (" " + " ".join(overrides) if overrides else "") + "` (or `dvc exp run -S`).\n"
    header += "# Do not edit: change conf/ and regenerate.\n"
    atomic_write_text(target, header + OmegaConf.to_yaml(compose(overrides, root)))
    return target


def main(argv: Sequence[str] | None = None) -> None:
    path = write_params(list(sys.argv[1:] if argv is None else argv))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
