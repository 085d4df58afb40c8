"""Faults and bad input, through the real command line.

The tour: a finished smoke study, copied once per case, then broken in one way (a config mistake,
a damaged or missing file, a locked or corrupt store, an output path that cannot be written);
every case must end with a non-zero exit, one line naming the key or file, no traceback, and the
study's files byte-identical. Then the races and kills: two processes swapping one folder, a
stage stopped by SIGTERM, a training killed and resumed, a tracking server that dies mid-stage.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from oiplab.params import compose
from tests.conftest import REPO_ROOT, MlflowServer

SMOKE = [
    "experiment=smoke",
    "data.n_train=200",
    "data.n_test=160",
    "train.epochs=3",
    "oip.maps=[0,1,2,3]",
]


def _params(folder: Path, *overrides: str, tracking: bool = True) -> Path:
    cfg = compose([*SMOKE, f"tracking.enabled={str(tracking).lower()}", *overrides], REPO_ROOT)
    (folder / "params.yaml").write_text(OmegaConf.to_yaml(cfg))
    return folder / "params.yaml"


def _cli(cwd: Path, *args: str, env: dict | None = None, wait: bool = True, module=None):
    cmd = [sys.executable, "-m", module or f"oiplab.stages.{args[0]}"]
    cmd += list(args if module else ["--params", "params.yaml", *args[1:]])
    if (env or {}).pop(UNPRIVILEGED, None) and os.geteuid() == 0:
        cmd = ["unshare", "--user", *cmd]  # root, as a user of its own: file modes apply
    # the children's store is their own folder's unless a case sets one
    full_env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    full_env |= {"TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    if not wait:
        return subprocess.Popen(
            cmd, cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    return subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=600)


def _hashes(folder: Path) -> dict[str, str]:
    """Every stored file of the study (the MLflow store aside: a failed run is recorded there)."""
    skip = ("mlflow.db", "mlruns")
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not str(p.relative_to(folder)).startswith(skip)
    }


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """A finished smoke study (prepare, train, oip, precursor, compare for seeds 0 and 1), run
    in-process from its params.yaml (what the command line reads too)."""
    from oiplab.stages import compare, load_params, oip, precursor, prepare, select_images, train

    folder = tmp_path_factory.mktemp("study")
    _params(folder)
    old = Path.cwd()
    os.chdir(folder)
    try:
        cfg = load_params(folder / "params.yaml")
        prepare.run(cfg)
        for seed in (0, 1):
            cfg.train.seed = seed
            for stage in (train, oip, precursor):
                stage.run(cfg)
        select_images.run(cfg)
        compare.run(cfg)
    finally:
        os.chdir(old)
    return folder


def _truncate(path: Path, keep: int = 200) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def _npz_without(path: Path, key: str) -> None:
    with np.load(path) as arrays:
        kept = {k: arrays[k] for k in arrays.files if k != key}
    with open(path, "wb") as fh:
        np.savez(fh, **kept)


def _edit_params(folder: Path, edit) -> None:
    path = folder / "params.yaml"
    raw = OmegaConf.to_container(OmegaConf.load(path))
    edit(raw)
    path.write_text(OmegaConf.to_yaml(raw))


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _drift(folder: Path) -> None:
    shutil.copytree(REPO_ROOT / "conf", folder / "conf")
    subprocess.run(
        [sys.executable, "-m", "oiplab.params", *SMOKE], cwd=folder, check=True, capture_output=True
    )
    conf = folder / "conf/train/default.yaml"
    conf.write_text(conf.read_text().replace("\nmomentum: 0.9\n", "\nmomentum: 0.8\n"))


def _lock_store(folder: Path):
    """Hold an exclusive lock on the study's sqlite store (released when the case ends)."""
    connection = sqlite3.connect(folder / "mlflow.db", timeout=1, isolation_level=None)
    connection.execute("BEGIN EXCLUSIVE")
    return connection


def _with_conf(folder: Path) -> None:
    shutil.copytree(REPO_ROOT / "conf", folder / "conf")


