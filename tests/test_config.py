"""Composition of conf/, the generated params.yaml, and validation errors that name the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from oiplab.config import ConfigError, to_typed
from oiplab.params import compose
from oiplab.stages import load_params
from tests.conftest import REPO_ROOT, compose_typed

EXPERIMENTS = sorted(p.stem for p in (REPO_ROOT / "conf" / "experiment").glob("*.yaml"))


def test_params_yaml_is_the_composition_of_conf():
    """params.yaml must be regenerated whenever conf/ changes: `python -m oiplab.params`."""
    on_disk = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    composed = OmegaConf.to_container(compose([], root=REPO_ROOT))
    assert on_disk == composed, "params.yaml is stale: run `python -m oiplab.params`"


def test_default_config_is_the_articles_study():
    cfg = compose_typed()
    assert cfg.data.name == "mnist"
    assert len(cfg.seeds) >= 5
    assert cfg.model.filters == [32, 64, 128] and cfg.model.dense_units == 100


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_validates(experiment):
    cfg = compose_typed(f"experiment={experiment}")
    assert cfg.seeds


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.epochs=-1", "train.epochs"),
        ("seeds=[]", "seeds"),
        ("train.lr_schedule=warp", "train.lr_schedule"),
        ("train.momentum=1.5", "train.momentum"),
        ("data.source=torrent", "data.source"),
        ("train.batch_size=many", "train.batch_size"),
        ("oip.layer=Conv2D_9", "oip.layer"),
        ("oip.maps=[128]", "oip.maps"),
        ("oip.weights=[1.0]", "oip.weights"),
        ("precursor.values=[2.0]", "precursor.values[0]"),
        ("precursor.grid=5", "precursor.grid"),
        ("precursor.halving_rungs=[300,100]", "precursor.halving_rungs"),
        ("precursor.halving_rungs=[100,100]", "precursor.halving_rungs"),
        ("precursor.screen_keep=4", "precursor.screen_keep"),
        ("precursor.rescue_halving_rungs=[300,100]", "precursor.rescue_halving_rungs"),
        ("compare.layers=[Dense_2]", "compare.layers[0]"),
        ("activations.common.comparisons=[[clear_4,nope]]", "activations.common.comparisons"),
        ("activations.groups.0.true_class=12", "activations.groups[0].true_class"),
    ],
)
def test_bad_values_name_the_key(override, key):
    with pytest.raises(ConfigError, match=re.escape(f"'{key}'")):
        compose_typed(override)


def test_unknown_dataset_lists_the_known_ones():
    raw = OmegaConf.to_container(compose([], root=REPO_ROOT))
    raw["data"]["name"] = "cifar"
    with pytest.raises(ConfigError, match="data.name.*'mnist', 'fashion_mnist' or 'synthetic'"):
        to_typed(raw)


def test_unknown_key_is_rejected_with_its_name():
    raw = OmegaConf.to_container(compose([], root=REPO_ROOT))
    raw["train"]["epocs"] = 3
    with pytest.raises(ConfigError, match="epocs"):
        to_typed(raw)


def test_a_missing_key_is_an_error_not_a_default():
    raw = OmegaConf.to_container(compose([], root=REPO_ROOT))
    del raw["train"]["epochs"]
    with pytest.raises(ConfigError, match=r"'train.epochs': missing.*regenerate params.yaml"):
        to_typed(raw)


def test_the_schema_has_no_defaults_of_its_own():
    """conf/ is the only source of values: no field of the schema may carry a default."""
    from oiplab.config import Config, Section

    todo, with_default = [Config], []
    while todo:
        model = todo.pop()
        for name, field in model.model_fields.items():
            if not field.is_required():
                with_default.append(f"{model.__name__}.{name}")
            todo += [
                t
                for t in (field.annotation, *getattr(field.annotation, "__args__", ()))
                if isinstance(t, type) and issubclass(t, Section)
            ]
    assert with_default == []


def test_params_module_validates_before_writing_and_names_bad_overrides(tmp_path):
    import shutil

    from oiplab.params import main, write_params

    shutil.copytree(REPO_ROOT / "conf", tmp_path / "conf")
    with pytest.raises(ConfigError, match="'train.epochs': expected a valid integer, got 'abc'"):
        write_params(["train.epochs=abc"], root=tmp_path)
    assert not (tmp_path / "params.yaml").exists()
    with pytest.raises(ConfigError, match="Could not find 'experiment/smok'.*smoke"):
        write_params(["experiment=smok"], root=tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["seeds=0,1"])
    assert exit_info.value.code == 2


def test_params_drift_from_conf_is_caught(tmp_path, monkeypatch):
    """params.yaml must stay the composition of conf/ with the overrides it records."""
    import shutil

    from oiplab.params import write_params

    shutil.copytree(REPO_ROOT / "conf", tmp_path / "conf")
    path = write_params(["experiment=smoke"], root=tmp_path)
    assert load_params(path).train.epochs == 1  # consistent: accepted
    conf = tmp_path / "conf" / "train" / "default.yaml"
    original = conf.read_text()
    conf.write_text(original.replace("\nbatch_size: 128\n", "\nbatch_size: 100\n"))
    path = write_params([], root=tmp_path)
    conf.write_text(original)
    with pytest.raises(ConfigError, match="differs from conf/ .* at train.batch_size; regenerate"):
        load_params(path)
    monkeypatch.setenv("DVC_EXP_NAME", "exp-1")  # inside `dvc exp run`, DVC composed it itself
    assert load_params(path).train.batch_size == 100


def test_load_params_applies_typed_overrides(tmp_path: Path):
    path = tmp_path / "params.yaml"
    path.write_text(OmegaConf.to_yaml(compose([], root=REPO_ROOT)))
    cfg = load_params(path, ["train.seed=3", "train.l2=0.001"])
    assert cfg.train.seed == 3 and cfg.train.l2 == pytest.approx(0.001)
    with pytest.raises(ConfigError, match="train.sed"):
        load_params(path, ["train.sed=3"])
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "missing.yaml")


def test_each_seed_runs_a_per_seed_stage_for_every_seed_in_order(tmp_path, monkeypatch, capsys):
    from oiplab.stages import stage_main

    monkeypatch.chdir(tmp_path)  # the output folders the preflight checks are created here
    path = tmp_path / "params.yaml"
    path.write_text(OmegaConf.to_yaml(compose([], root=REPO_ROOT)))
    seen = []

    def run(cfg):
        seen.append((cfg.train.seed, cfg.oip.n_starts))
        return {}

    argv = ["--params", str(path), "--each-seed", "seeds=[3,1,4]", "oip.n_starts=2"]
    stage_main(run, argv, per_seed=True)
    assert seen == [(3, 2), (1, 2), (4, 2)]  # every seed, the other overrides kept
    stage_main(run, ["--params", str(path), "train.seed=2"], per_seed=True)
    assert seen[-1] == (2, compose_typed().oip.n_starts)  # without the flag: the seed asked for
    bad = [
        (["--each-seed"], False, "not run per seed"),
        (["--each-seed", "train.seed=1"], True, "set seeds=\\[...\\], not train.seed"),
        (["--each-seed", "seeds=[]"], True, "seeds"),
    ]
    _each_refused(run, path, bad, "per_seed", capsys)
    assert len(seen) == 4  # nothing ran for a refused command


def _each_refused(run, path, bad, flag: str, capsys) -> None:
    """Each of `bad` (extra arguments, the stage's `flag` value, message) exits 2 naming it."""
    import sqlite3

    from mlflow.tracking import MlflowClient

    from oiplab.stages import stage_main

    store = Path.cwd() / "mlflow.db"  # the params file's store (sqlite:///mlflow.db), made
    MlflowClient(f"sqlite:///{store}").search_experiments()

    def failed_runs() -> int:
        with sqlite3.connect(store) as db:
            return db.execute("SELECT COUNT(*) FROM runs WHERE status = 'FAILED'").fetchone()[0]

    for extra, on, message in bad:
        before = failed_runs()
        with pytest.raises(SystemExit) as exit_info:
            stage_main(run, ["--params", str(path), *extra], **{flag: on})
        assert exit_info.value.code == 2
        assert re.search(message, capsys.readouterr().err), extra
        # a flag the stage has no use for is a command-line mistake: no FAILED run; a bad
        # parameter is the stage's failure, recorded as one
        assert failed_runs() == before + ("not run per" not in message), extra


def test_each_design_runs_a_per_design_stage_for_every_design_in_order(
    tmp_path, monkeypatch, capsys
):
    from oiplab.stages import stage_main

    monkeypatch.chdir(tmp_path)
    path = tmp_path / "params.yaml"
    path.write_text(OmegaConf.to_yaml(compose([], root=REPO_ROOT)))
    seen = []

    def run(cfg):
        seen.append((cfg.split.design, cfg.split.members))
        return {}

    argv = ["--params", str(path), "--each-design", "split.designs=[same_order,same_init]"]
    stage_main(run, [*argv, "split.members=[3]"], per_design=True)
    assert seen == [("same_order", [3]), ("same_init", [3])]  # in order, the overrides kept
    bad = [
        (["--each-design"], False, "not run per design"),
        (["--each-design", "split.design=same_init"], True, "not split.design"),
        (["--each-design", "--each-seed"], True, "not run per seed"),
    ]
    _each_refused(run, path, bad, "per_design", capsys)
    assert len(seen) == 2  # nothing ran for a refused command


@pytest.mark.parametrize(
    ("launcher", "target"),
    [
        ("slurm", "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"),
        ("local", "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"),
        ("joblib", "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"),
    ],
)
def test_launcher_configs_compose(launcher, target):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(str(REPO_ROOT / "conf"), version_base="1.3"):
        cfg = hydra_compose(
            "config", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True
        )
    assert cfg.hydra.launcher._target_ == target
