"""Compose `conf/` into the parameter tree stages read, write it to `params.yaml`, and check that a
`params.yaml` still is what `conf/` composes to.

This is the composition DVC performs for `dvc exp run` when Hydra composition is on
(`.dvc/config`: `hydra.enabled`), so `params.yaml` never needs editing by hand:

    python -m oiplab.params                      # default study -> params.yaml
    python -m oiplab.params experiment=smoke     # any Hydra overrides (recorded in the file)
    python -m oiplab.params --check              # exit 2 unless params.yaml matches conf/
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from oiplab.config import ConfigError, to_typed
from oiplab.errors import OiplabError
from oiplab.io import atomic_write_text
from oiplab.layout import project_root

PARAMS_FILE = "params.yaml"
RECORD = "# overrides: "  # the line of params.yaml that records its Hydra overrides (JSON list)


def conf_dir(root: Path | None = None) -> Path:
    """The `conf/` folder of the project rooted at `root` (default: the working directory)."""
    return (root or project_root()) / "conf"


def compose(overrides: Sequence[str] = (), root: Path | None = None) -> DictConfig:
    """Compose `conf/config.yaml` with Hydra overrides and resolve every interpolation.

    Raises:
        ConfigError: an override names no option or key of `conf/` (one line, with the options).
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    # version_base=None matches the call DVC makes, so both produce the same tree.
    try:
        with initialize_config_dir(str(conf_dir(root).resolve()), version_base=None):
            cfg = hydra_compose(config_name="config", overrides=list(overrides))
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as exc:
        text = str(exc).split("Config search path")[0]  # Hydra appends its search path
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        raise ConfigError(f"conf/ with overrides {list(overrides)}: {' '.join(lines)}") from None
    return cfg


def write_params(overrides: Sequence[str] = (), root: Path | None = None) -> Path:
    """Validate the composition of `conf/` (with overrides), then write it to `params.yaml`."""
    cfg = compose(overrides, root)
    to_typed(cfg)  # a bad value fails here, not at the stage that reads it
    target = (root or project_root()) / PARAMS_FILE
    shown = " ".join(overrides)
    header = (
        f"# Generated from conf/ by `python -m oiplab.params{' ' + shown if shown else ''}`; "
        "do not edit: change conf/ and regenerate.\n"
        f"{RECORD}{json.dumps(list(overrides))}\n"
    )
    atomic_write_text(target, header + OmegaConf.to_yaml(cfg))
    return target


def recorded_overrides(text: str) -> list[str] | None:
    """The overrides a `params.yaml` was generated with, or None when it records none."""
    for line in text.splitlines():
        if line.startswith(RECORD):
            return list(json.loads(line.removeprefix(RECORD)))
    return None


def check_params(path: Path, raw: dict[str, Any], root: Path | None = None) -> None:
    """Stop when `params.yaml` is not the composition of the current `conf/`.

    Inside `dvc exp run` DVC has just composed the file itself from `conf/` and its `-S`
    overrides only: the settings that the baseline's params.yaml records must not have been
    dropped on the way (`check_experiment`). Otherwise the file must equal `conf/` composed with
    the overrides it records.
    """
    root = root or path.resolve().parent
    if not conf_dir(root).is_dir():
        return  # a params file outside a project (tests, a copied run): nothing to compare with
    if os.environ.get("DVC_EXP_NAME"):
        check_experiment(path, raw, root)
        return
    overrides = recorded_overrides(path.read_text(encoding="utf-8")) or []
    expected = OmegaConf.to_container(compose(overrides, root))
    differ = sorted(_diff(expected, raw))
    if differ:
        shown = ", ".join(differ[:5]) + (", ..." if len(differ) > 5 else "")
        command = " ".join(["python -m oiplab.params", *overrides])
        raise ConfigError(
            f"{path}: differs from conf/ composed with {overrides} at {shown}; regenerate "
            f"params.yaml (`{command}`) or run `dvc exp run`, which composes conf/ itself"
        )


def check_experiment(path: Path, raw: dict[str, Any], root: Path) -> None:
    """Stop a `dvc exp run` whose composition dropped what its baseline's params.yaml was
    generated with (`python -m oiplab.params experiment=smoke`): DVC recomposes `conf/` with only
    the `-S` overrides, so without this the experiment would silently run the default study. A
    setting the recorded overrides change that is back at `conf/`'s default counts as dropped."""
    recorded = _baseline_overrides(root)
    if not recorded:
        return
    default = OmegaConf.to_container(compose([], root))
    lost = [
        key
        for key in _diff(default, OmegaConf.to_container(compose(recorded, root)))
        if _at(raw, key) == _at(default, key)
    ]
    if lost:
        shown = ", ".join(lost[:4]) + (", ..." if len(lost) > 4 else "")
        given = " ".join(f"-S {o}" for o in recorded)
        raise ConfigError(
            f"{path}: `dvc exp run` composed conf/ with its -S overrides only, dropping the "
            f"overrides params.yaml was generated with, {recorded} ({shown} back at conf/'s "
            f"defaults); give them to the experiment: `dvc exp run {given} ...`"
        )


def _baseline_overrides(root: Path) -> list[str] | None:
    """The overrides the params.yaml of a DVC experiment's baseline records: the baseline
    commit's (DVC_EXP_BASELINE_REV), else the project's workspace's (DVC_ROOT, when DVC runs the
    experiment in a temporary copy)."""
    import subprocess

    rev = os.environ.get("DVC_EXP_BASELINE_REV")
    if rev:
        shown = subprocess.run(
            ["git", "show", f"{rev}:{PARAMS_FILE}"], cwd=root, capture_output=True, text=True
        )
        found = recorded_overrides(shown.stdout) if shown.returncode == 0 else None
        if found:
            return found
    workspace = Path(os.environ.get("DVC_ROOT") or root)
    if workspace.resolve() != root.resolve() and (workspace / PARAMS_FILE).is_file():
        return recorded_overrides((workspace / PARAMS_FILE).read_text(encoding="utf-8"))
    return None


def _at(tree: Any, key: str) -> Any:
    for part in key.split("."):
        tree = tree.get(part, _MISSING) if isinstance(tree, dict) else _MISSING
    return tree


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            out += _diff(a.get(key, _MISSING), b.get(key, _MISSING), f"{prefix}{key}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


_MISSING = object()


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The command line of `python -m oiplab.params` and `oiplab params`."""
    parser.add_argument(
        "--check",
        action="store_true",
        help=f"exit 2 unless {PARAMS_FILE} is conf/ composed with the overrides it records",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="Hydra overrides of conf/ (experiment=smoke, train.epochs=2), recorded in the file",
    )
    return parser


def execute(args: argparse.Namespace) -> None:
    """Write params.yaml, or check it (`--check`); errors are one line and exit 2."""
    try:
        if args.check:
            if args.overrides:
                raise ConfigError("--check compares with the overrides the file records; give none")
            path = project_root() / PARAMS_FILE
            raw = cast(dict[str, Any], OmegaConf.to_container(OmegaConf.load(path)))  # a mapping
            check_params(path, raw, project_root())
            print(f"{path}: matches conf/")
            return
        print(f"wrote {write_params(args.overrides)}")
    except OiplabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m oiplab.params` (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m oiplab.params",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    execute(add_arguments(parser).parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
