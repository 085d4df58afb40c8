"""The real thing: `dvc repro` of the smoke experiment in a project copy, logging to a real
`mlflow server`, checked through DVC (status, metrics, plots, exp show, a remote), the server's
REST API, Hydra sweeps, DVC's queue, and the report page (in headless Chromium when installed)."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.browser import FLAGS as CHROMIUM_FLAGS
from tests.browser import Browser
from tests.conftest import MlflowServer, copy_project

pytestmark = pytest.mark.integration

STAGES = ("prepare", "select_images", "compare", "alignment", "oip_compare", "report")
# One MLflow run per seed each; dvc.yaml has one `train@<seed>` stage per seed, and one stage
# each for the others (every seed in one process, `--each-seed`).
PER_SEED_STAGES = ("train", "activations", "oip", "precursor")


def _run(cmd: list[str], cwd: Path, env: dict | None = None, ok: bool = True):
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, **(env or {})},
    )
    if ok:
        assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _commit(project: Path, message: str) -> None:
    _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", message], project)


def _venv_env(**extra: str) -> dict:
    bin_dir = str(Path(sys.executable).parent)
    return {"PATH": bin_dir + os.pathsep + os.environ["PATH"], "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """A project copy on which `dvc repro` of the smoke experiment ran against an MLflow server."""
    root = tmp_path_factory.mktemp("smoke")
    project = copy_project(root / "project")
    server = MlflowServer(root)
    try:
        server.wait()
        env = _venv_env(MLFLOW_TRACKING_URI=server.uri)
        _run([sys.executable, "-m", "oiplab.params", "experiment=smoke"], project)
        _commit(project, "smoke")
        started = time.time()
        repro = _run(["dvc", "repro"], project, env)
        params = yaml.safe_load((project / "params.yaml").read_text())
        yield {
            "project": project,
            "env": env,
            "params": params,
            "server": server,
            "log": repro.stdout,
            "seconds": time.time() - started,
        }
    finally:
        server.stop()


def search_runs(server: MlflowServer, filter_string: str = "") -> list[dict]:
    """Runs of experiment `oiplab`, through the server's REST API."""
    exp = server.api("/api/2.0/mlflow/experiments/get-by-name?experiment_name=oiplab")
    found = server.api(
        "/api/2.0/mlflow/runs/search",
        {
            "experiment_ids": [exp["experiment"]["experiment_id"]],
            "filter": filter_string,
            "max_results": 1000,
        },
    )
    return [
        {
            "run_id": r["info"]["run_id"],
            "status": r["info"]["status"],
            "start": int(r["info"]["start_time"]),
            "end": int(r["info"].get("end_time", 0)),
            "tags": {t["key"]: t["value"] for t in r["data"].get("tags", [])},
            "metrics": {m["key"]: m["value"] for m in r["data"].get("metrics", [])},
            "inputs": r.get("inputs", {}),
        }
        for r in found.get("runs", [])
    ]


def test_dvc_repro_produces_every_stage_output(smoke):
    project, env, params = smoke["project"], smoke["env"], smoke["params"]
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    per_seed = {f"train@{s}" for s in params["seeds"]}
    sp = params["split"]
    split = {f"train_split@{d}-{m}" for d in sp["designs"] for m in sp["members"]}
    split |= {"compare_split"}  # every design in one process (--each-design)
    assert set(lock["stages"]) == set(STAGES) | set(PER_SEED_STAGES[1:]) | per_seed | split
    for seed in params["seeds"]:
        assert (project / "models" / f"seed_{seed}" / "model.keras").is_file()
        metrics = json.loads((project / "models" / f"seed_{seed}" / "metrics.json").read_text())
        assert metrics["seed"] == seed
        census = json.loads((project / f"artifacts/precursor/seed_{seed}/metrics.json").read_text())
        assert sum(census[k] for k in ("from_noise", "from_precursor", "from_rescue")) <= 128
    status = _run(["dvc", "status"], project, env)
    assert "up to date" in status.stdout  # nothing left to re-run
    shown = json.loads(_run(["dvc", "metrics", "show", "--json"], project, env).stdout)
    headline = next(iter(shown.values()))["data"]["metrics/headline.json"]["data"]
    assert 0 <= headline["accuracy"]["min"] <= headline["accuracy"]["mean"] <= 1
    assert 0 < headline["Conv2D_3"]["same_index_p"] <= 1