def _experiment_dropped_overrides(folder: Path) -> dict:
    """What a queued `dvc exp run -S train.epochs=1` made of a workspace whose params.yaml was
    generated with `experiment=smoke`: DVC recomposed conf/ (the default study) in its temporary
    copy; the workspace (DVC_ROOT) still records the smoke overrides."""
    shutil.copytree(REPO_ROOT / "conf", folder / "conf")
    workspace = folder.parent / f"{folder.name}-workspace"
    shutil.copytree(REPO_ROOT / "conf", workspace / "conf")
    subprocess.run(
        [sys.executable, "-m", "oiplab.params", "experiment=smoke"],
        cwd=workspace,
        check=True,
        capture_output=True,
    )
    (folder / "params.yaml").write_text(OmegaConf.to_yaml(compose(["train.epochs=1"], folder)))
    return {"DVC_EXP_NAME": "queued-exp", "DVC_ROOT": str(workspace)}


def _damage_weights(path: Path, layer: str, which: int, count: int, value: float) -> None:
    """Set the first `count` entries of `layer`'s kernel (`which` 0) or bias (1) to `value`."""
    import keras

    model = keras.saving.load_model(path, compile=False)
    weights = model.get_layer(layer).get_weights()
    weights[which].reshape(-1)[:count] = value
    model.get_layer(layer).set_weights(weights)
    model.save(path)


def _wider_model(folder: Path) -> None:
    """Seed 0's model replaced by one with twice Conv2D_3's maps, under the same layer names."""
    from oiplab.config import to_typed
    from oiplab.model import build_model

    cfg = to_typed(compose(SMOKE, REPO_ROOT)).model
    wider = cfg.model_copy(update={"filters": [*cfg.filters[:2], 2 * cfg.filters[2]]})
    build_model(wider).save(folder / "models/seed_0/model.keras")


def _npz_with_nan(path: Path, key: str) -> None:
    with np.load(path) as arrays:
        kept = {k: arrays[k] for k in arrays.files}
    kept[key] = kept[key].copy()
    kept[key].reshape(-1)[0] = np.nan
    with open(path, "wb") as fh:
        np.savez(fh, **kept)


def _null_matched_r(path: Path) -> None:
    """compare.json with its first matched r of every layer null (a NaN, as `to_json` writes it)."""

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "matched_r" and isinstance(value, list) and value:
                    value[0] = None
                else:
                    walk(value)

    data = json.loads(path.read_text())
    walk(data)
    path.write_text(json.dumps(data))


def _object_array_in_trajectory(path: Path) -> None:
    with np.load(path) as arrays:
        kept = {k: arrays[k] for k in arrays.files}
    ragged = np.empty(2, dtype=object)
    ragged[:] = [np.zeros(3), np.zeros(4)]
    kept["w1"] = ragged
    with open(path, "wb") as fh:
        np.savez(fh, **kept)  # pickled: np.load refuses it unless allow_pickle


SECRET = "Pa55-w0rd-in-a-uri"  # no message of any case may show it
UNPRIVILEGED = "unprivileged"  # a case whose command must not run as root (see `_cli`)
# Root writes into read-only files and folders; inside a user namespace of its own (`unshare
# --user`, no uid mapped) it is an ordinary owner, and the modes apply.
DROPS_ROOT = os.geteuid() != 0 or (
    shutil.which("unshare") is not None
    and subprocess.run(["unshare", "--user", "true"], capture_output=True).returncode == 0
)


def _read_only_artifacts(folder: Path) -> str:
    """The copy's own artifact folder, read-only (a copied store still names the original's)."""
    db = sqlite3.connect(folder / "mlflow.db")
    with db:
        db.execute("UPDATE experiments SET artifact_location = ?", ((folder / "mlruns").as_uri(),))
    db.close()
    return _read_only("mlruns")(folder)


def _read_only(*parts: str):
    def make(folder: Path) -> str:
        for path in [folder.joinpath(*parts), *folder.joinpath(*parts).rglob("*")]:
            path.chmod(0o555 if path.is_dir() else 0o444)
        return UNPRIVILEGED

    return make


