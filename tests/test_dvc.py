"""dvc.yaml against the code: every stage declares the source files it imports, and its data
inputs and outputs are the paths the layout module gives (resolved by DVC itself)."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from oiplab.cli import STUDIES
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
    p.stem
    for p in (SRC / "oiplab" / "stages").glob("*.py")
    if p.stem != "__init__" and p.stem not in STUDIES  # the studies are Hydra sweeps, not DVC's
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


def _stage_key(name: str) -> tuple[str, int | None, str | None]:
    """A DVC stage name as (stage, seed, design): `train@3`, `train_split@same_init-1`."""
    base, _, key = name.partition("@")
    design, _, member = key.rpartition("-") if "-" in key else ("", "", key)
    if member.isdigit():
        return base, int(member), design or None
    return base, None, key or None


def test_stage_inputs_and_outputs_are_the_layouts():
    cfg = compose_typed()
    lay = Layout.of(cfg)
    for name, stage in dvc_stages().items():
        io = lay.stage_io(*_stage_key(name))
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
    split = {"train_split", "compare_split"}
    per_seed = {n.split("@")[0] for n in dvc_stages() if "@" in n} - split
    assert {n for n in dvc_stages() if n.split("@")[0] in per_seed} == {
        f"{s}@{seed}" for s in per_seed for seed in cfg.seeds
    }


def test_the_split_design_trains_every_member_of_every_design_and_compares_each_design():
    """The seed-split design (`conf/split/`) in the default pipeline: one training per design x
    member (the shared seed's network is the seeds' own), one comparison per design (all in one
    stage, `--each-design`)."""
    cfg = compose_typed()
    names = set(dvc_stages())
    sp = cfg.split
    assert {n for n in names if n.startswith("train_split@")} == {
        f"train_split@{d}-{m}" for d in sp.designs for m in sp.members
    }
    assert "compare_split" in names  # every design, one process (one MLflow run each)
    assert "--each-design" in dvc_stages()["compare_split"].cmd
    assert set(sp.designs) == {"same_init", "same_order"}
    assert cfg.seeds[0] not in sp.members  # the first seed's own network is the shared member
    report = {Path(d.fs_path).resolve() for d in dvc_stages()["report"].deps}
    answers = [Layout.of(cfg).split_compare_dir(d).resolve() for d in sp.designs]
    assert all(
        any(r == a or r in a.parents for r in report) for a in answers
    )  # the report reads them


def test_a_split_folder_needs_its_design():
    lay = Layout.of(compose_typed())
    assert lay.output_dir("train_split", 2, "same_order").parts[-2:] == ("same_order", "seed_2")
    assert lay.output_dir("compare_split", design="same_init").name == "same_init"
    with pytest.raises(
        ValueError, match="stage 'compare_split' writes one folder per split design"
    ):
        lay.output_dir("compare_split")


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


def test_every_stage_runs_through_the_project_launcher():
    """`bin/py -m oiplab.stages.<stage>`: no bare `python`, which an unactivated
    `.venv/bin/dvc repro` does not find (exit 127)."""
    for name, stage in dvc_stages().items():
        module = name.split("@")[0]
        assert stage.cmd.startswith(f"bin/py -m oiplab.stages.{module} "), (name, stage.cmd)
    assert os.access(REPO_ROOT / "bin" / "py", os.X_OK)


def _launch(launcher: Path, env: dict[str, str]) -> list[str]:
    """What `launcher` runs: the interpreter's prefix and the file `oiplab` is imported from."""
    code = "import sys, oiplab; print(sys.prefix); print(oiplab.__file__)"
    done = subprocess.run(
        [str(launcher), "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return [str(Path(line).resolve()) for line in done.stdout.split()]


@pytest.mark.parametrize("where", [".", ".dvc/tmp/exps/run/tmp1"], ids=["checkout", "experiment"])
def test_the_launcher_finds_the_projects_venv_unactivated(tmp_path, where):
    """A bare PATH (no activated environment): the nearest `.venv` at or above the checkout (an
    experiment's copy lies under .dvc/tmp/), with the checkout's own src/."""
    venv, project = Path(sys.prefix), tmp_path / "project"
    checkout = project / where
    (checkout / "bin").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "bin" / "py", checkout / "bin" / "py")
    shutil.copytree(SRC / "oiplab", checkout / "src" / "oiplab")
    (project / ".venv").symlink_to(venv)
    bare = {"PATH": "/usr/bin:/bin"}
    prefix, module = _launch(checkout / "bin" / "py", bare)
    assert prefix == str(venv.resolve())
    assert module == str((checkout / "src/oiplab/__init__.py").resolve())
    (project / ".venv").unlink()  # an activated environment is used as such
    prefix, _ = _launch(checkout / "bin" / "py", {**bare, "VIRTUAL_ENV": str(venv)})
    assert prefix == str(venv.resolve())


def test_each_plot_is_declared_once_and_kept_in_git():
    """dvc.yaml's top-level `plots:` draw every plot; no stage declares `plots:` (DVC would draw
    those a second time), and each file they read is a `cache: false` output (in git, so `dvc
    plots diff` finds HEAD's in a fresh clone, which has no DVC cache)."""
    import yaml

    stages = dvc_stages().values()
    assert not [o for s in stages for o in s.outs if o.plot]
    kept = {Path(o.fs_path).resolve() for s in stages for o in s.outs if not o.use_cache}
    plots = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["plots"]
    drawn = [(p, "") for p in plots if isinstance(p, str)]
    drawn += [
        (f, y) for p in plots if isinstance(p, dict) for d in p.values() for f, y in d["y"].items()
    ]
    assert len(drawn) == len(set(drawn)), drawn  # no file and field drawn twice
    assert {(REPO_ROOT / f).resolve() for f, _ in drawn} <= kept


def test_no_cached_output_holds_a_file_git_tracks():
    """DVC refuses to write a cached output that holds a git-tracked file (a `.gitignore` left by
    an older, finer-grained output: `artifacts/compare_split` once had one per design)."""
    outs = [
        Path(o.fs_path).relative_to(REPO_ROOT)
        for s in dvc_stages().values()
        for o in s.outs
        if o.use_cache
    ]
    tracked = subprocess.run(
        ["git", "ls-files", "--", *map(str, outs)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert tracked == []


def test_run_ids_stay_out_of_dvcs_hashes(tmp_path, monkeypatch):
    """A rerun that writes the same files and a new `run.json` keeps the folder's hash (so `dvc
    exp show --only-changed` shows what changed), and `RunRecord.of` reads a folder without one."""
    from dvc.repo import Repo

    from oiplab.io import RunRecord
    from oiplab.layout import RUN

    shutil.copy(REPO_ROOT / ".dvcignore", tmp_path / ".dvcignore")
    write = (
        "import json, pathlib, uuid; p = pathlib.Path('out'); p.mkdir(exist_ok=True); "
        f"(p / 'data.txt').write_text('same'); "
        f"(p / '{RUN}').write_text(json.dumps(dict(run_id=uuid.uuid4().hex)))"
    )
    (tmp_path / "dvc.yaml").write_text(
        f'stages:\n  s:\n    cmd: {sys.executable} -c "{write}"\n    outs: [out]\n'
    )
    monkeypatch.chdir(tmp_path)  # DVC's default target: the dvc.yaml of the working directory
    with Repo.init(str(tmp_path), no_scm=True) as repo:
        hashes = []
        for _ in range(2):
            repo.reproduce(force=True)
            hashes.append((tmp_path / "dvc.lock").read_text())
            assert (tmp_path / "out" / RUN).is_file()  # kept in the workspace for the report
    assert hashes[0] == hashes[1]
    assert RunRecord.of(tmp_path / "out").run_id  # the record beside the folder's files
    (tmp_path / "out" / RUN).unlink()
    assert RunRecord.of(tmp_path / "out") == RunRecord()