def test_dvc_plots_show_renders_curves_answer_and_figures(smoke, tmp_path):
    project, env = smoke["project"], smoke["env"]
    plots = json.loads(_run(["dvc", "plots", "show", "--json"], project, env).stdout)["data"]
    curves = plots["test accuracy per epoch, every seed"][0]["content"]["data"]["values"]
    assert {r["seed"] for r in curves} == {str(s) for s in smoke["params"]["seeds"]}
    answer = plots["partnered maps per layer, trained vs untrained (95% CI)"][0]
    assert len(answer["content"]["data"]["values"]) == len(smoke["params"]["compare"]["layers"])
    images = [k for k, v in plots.items() if v and v[0]["type"] == "image"]
    assert any("interpolation" in k for k in images) and any("alignment_" in k for k in images)
    vega = [k for k, v in plots.items() if v and v[0]["type"] == "vega"]
    assert len(vega) == 3, vega  # each once: no file drawn again with DVC's default template
    _run(["dvc", "plots", "show", "-o", str(tmp_path / "plots")], project, env)
    assert (tmp_path / "plots" / "index.html").stat().st_size > 10_000


def test_dvc_exp_show_is_a_readable_table(smoke):
    """Headline metrics only: timings and per-seed details live in MLflow and the artifacts."""
    project, env = smoke["project"], smoke["env"]
    table = _run(["dvc", "exp", "show", "--csv", "--no-pager"], project, env).stdout
    header = next(csv.reader(io.StringIO(table)))
    metrics = [
        c for c in header if c.startswith(("accuracy.", "Conv2D", "Max_Pool", "Dense", "loss"))
    ]
    assert 0 < len(metrics) <= 30, metrics
    assert not any("seconds" in c for c in header)


def test_one_parent_run_holds_every_stage_run_with_true_durations(smoke):
    server, params = smoke["server"], smoke["params"]
    runs = search_runs(server)
    parents = [r for r in runs if r["tags"].get("oiplab.stage") == "pipeline"]
    assert len(parents) == 1  # one `dvc repro`, one parent
    parent = parents[0]
    children = [r for r in runs if r["tags"].get("mlflow.parentRunId") == parent["run_id"]]
    assert len(children) == len(runs) - 1
    stages = sorted((r["tags"]["oiplab.stage"], r["tags"].get("oiplab.seed", "")) for r in children)
    seeds = [str(s) for s in params["seeds"]]
    sp = params["split"]
    split = [("train_split", str(m)) for _ in sp["designs"] for m in sp["members"]]
    split += [("compare_split", "")] * len(sp["designs"])
    assert stages == sorted(
        [(s, "") for s in STAGES] + [(s, seed) for s in PER_SEED_STAGES for seed in seeds] + split
    )
    assert all(r["status"] == "FINISHED" for r in runs)
    assert parent["start"] <= min(r["start"] for r in children)
    assert parent["end"] >= max(r["end"] for r in children)
    train = next(r for r in children if r["tags"]["oiplab.stage"] == "train")
    assert train["end"] - train["start"] > 1000  # opened before the work, not after it (ms)
    commit = _run(["git", "rev-parse", "HEAD"], smoke["project"]).stdout.strip()
    assert {r["tags"]["mlflow.source.git.commit"] for r in runs} == {commit}
    assert not any("oiplab.git_dirty" in r["tags"] for r in runs)  # dvc.lock is no "dirty"
    history = server.api(
        f"/api/2.0/mlflow/metrics/get-history?run_id={train['run_id']}&metric_key=val_accuracy"
    )
    assert [m["step"] for m in history["metrics"]] == list(range(1, params["train"]["epochs"] + 1))
    used = [d["dataset"]["name"] for d in train["inputs"]["dataset_inputs"]]
    assert sorted(used) == ["synthetic-test", "synthetic-train"]
    compare = next(r for r in children if r["tags"]["oiplab.stage"] == "compare")
    assert "\n## The answers\n\n### Same filters?" in compare["tags"]["mlflow.note.content"]
    note = parent["tags"]["mlflow.note.content"]  # the report's first screen, set by the report
    assert note.startswith("**Same filters?**") and "### What decides the order?" in note
    assert "Not in these results" not in note  # the seed-split design ran in this execution
    assert set(parent["metrics"]) >= {"accuracy.mean", "Conv2D_1.same_index_p"}