# (id, how to break the copy, the command, the text the one-line error must contain)
CASES = [
    ("epochs negative", None, ("train", "train.epochs=-1"), "'train.epochs'"),
    ("epochs not a number", None, ("train", "train.epochs=abc"), "'train.epochs'"),
    ("unknown layer", None, ("oip", "oip.layer=Conv2D_9"), "'oip.layer'"),
    ("map out of range", None, ("oip", "oip.maps=[500]"), "'oip.maps'"),
    ("unknown key", None, ("train", "train.epocs=3"), "train.epocs"),
    ("override without =", None, ("train", "train.seed"), "key=value"),
    ("schedule name", None, ("train", "train.lr_schedule=warp"), "'train.lr_schedule'"),
    ("grey level above 1", None, ("precursor", "precursor.values=[2.0]"), "'precursor.values[0]'"),
    ("weights per grid", None, ("oip", "oip.weights=[1.0]"), "'oip.weights'"),
    ("null seed among seeds", None, ("compare", "compare.null_seed=0"), "'compare.null_seed'"),
    ("more images than data", None, ("compare", "compare.eval_images=5000"), "compare.eval_images"),
    (
        "key deleted from params",
        lambda f: _edit_params(f, lambda r: r["train"].pop("epochs")),
        ("train",),
        "'train.epochs': missing",
    ),
    ("no seeds", lambda f: _edit_params(f, lambda r: r.update(seeds=[])), ("prepare",), "'seeds'"),
    (
        "one seed fails at the first stage",
        lambda f: _edit_params(f, lambda r: r.update(seeds=[0])),
        ("prepare",),
        "at least two seeds",
    ),
    (
        "unknown data set",
        lambda f: _edit_params(f, lambda r: r["data"].update(name="cifar")),
        ("prepare",),
        "'data.name'",
    ),
    (
        "params not YAML",
        lambda f: (f / "params.yaml").write_text("seeds: [0\n"),
        ("train",),
        "YAML",
    ),
    ("params missing", lambda f: (f / "params.yaml").unlink(), ("train",), "params.yaml"),
    ("params a list", lambda f: (f / "params.yaml").write_text("- 1\n"), ("train",), "mapping"),
    ("params drifted from conf", _drift, ("train",), "differs from conf/"),
    (
        "meta.json broken",
        lambda f: (f / "data/prepared/meta.json").write_text("{broken"),
        ("train",),
        "meta.json",
    ),
    (
        "train.npz truncated",
        lambda f: _truncate(f / "data/prepared/train.npz"),
        ("train", "train.seed=5"),
        "train.npz",
    ),
    (
        "test.npz without labels",
        lambda f: _npz_without(f / "data/prepared/test.npz", "labels"),
        ("compare",),
        "test.npz",
    ),
    (
        "model.keras truncated",
        lambda f: _truncate(f / "models/seed_0/model.keras", 5000),
        ("oip", "train.seed=0"),
        "model.keras: exists but is not a readable Keras model",
    ),
    (
        "model.keras missing",
        lambda f: (f / "models/seed_1/model.keras").unlink(),
        ("compare",),
        "model.keras: model file not found",
    ),
    (
        "oip.npz truncated",
        lambda f: _truncate(f / "artifacts/oip/seed_0/oip.npz"),
        ("precursor", "train.seed=0"),
        "oip.npz: OIP survey is unreadable",
    ),
    (
        "oip.npz without losses",
        lambda f: _npz_without(f / "artifacts/oip/seed_0/oip.npz", "loss"),
        ("precursor", "train.seed=0"),
        "oip.npz: OIP survey lacks array(s) loss",
    ),
    (
        "a seed's metrics truncated",
        lambda f: _truncate(f / "models/seed_1/metrics.json", 10),
        ("compare",),
        "models/seed_1/metrics.json",
    ),
    (
        "selection missing",
        lambda f: (f / "artifacts/selection.json").unlink(),
        ("activations", "train.seed=0"),
        "selection.json: image selection not found",
    ),
    (
        "trajectory missing",
        lambda f: (f / "models/seed_0/trajectory.npz").unlink(),
        ("alignment",),
        "trajectory.npz",
    ),
    (
        "mlflow.db corrupt",
        lambda f: (f / "mlflow.db").write_bytes(b"not a database" * 100),
        ("select_images",),
        "mlflow.db",
    ),
    (
        "a file where the models folder should be",
        lambda f: (f / "elsewhere").write_text("x"),
        ("train", "paths.models=elsewhere/models"),
        "'paths.models'",
    ),
    (
        "tracking server unreachable",
        None,
        ("prepare",),
        "unreachable",
    ),
    (
        "prepared data of another data set",
        lambda f: _edit_params(f, lambda r: r["data"].update(name="fashion_mnist")),
        ("train", "train.seed=0"),
        "data/prepared: prepared data of another config (data.name is 'fashion_mnist'",
    ),
    (
        "prepared data of another size",
        lambda f: _edit_params(f, lambda r: r["data"].update(n_train=300)),
        ("oip", "train.seed=0"),
        "data.n_train is 300 but it holds 200",
    ),
    (
        "dvc exp run dropped the recorded overrides",
        _experiment_dropped_overrides,
        ("prepare",),
        "`dvc exp run -S experiment=smoke ...`",
    ),
    (
        "a login in an unreachable server's URI",
        None,
        ("prepare",),
        "tracking server http://127.0.0.1:",
    ),
    ("read-only artifact store", _read_only_artifacts, ("select_images",), "read-only"),
    ("read-only mlflow.db", _read_only("mlflow.db"), ("select_images",), "read-only"),
    (
        "a password in tracking.uri",
        _with_conf,
        (f"tracking.uri=http://alice:{SECRET}@127.0.0.1:5000",),
        "'tracking.uri': holds a password",
    ),
    ("unknown experiment", _with_conf, ("experiment=smok",), "Could not find 'experiment/smok'"),
    ("ambiguous list override", _with_conf, ("seeds=0,1",), "Ambiguous value"),
    ("params value checked before writing", _with_conf, ("train.epochs=abc",), "'train.epochs'"),
    # issue 25: no silently wrong number
    (
        "diverging training",
        None,
        ("train", "train.seed=5", "train.learning_rate=1000000.0"),
        "training diverged in epoch 1 of 3",
    ),
    ("epochs 10**20", None, ("train", "train.epochs=100000000000000000000"), "'train.epochs'"),
    ("epochs a billion", None, ("train", "train.epochs=1000000000"), "'train.epochs'"),
    (
        "NaN bias in a model",
        lambda f: _damage_weights(f / "models/seed_1/model.keras", "Dense_1", 1, 1, np.nan),
        ("compare",),
        "model.keras: weights not finite: Dense_1 bias (1 NaN",
    ),
    (
        "Inf in four Conv2D_3 kernels",
        lambda f: _damage_weights(f / "models/seed_0/model.keras", "Conv2D_3", 0, 4, np.inf),
        ("oip", "train.seed=0"),
        "weights not finite: Conv2D_3 kernel (4 infinite",
    ),
    (
        "NaN loss in oip.npz",
        lambda f: _npz_with_nan(f / "artifacts/oip/seed_0/oip.npz", "loss"),
        ("precursor", "train.seed=0"),
        "oip.npz: OIP survey array 'loss': 1 NaN",
    ),
    (
        "NaN image in oip.npz",
        lambda f: _npz_with_nan(f / "artifacts/oip/seed_1/oip.npz", "images"),
        ("oip_compare",),
        "oip.npz: OIP survey array 'images': 1 NaN",
    ),
    (
        "NaN matched_r in compare.json",
        lambda f: _null_matched_r(f / "artifacts/compare/compare.json"),
        ("oip_compare",),
        "matched_r.0' is not a finite number",
    ),
    (
        "precursor probe images beyond the test set",
        None,
        ("precursor", "train.seed=0", "precursor.probe_images=1000000"),
        "'precursor.probe_images'",
    ),
    (
        "alignment probe images beyond the test set",
        None,
        ("alignment", "alignment.probe_images=1000000"),
        "'alignment.probe_images'",
    ),
    ("wider model: oip", _wider_model, ("oip", "train.seed=0"), "layer Conv2D_3 has output shape"),
    ("wider model: compare", _wider_model, ("compare",), "layer Conv2D_3 has output shape"),
    (
        "object array in trajectory.npz",
        lambda f: _object_array_in_trajectory(f / "models/seed_0/trajectory.npz"),
        ("alignment",),
        "trajectory.npz: weight trajectory is unreadable (object arrays)",
    ),
] + [
    (f"locked store: {stage}", _lock_store, (stage, *extra), "locked")
    for stage, *extra in (
        ("prepare",),
        ("train", "train.seed=0"),
        ("select_images",),
        ("oip", "train.seed=0"),
        ("precursor", "train.seed=0"),
        ("compare",),
    )
]
PARAMS_CASES = {
    "a password in tracking.uri",
    "unknown experiment",
    "ambiguous list override",
    "params value checked before writing",
}


