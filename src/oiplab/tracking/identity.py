"""Who a run is: the code (git commit), the settings (config digest), the pipeline execution it
belongs to, and the tags built from these, one set shared by a stage's run and its parent."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from oiplab.config import Config
from oiplab.layout import Stage

TAG_PREFIX = "oiplab."
GIT_COMMIT = "mlflow.source.git.commit"  # MLflow's own tag (the run page's "Git commit")
# Files DVC or the pipeline itself rewrites during `dvc repro`: they do not make a checkout dirty.
PIPELINE_WRITTEN = ("dvc.lock", "*.gitignore", "metrics")


def git_commit(root: Path | None = None) -> str:
    """HEAD commit, with `-dirty` when tracked files other than the pipeline's own differ;
    `unknown` outside a git checkout. Asked of git once per process and folder."""
    return _git_commit(str(root or Path.cwd()))


@functools.cache
def _git_commit(cwd: str) -> str:
    exclude = [f":(exclude,glob)**/{p}" if "*" in p else f":(exclude){p}" for p in PIPELINE_WRITTEN]

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        head = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", *exclude)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def config_digest(cfg: Config) -> str:
    """A short digest of the study's settings, the same for every stage and seed of one pipeline."""
    tree = cfg.model_dump()
    tree["train"].pop("seed", None)
    tree.pop("tracking", None)
    return hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()[:12]


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested dict as one level, its keys joined with dots."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def execution() -> tuple[str, str] | None:
    """(key, name) of the pipeline execution this process belongs to, or None for a stage run
    on its own. A Hydra sweep sets OIPLAB_EXECUTION; under DVC the key is the `dvc` process
    (plus the experiment's name: a queue worker runs several experiments)."""
    if os.environ.get("OIPLAB_EXECUTION"):
        key = os.environ["OIPLAB_EXECUTION"]
        return key, key.split(":", 1)[-1]
    import psutil  # installed with DVC

    exp = os.environ.get("DVC_EXP_NAME", "")
    try:
        for proc in psutil.Process().parents():
            cmd = proc.cmdline()
            if any(Path(c).name == "dvc" for c in cmd[:2]) or cmd[1:3] == ["-m", "dvc"]:
                return f"dvc:{proc.pid}:{proc.create_time():.0f}:{exp}", exp or "dvc repro"
    except psutil.Error:
        return None
    return None


def prefixed(tags: dict[str, str]) -> dict[str, str]:
    return {TAG_PREFIX + k: v for k, v in tags.items()}


def shared_tags(cfg: Config) -> dict[str, str]:
    """The tags a stage's run shares with its execution's parent run: what was studied, with
    which code and settings. The commit is MLflow's own source tag (the UI shows it; MLflow sets
    it on a stage's run too, but not on a parent run made by the client), and
    `oiplab.git_dirty` is set only when tracked files differed from it."""
    commit = git_commit()
    tags = prefixed(
        {"study": cfg.study, "dataset": cfg.data.name, "config_digest": config_digest(cfg)}
    )
    if commit != "unknown":
        tags[GIT_COMMIT] = commit.removesuffix("-dirty")
        if commit.endswith("-dirty"):
            tags[TAG_PREFIX + "git_dirty"] = "true"
    return tags


SPLIT_STAGES = (Stage.TRAIN_SPLIT, Stage.COMPARE_SPLIT)  # a run of one seed-split design


def run_name(cfg: Config, stage: str, seed: int | None) -> str:
    """The run's name in the MLflow UI: its stage, the design of a seed-split stage, its seed."""
    name = f"{stage}-{cfg.split.design}" if stage in SPLIT_STAGES else stage
    return name if seed is None else f"{name}-seed{seed}"


def run_tags(cfg: Config, stage: str, seed: int | None) -> dict[str, str]:
    """The tags of a stage's run: its stage, seed, seed-split design and DVC experiment (where
    it has them), and the tags it shares with its parent. No tag is ever empty."""
    tags = prefixed({"stage": stage}) | shared_tags(cfg)
    if stage in SPLIT_STAGES:
        tags[TAG_PREFIX + "design"] = cfg.split.design
    if os.environ.get("DVC_EXP_NAME"):
        tags[TAG_PREFIX + "dvc_exp"] = os.environ["DVC_EXP_NAME"]
    if seed is not None:
        tags[TAG_PREFIX + "seed"] = str(seed)
    return tags