def test_report_page_has_every_section_and_links_the_producing_runs(smoke):
    html = (smoke["project"] / "reports" / "index.html").read_text()
    anchors = ("answers", "setup", "training", "compare", "decides", "over_training")
    for anchor in ("activations", "oip", "silent", *anchors):
        assert f'<section id="{anchor}">' in html, anchor
    assert "figure missing" not in html
    assert len(re.findall(r'<img [^>]*src="data:image/png;base64,', html)) >= 20
    assert 'src="http' not in html  # nothing to fetch: the page works offline
    run_json = json.loads((smoke["project"] / "models/seed_0/run.json").read_text())
    assert f"{smoke['server'].uri}/#/experiments/{run_json['experiment_id']}/runs/" in html
    assert run_json["run_id"] in html


def test_oiplab_runs_lists_the_execution(smoke):
    out = _run(["oiplab", "runs"], smoke["project"], smoke["env"]).stdout
    assert "smoke: dvc repro" in out and "[FINISHED]" in out
    split = 2 * 2 + 2  # train_split: 2 designs x 2 members; compare_split: 2 designs
    assert len([ln for ln in out.splitlines() if " FINISHED " in ln]) == 6 + 4 * 2 + split
    assert re.search(r"^prepare +FINISHED +[\d.]+  n_train = [\d,]+$", out, re.M), out
    assert "nan" not in out


def test_dvc_push_then_pull_into_a_fresh_clone_leaves_nothing_to_run(smoke, tmp_path):
    project, env = smoke["project"], smoke["env"]
    _run(["dvc", "remote", "add", "-d", "store", str(tmp_path / "remote")], project, env)
    _run(["git", "add", "-A"], project)
    _commit(project, "results")
    _run(["dvc", "push"], project, env)
    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    _run(["dvc", "pull"], clone, env)
    assert (clone / "models" / "seed_0" / "model.keras").is_file()
    status = _run(["dvc", "status"], clone, env)
    assert "up to date" in status.stdout, status.stdout
    repro = _run(["dvc", "repro"], clone, env)
    assert "Running stage" not in repro.stdout, repro.stdout


def test_a_two_job_sweep_over_one_seed_keeps_both_and_leaves_models_alone(smoke):
    """Hydra jobs write under their own sweep folder: two learning rates, one seed, two results."""
    project, env = smoke["project"], smoke["env"]
    before = {p: p.read_bytes() for p in (project / "models").rglob("*") if p.is_file()}
    _run(
        ["oiplab", "run", "train", "-m", "experiment=smoke", "train.seed=0",
         "train.learning_rate=0.01,0.02", "hydra.sweep.dir=multirun/lr"],
        project, env,
    )  # fmt: skip
    jobs = sorted((project / "multirun" / "lr").glob("*/models/seed_0/metrics.json"))
    assert len(jobs) == 2
    assert len({p.parent.joinpath("model.keras").read_bytes() for p in jobs}) == 2
    after = {p: p.read_bytes() for p in (project / "models").rglob("*") if p.is_file()}
    assert after == before
    runs = search_runs(smoke["server"], "tags.`oiplab.stage` = 'train'")
    parents = {r["tags"]["mlflow.parentRunId"] for r in runs if r["tags"].get("oiplab.seed") == "0"}
    assert len(parents) == 2  # the pipeline's parent, and the sweep's own for both jobs


@pytest.mark.slow
def test_four_parallel_jobs_on_the_embedded_store_lose_nothing(smoke):
    """joblib launcher, 4 processes, all logging to one sqlite:///mlflow.db."""
    project = smoke["project"]
    env = {**smoke["env"], "MLFLOW_TRACKING_URI": ""}  # empty: the config's sqlite store
    seeds = ["10", "11", "12", "13"]
    _run(
        [
            "oiplab", "run", "train", "-m", "experiment=smoke", f"train.seed={','.join(seeds)}",
            "hydra/launcher=joblib", "hydra.launcher.n_jobs=4", "hydra.sweep.dir=multirun/par",
            "hydra.sweep.subdir=.",
        ],
        project,
        env,
    )  # fmt: skip
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{project}/mlflow.db")
    exp = client.get_experiment_by_name("oiplab").experiment_id
    runs = client.search_runs([exp], filter_string="tags.`oiplab.stage` = 'train'")
    assert sorted(r.data.tags["oiplab.seed"] for r in runs) == seeds
    assert len({r.data.tags["mlflow.parentRunId"] for r in runs}) == 1  # one sweep, one parent
    for r in runs:
        assert r.info.status == "FINISHED"
        assert "test_accuracy" in r.data.metrics
        assert len(client.get_metric_history(r.info.run_id, "val_accuracy")) == 1
        assert (
            project / "multirun" / "par" / "models" / f"seed_{r.data.tags['oiplab.seed']}"
        ).is_dir()