UNPRIVILEGED_CASES = {"read-only artifact store", "read-only mlflow.db"}


def _case(study: Path, root: Path, case) -> dict:
    name, breaker, args, _ = case
    folder = root / name.replace(" ", "_").replace(":", "")
    shutil.copytree(study, folder)
    held = breaker(folder) if breaker else None
    before = _hashes(folder)
    env = {UNPRIVILEGED: "1"} if held == UNPRIVILEGED else {}
    if name == "tracking server unreachable":
        env["MLFLOW_TRACKING_URI"] = f"http://127.0.0.1:{_closed_port()}"
    if isinstance(held, dict):  # the case runs in an environment of its own
        env |= held
    if name == "a login in an unreachable server's URI":
        env["MLFLOW_TRACKING_URI"] = f"http://alice:{SECRET}@127.0.0.1:{_closed_port()}"
    started = time.time()
    if name in PARAMS_CASES:
        proc = _cli(folder, *args, module="oiplab.params")
    else:
        proc = _cli(folder, *args, env=env)
    seconds = time.time() - started
    if isinstance(held, sqlite3.Connection):
        held.close()
    after = _hashes(folder)
    return {"proc": proc, "seconds": seconds, "before": before, "after": after, "folder": folder}


@pytest.fixture(scope="module")
def tour(study, tmp_path_factory) -> dict[str, dict]:
    """Every case, run two at a time (each in its own copy of the study)."""
    root = tmp_path_factory.mktemp("tour")
    with ThreadPoolExecutor(max_workers=2) as pool:
        found = pool.map(lambda case: (case[0], _case(study, root, case)), CASES)
        return dict(found)


