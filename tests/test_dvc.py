"""dvc.yaml against the code: every stage declares the source files it imports, and its data
inputs and outputs are the paths the layout module gives (resolved by DVC itself)."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

from oiplab.layout import Layout
from tests.conftest import REPO_ROOT, compose_typed

SRC = REPO_ROOT / "src"


@cache
def dvc_stages() -> dict:
    """DVC's own resolution of dvc.yaml with the repository's params.yaml: name -> stage."""
    from dvc.repo import Repo

    with Repo(str(REPO_ROOT)) as repo:
        return {s.addressing: s for s in repo.index.stages}


def _module_file(name: str) -> Path | None:
    path = SRC.joinpath(*name.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


def _imports(path: Path) -> set[str]:
    """The `oiplab` modules a file imports (at any depth of the file, lazily or not)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("oiplab")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("oiplab"):
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return found


def transitive_sources(module: str) -> set[Path]:
    """Every file of `oiplab` that importing `module` runs (parent packages included)."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        path = _module_file(name)
        if path is None or path in seen:
            continue
        seen.add(path)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        todo += sorted(_imports(path))
    return seen


def _declared(stage) -> list[Path]:
    return [Path(d.fs_path).resolve() for d in stage.deps if not hasattr(d, "params")]


STAGE_MODULES = sorted(
    p.stem for p in (SRC / "oiplab" / "stages").glob("*.py") if p.stem != "__init__"
)


@pytest.mark.parametrize("stage", STAGE_MODULES)
def test_every_imported_source_file_is_a_declared_dependency(stage):
    stages = [s for name, s in dvc_stages().items() if name.split("@")[0] == stage]
    assert stages, f"src/oiplab/stages/{stage}.py has no stage in dvc.yaml"
    for dvc_stage in stages:
        declared = _declared(dvc_stage)
        missing = [
            str(path.relative_to(REPO_ROOT))
            for path in transitive_sources(f"oiplab.stages.{stage}")
            if not any(path == d or d in path.parents for d in declared)
        ]
        assert not missing, f"{dvc_stage.addressing} misses deps: {missing}"


def test_stage_inputs_and_outputs_are_the_layouts():
    cfg = compose_typed()
    lay = Layout.of(cfg)
    for name, stage in dvc_stages().items():
        base, _, seed = name.partition("@")
        io = lay.stage_io(base, int(seed) if seed else None)
        for kind in ("outs", "metrics", "plots"):
            declared = {
                Path(o.fs_path).resolve()
                for o in stage.outs
                if kind
                == {(False, False): "outs", (True, False): "metrics"}.get(
                    (bool(o.metric), bool(o.plot)), "plots"
                )
            }
            assert declared == {p.resolve() for p in io[kind]}, (name, kind)
        data_deps = {d for d in _declared(stage) if SRC not in d.parents and d != SRC}
        assert data_deps == {p.resolve() for p in io["deps"]}, name
    per_seed = {n.split("@")[0] for n in dvc_stages() if "@" in n}
    assert {n for n in dvc_stages() if n.split("@")[0] in per_seed} == {
        f"{s}@{seed}" for s in per_seed for seed in cfg.seeds
    }


@pytest.mark.parametrize("stage", ["train", "activations", "oip", "precursor"])
def test_a_per_seed_folder_needs_its_seed(stage):
    lay = Layout.of(compose_typed())
    assert lay.output_dir(stage, 3).name == "seed_3"
    with pytest.raises(ValueError, match=f"stage '{stage}' writes one folder per seed"):
        lay.output_dir(stage)
    assert lay.stage_io("prepare")["outs"] == [lay.prepared]  # the others need no seed


def test_stages_that_run_every_seed_rerun_when_the_seed_list_changes():
    each = {name: s for name, s in dvc_stages().items() if "--each-seed" in s.cmd}
    assert set(each) == {"activations", "oip", "precursor"}
    for name, stage in each.items():
        params = {key for d in stage.deps if hasattr(d, "params") for key in d.params}
        assert "seeds" in params, name