@pytest.mark.slow
def test_submitit_sweep_then_compare_and_runs_without_dvc(smoke):
    project, env = smoke["project"], smoke["env"]
    common = ["experiment=smoke", "seeds=[20,21]"]
    _run(
        ["oiplab", "run", "train", "-m", *common, "train.seed=20,21", "hydra/launcher=local",
         "hydra.sweep.dir=multirun/sub", "hydra.sweep.subdir=."],
        project, env,
    )  # fmt: skip
    logs = list((project / "multirun" / "sub").rglob("*_log.out"))
    assert len(logs) >= 2  # each job ran as its own submitit process
    _run(["oiplab", "run", "compare", *common, "hydra.run.dir=multirun/sub"], project, env)
    assert (project / "multirun/sub/artifacts/compare/answer_Conv2D_3.png").is_file()
    out = _run(["oiplab", "runs", "--study", "smoke"], project, env).stdout
    assert "FINISHED" in out


@pytest.mark.slow
def test_two_queued_experiments_log_into_the_project_store(smoke, tmp_path):
    """`dvc exp run --queue` runs in a temporary copy: its runs must reach the project's store,
    and it must run the code queued with it, not the code edited in the workspace afterwards."""
    project = copy_project(tmp_path / "queue")
    env = _venv_env(MLFLOW_TRACKING_URI="")
    _run([sys.executable, "-m", "oiplab.params", "experiment=smoke"], project, env)
    _commit(project, "smoke")
    for lr in ("0.02", "0.03"):
        _run(["dvc", "exp", "run", "--queue", "-S", "experiment=smoke",
              "-S", f"train.learning_rate={lr}", "compare"], project, env)  # fmt: skip
    stage = project / "src/oiplab/stages/train.py"
    stage.write_text(
        stage.read_text().replace("def run(", "raise SystemExit('edited')\n\ndef run(")
    )
    _run(["dvc", "queue", "start", "-j", "2"], project, env)
    deadline = time.time() + 1500
    while time.time() < deadline:
        status = _run(["dvc", "queue", "status"], project, env).stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(10)
    assert status.count("Success") == 2, status
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{project}/mlflow.db")
    exp = client.get_experiment_by_name("oiplab").experiment_id
    runs = client.search_runs([exp], filter_string="tags.`oiplab.stage` = 'compare'")
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    assert len({r.data.tags["mlflow.parentRunId"] for r in runs}) == 2  # one parent each
    assert not (project / "models").exists()  # the workspace's outputs were not touched


@pytest.mark.slow
def test_an_experiment_that_drops_the_recorded_overrides_is_refused_and_recorded(tmp_path):
    """params.yaml generated with `experiment=smoke`: `dvc exp run -S experiment=smoke ...`
    runs the smoke study; `dvc exp run -S train.epochs=1` would run the default MNIST study (DVC
    recomposes conf/ with its -S overrides only), so the stage refuses it in one line naming the
    way out, and the failure is a FAILED run in the project's store."""
    project = copy_project(tmp_path / "exp")
    env = _venv_env(MLFLOW_TRACKING_URI="")
    _run([sys.executable, "-m", "oiplab.params", "experiment=smoke"], project, env)
    _commit(project, "smoke")
    _run(
        ["dvc", "exp", "run", "--temp", "-S", "experiment=smoke", "-S", "train.epochs=1",
         "prepare"],
        project, env,
    )  # fmt: skip
    dropped = _run(
        ["dvc", "exp", "run", "--temp", "-S", "train.epochs=1", "prepare"], project, env, ok=False
    )
    assert dropped.returncode != 0
    assert "give them to the experiment: `dvc exp run -S experiment=smoke ...`" in (
        dropped.stdout + dropped.stderr
    ), dropped.stderr[-2000:]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{project}/mlflow.db")
    exp = client.get_experiment_by_name("oiplab").experiment_id
    runs = client.search_runs([exp], "tags.`oiplab.stage` = 'prepare'")
    assert sorted((r.info.status, r.data.tags["oiplab.dataset"]) for r in runs) == [
        ("FAILED", "mnist"),
        ("FINISHED", "synthetic"),
    ]
    (failed,) = [r for r in runs if r.info.status == "FAILED"]
    assert "dropping the overrides" in failed.data.tags["oiplab.error"]
    assert client.get_run(failed.data.tags["mlflow.parentRunId"]).info.status == "FAILED"