def test_the_tour_has_at_least_thirty_cases():
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_one_clear_line_and_changes_nothing(tour, case):
    name, _, _, expected = case
    if name in UNPRIVILEGED_CASES and not DROPS_ROOT:
        pytest.skip("root writes into read-only files, and `unshare --user` is not allowed here")
    found = tour[name]
    proc = found["proc"]
    assert proc.returncode != 0, proc.stdout[-1500:]
    assert SECRET not in proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], proc.stderr[-1500:]
    assert "Traceback" not in proc.stderr
    assert found["after"] == found["before"]  # no stored file changed, none half-written


def test_the_tour_table(tour, capsys):
    """Prints the table the issue note quotes: case, exit code, seconds, message."""
    with capsys.disabled():
        print()
        for name, found in tour.items():
            proc = found["proc"]
            message = next((ln for ln in proc.stderr.splitlines() if ln.startswith("error:")), "")
            print(f"| {name} | {proc.returncode} | {found['seconds']:.1f} | {message[:140]} |")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders anyway")
def test_a_read_only_output_folder_fails_before_any_work(study, tmp_path):
    folder = tmp_path / "ro"
    shutil.copytree(study, folder)
    (folder / "models").chmod(0o555)
    proc = _cli(folder, "train", "train.seed=7")
    assert (
        proc.returncode == 2 and "'paths.models'" in proc.stderr and "not writable" in proc.stderr
    )


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("train", "train.epochs=-1"), "'train.epochs'"),  # the params do not validate
        (
            ("oip", "train.seed=0", "paths.artifacts=models/seed_0/model.keras/x"),
            "'paths.artifacts'",
        ),
    ],
    ids=["config", "preflight"],
)
def test_a_stage_failing_before_its_run_opens_leaves_a_failed_run(study, tmp_path, args, error):
    """A failed queued experiment must be seen in MLflow: a stage that fails before its run
    opens (bad parameters, an unwritable output) records a FAILED run with the reason."""
    folder = tmp_path / "early"
    shutil.copytree(study, folder)
    proc = _cli(folder, *args)
    assert proc.returncode == 2 and error in proc.stderr, proc.stderr[-800:]
    client, runs = _runs(folder, args[0])
    failed = [r for r in runs if r.info.status == "FAILED"]
    assert len(failed) == 1, [r.info.status for r in runs]
    assert error in failed[0].data.tags["oiplab.error"]
    assert failed[0].data.params["train.seed"] == "0"


def test_each_seed_stops_at_a_seed_without_a_model_and_keeps_what_it_finished(study, tmp_path):
    """`--each-seed` runs the seeds in order: the ones before a failing seed are written whole,
    the failing one leaves nothing (no folder, no temporaries), and the exit is one line, code 2."""
    folder = tmp_path / "each"
    shutil.copytree(study, folder)
    oip_dir = folder / "artifacts" / "oip"
    old_run = json.loads((oip_dir / "seed_0" / "run.json").read_text())
    proc = _cli(folder, "oip", "--each-seed", "seeds=[0,7]")
    assert proc.returncode == 2, proc.stderr[-800:]
    assert "models/seed_7/model.keras" in proc.stderr and "not found" in proc.stderr
    new_run = json.loads((oip_dir / "seed_0" / "run.json").read_text())
    assert new_run["run_id"] != old_run["run_id"]  # seed 0 ran to the end, by a new run
    assert sorted(p.name for p in oip_dir.iterdir()) == ["seed_0", "seed_1"]  # no seed_7, no temp


def _runs(folder: Path, stage: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    experiment = client.get_experiment_by_name("oiplab")
    return client, client.search_runs(
        [experiment.experiment_id], f"tags.`oiplab.stage` = '{stage}'"
    )


def _wait_for(predicate, proc, seconds: float = 300) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline and proc.poll() is None and not predicate():
        time.sleep(0.05)
    assert proc.poll() is None, "the stage finished before it could be stopped"


@pytest.mark.slow
def test_sigterm_ends_the_stage_killed_and_its_run_closed(study, tmp_path):
    folder = tmp_path / "term"
    shutil.copytree(study, folder)
    proc = _cli(folder, "train", "train.seed=3", "train.epochs=30", wait=False)
    _wait_for(lambda: any(folder.glob(".checkpoints/*/state.json")), proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "stopped by SIGTERM" in stderr, stderr[-1500:]
    _, runs = _runs(folder, "train")
    killed = [r for r in runs if r.data.tags.get("oiplab.seed") == "3"]
    assert [r.info.status for r in killed] == ["KILLED"]
    assert not (folder / "models" / "seed_3").exists()


SIGTERM_STRESS = """
import os, random, signal, sys, threading
from mlflow.tracking import MlflowClient
from oiplab import tracking
from oiplab.stages import load_params
from oiplab.stops import StageInterrupted

cfg = load_params(sys.argv[1])
rng, statuses = random.Random(0), []
for i in range(int(sys.argv[2])):
    timer = threading.Timer(rng.uniform(0.05, 0.4), os.kill, (os.getpid(), signal.SIGTERM))
    try:
        with tracking.stage_run(cfg, "train", seed=100 + i) as run:
            timer.start()
            for step in range(10**6):  # a stage that writes to the store all the time
                run.log_metrics({"loss": 1 / (step + 1), "step": step}, step=step)
    except StageInterrupted:
        pass
    timer.join()
    statuses.append(MlflowClient(cfg.tracking.uri).get_run(run.run_id).info.status)
print(" ".join(statuses))
"""


@pytest.mark.slow
def test_sigterms_at_random_moments_of_store_writes_all_end_their_runs_killed(tmp_path):
    """A signal raised inside MLflow's SQLAlchemy session left the run RUNNING and the sqlite
    store locked for every later run of the process; held until the write ends, it cannot."""
    params = _params(tmp_path, f"tracking.uri=sqlite:///{tmp_path}/mlflow.db")
    script = tmp_path / "stress.py"
    script.write_text(SIGTERM_STRESS)
    done = subprocess.run([sys.executable, script, params, "20"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["KILLED"] * 20, done.stderr[-2000:]


TRAIN = ("train", "train.epochs=4", "train.batch_size=16", "train.seed=0")


@pytest.mark.slow
def test_sigkilled_training_resumes_to_the_weights_of_an_uninterrupted_run(study, tmp_path):
    from oiplab.model import load_model

    straight, killed = tmp_path / "straight", tmp_path / "killed"
    for folder in (straight, killed):
        shutil.copytree(study, folder)
        shutil.rmtree(folder / "models" / "seed_0")
    assert _cli(straight, *TRAIN).returncode == 0

    proc = _cli(killed, *TRAIN, wait=False)

    def epochs_done() -> int:
        found = list(killed.glob(".checkpoints/*/state.json"))
        return json.loads(found[0].read_text())["epochs_done"] if found else 0

    _wait_for(lambda: 1 <= epochs_done() < 4, proc)
    done = epochs_done()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "models" / "seed_0").exists()  # no half-written stage output
    resumed = _cli(killed, *TRAIN)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"after epoch {done}" in resumed.stdout
    for a, b in zip(
        load_model(straight / "models/seed_0/model.keras").get_weights(),
        load_model(killed / "models/seed_0/model.keras").get_weights(),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    assert not list((killed / ".checkpoints").iterdir())  # cleaned up after success
    client, runs = _runs(killed, "train")
    mine = sorted((r for r in runs if r.data.tags.get("oiplab.seed") == "0"),
                  key=lambda r: r.info.start_time)  # fmt: skip
    assert mine[-2].info.status == "KILLED" and mine[-1].info.status == "FINISHED"
    curve = client.get_metric_history(mine[-1].info.run_id, "val_accuracy")
    assert sorted(m.step for m in curve) == [1, 2, 3, 4]  # the whole curve, resumed or not


@pytest.mark.integration
def test_a_tracking_server_dying_mid_stage_gives_a_clear_error_within_seconds(study, tmp_path):
    folder = tmp_path / "server"
    shutil.copytree(study, folder)
    server = MlflowServer(tmp_path)
    try:
        server.wait()
        proc = _cli(folder, "train", "train.seed=4", "train.epochs=40",
                    env={"MLFLOW_TRACKING_URI": server.uri}, wait=False)  # fmt: skip
        _wait_for(lambda: any(folder.glob(".checkpoints/*/state.json")), proc)
    finally:
        server.stop()
    died = time.time()
    _, stderr = proc.communicate(timeout=300)
    seconds = time.time() - died
    print(f"clear error {seconds:.1f} s after the server died")
    assert proc.returncode == 2 and "Traceback" not in stderr, stderr[-2000:]
    assert stderr.strip().splitlines()[-1].startswith("error: MLflow store http"), stderr[-1500:]
    assert seconds < 45
    assert not (folder / "models" / "seed_4").exists()  # outputs untouched: only a checkpoint


@pytest.mark.slow
def test_a_sweep_runs_every_job_and_reports_the_failed_one(study, tmp_path):
    """`train.batch_size=64,0,64`: job 1 fails, job 2 still runs; the sweep ends with one line
    per failed job, exit 2, its parent run FAILED with the count, and no registered model."""
    folder = tmp_path / "sweep"
    shutil.copytree(study, folder)
    _with_conf(folder)
    proc = _cli(
        folder,
        "-m", *SMOKE, "paths.prepared=data/prepared", "train.batch_size=64,0,64",
        "hydra.sweep.dir=multirun/bs",
        module="oiplab.stages.train",
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    tail = proc.stderr.strip().splitlines()[-2:]
    assert tail[0] == "error: 1 of 3 sweep jobs failed:", proc.stderr[-2000:]
    assert tail[1].startswith("  job 1 (") and "train.batch_size=0): config key" in tail[1]
    assert sorted(p.parts[-3] for p in (folder / "multirun/bs").glob("*/models/seed_0")) == [
        "0",
        "2",
    ]
    client, runs = _runs(folder, "train")
    parent = client.get_run(next(r for r in runs if r.info.status == "FAILED").data.tags[
        "mlflow.parentRunId"
    ])  # fmt: skip
    assert parent.info.status == "FAILED" and parent.data.tags["oiplab.failed_runs"] == "1"
    in_sweep = client.search_runs(
        [parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    assert sorted(r.info.status for r in in_sweep) == ["FAILED", "FINISHED", "FINISHED"]
    names = {m.name for m in client.search_registered_models()}
    assert names == {"oiplab-synthetic-smoke-cnn"}  # the study's two seeds; none from the sweep


def test_a_sweep_on_prepared_data_of_another_config_is_refused(study, tmp_path):
    """`-m experiment=smoke` (600 training images) on the study's prepared data (200): each
    job refuses it, as one on the pipeline's prepared MNIST would."""
    folder = tmp_path / "other"
    shutil.copytree(study, folder)
    _with_conf(folder)
    proc = _cli(
        folder, "-m", "experiment=smoke", "train.seed=0,1", "hydra.sweep.dir=multirun/x",
        module="oiplab.stages.train",
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("  job ")]
    assert len(lines) == 2 and all("data.n_train is 600 but it holds 200" in ln for ln in lines)


def test_a_read_only_artifact_store_fails_the_run_and_names_the_store(tour):
    """The store's database still takes the run's end: FAILED, the reason naming the store."""
    if not DROPS_ROOT:
        pytest.skip("root writes into read-only folders, and `unshare --user` is not allowed here")
    proc = tour["read-only artifact store"]["proc"]
    assert "error: MLflow store sqlite:///" in proc.stderr and "/mlruns/" in proc.stderr
    _, runs = _runs(tour["read-only artifact store"]["folder"], "select_images")
    newest = max(runs, key=lambda r: r.info.start_time)
    assert newest.info.status == "FAILED"
    assert newest.data.tags["oiplab.error"].startswith("TrackingError: MLflow store sqlite:///")


def test_a_full_store_disk_is_one_line_naming_the_store_and_the_run_is_closed(
    study, tmp_path, monkeypatch, capsys
):
    """Once four tracebacks, "metrics/answer.json: No space left" and the run left RUNNING."""
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

    from oiplab.stages import select_images

    folder = tmp_path / "full"
    shutil.copytree(study, folder)
    monkeypatch.chdir(folder)
    before = _hashes(folder)

    def full(self, local_file, artifact_path=None):
        target = Path(self.artifact_dir, artifact_path or "", Path(local_file).name)
        raise OSError(errno.ENOSPC, "No space left on device", str(target))

    monkeypatch.setattr(LocalArtifactRepository, "log_artifact", full)
    with pytest.raises(SystemExit) as stop:
        select_images.main(["--params", "params.yaml"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    assert errors[0].startswith(f"error: MLflow store sqlite:///{folder.resolve()}/mlflow.db")
    assert "/mlruns/" in errors[0] and "No space left on device" in errors[0]
    assert _hashes(folder) == before
    _, runs = _runs(folder, "select_images")
    assert max(runs, key=lambda r: r.info.start_time).info.status == "FAILED"