@pytest.mark.slow
def test_report_renders_in_headless_chromium(smoke, tmp_path):
    """Every image of the page decodes in a real browser (Debian packages chromium)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not installed: apt-get install chromium")
    page = (smoke["project"] / "reports" / "index.html").as_uri()
    flags = CHROMIUM_FLAGS + [
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=15000",
    ]
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", page], capture_output=True, text=True, timeout=180
    ).stdout
    loaded = re.search(r'data-images-loaded="(\d+)/(\d+)"', dom)
    assert loaded, "the page's load check did not run"
    ok, total = map(int, loaded.groups())
    assert total >= 20 and ok == total, f"{ok} of {total} images loaded"


@pytest.mark.slow
def test_the_fashion_experiment_runs_end_to_end(tmp_path):
    """`experiment=fashion` on the real Fashion-MNIST from the Debian package (shortened)."""
    from oiplab.data.registry import FASHION_DEBIAN_DIR

    if not Path(FASHION_DEBIAN_DIR).is_dir():
        pytest.skip(f"{FASHION_DEBIAN_DIR} missing: apt-get install dataset-fashion-mnist")
    project = copy_project(tmp_path / "fashion")
    env = _venv_env(MLFLOW_TRACKING_URI="")
    short = [
        "experiment=fashion", "seeds=[0,1]", "train.epochs=1", "oip.n_starts=2",
        "oip.n_steps=30", "precursor.grid=2", "precursor.values=[0.2,0.8]",
        "precursor.full_steps=30", "compare.probe_images=200", "compare.eval_images=200",
        "compare.null_networks=3", "alignment.probe_images=100", "train.trajectory_every=200",
    ]  # fmt: skip
    _run([sys.executable, "-m", "oiplab.params", *short], project, env)
    _commit(project, "fashion")
    _run(["dvc", "repro"], project, env)
    meta = json.loads((project / "data/prepared/meta.json").read_text())
    assert meta["dataset"] == "fashion_mnist" and meta["n_train"] == 60_000
    html = (project / "reports/index.html").read_text()
    assert "fashion_mnist" in html and "figure missing" not in html
    headline = json.loads((project / "metrics/headline.json").read_text())
    assert headline["accuracy"]["min"] > 0.7


@pytest.mark.slow
def test_the_mlflow_ui_shows_the_run_tree_a_metric_chart_and_an_image(smoke, tmp_path):
    """The real MLflow UI, rendered by headless Chromium, on the smoke pipeline's server."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not installed: apt-get install chromium")
    server = smoke["server"]
    runs = search_runs(server)
    parent = next(r for r in runs if r["tags"]["oiplab.stage"] == "pipeline")
    train = next(r for r in runs if r["tags"]["oiplab.stage"] == "train")
    exp = server.api("/api/2.0/mlflow/experiments/get-by-name?experiment_name=oiplab")
    exp_id = exp["experiment"]["experiment_id"]

    base = f"{server.uri}/#/experiments/{exp_id}"
    # A drawn chart: a Plotly plot whose legend names the run and the metric.
    legend = f"{train['tags']['mlflow.runName']} (val_accuracy)"
    # The window is tall because the UI renders only the metric charts in view.
    with Browser(chromium, tmp_path / "profile", window=(1400, 2400)) as browser:
        name = parent["tags"]["mlflow.runName"]
        table = browser.show(f"{base}/runs", lambda html: name in html)
        assert name in table.html, f"the runs table never showed {name!r}: {table.text[:1500]}"
        run_page = browser.show(
            f"{base}/runs/{train['run_id']}/model-metrics",
            lambda html: legend in html and "js-plotly-plot" in html,
        )
        assert legend in run_page.html and "js-plotly-plot" in run_page.html, (
            f"no val_accuracy chart after {run_page.seconds:.0f} s: {run_page.text[:1500]}"
        )
        artifact = browser.show(
            f"{base}/runs/{train['run_id']}/artifacts/outputs/confusion.png",
            lambda html: "confusion.png" in html and "<img" in html,
        )
        assert "confusion.png" in artifact.html and "<img" in artifact.html, artifact.text[:1500]
