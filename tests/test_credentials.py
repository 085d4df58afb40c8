"""Credentials (`oiplab.credentials`): a URI is shown without its user-info everywhere; a server's
login reaches MLflow's client through MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD; no
secret reaches a file, a parameter, a tag or a message (the last test against a real
`mlflow server --app-name basic-auth` that refuses a request without the login)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from oiplab.credentials import PASSWORD, USERNAME, has_password, login, redact
from oiplab.params import compose
from tests.conftest import REPO_ROOT, MlflowServer, compose_typed, free_port, run_study

SMOKE = (
    "experiment=smoke",
    "data.n_train=200",
    "data.n_test=160",
    "train.epochs=2",
    "oip.maps=[0,1,2,3]",
    "split.members=[1]",
)
SECRET = "Pa55-w0rd:with@signs"  # a raw `@` and `:` in the password, as people type them


@pytest.fixture
def no_login(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's credential variables unset, and unset again after the test (`login` sets them)."""
    for name in (USERNAME, PASSWORD):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (f"http://alice:{SECRET}@127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("https://alice@mlflow.lab/api?x=a@b", "https://mlflow.lab/api?x=a@b"),
        ("postgresql://u:p@db:5432/mlflow", "postgresql://db:5432/mlflow"),
        ("sqlite:////home/a@b/mlflow.db", "sqlite:////home/a@b/mlflow.db"),  # an @ in a path
        (
            f"server http://u:{SECRET}@h:1 is unreachable (see http://u:x@h:2/health)",
            "server http://h:1 is unreachable (see http://h:2/health)",
        ),
    ],
)
def test_redact_removes_the_user_info_of_every_uri_and_nothing_else(text, shown):
    assert redact(text) == shown


def test_login_moves_a_servers_user_info_into_mlflows_variables(no_login):
    assert login(f"http://alice:{SECRET.replace('@', '%40')}@127.0.0.1:5000/") == (
        "http://127.0.0.1:5000/"
    )
    assert (os.environ[USERNAME], os.environ[PASSWORD]) == ("alice", SECRET)
    assert login("postgresql://u:p@db/mlflow") == "postgresql://u:p@db/mlflow"  # for its driver
    assert login("sqlite:////tmp/a@b/mlflow.db") == "sqlite:////tmp/a@b/mlflow.db"


def test_tracking_uri_and_default_uri_hold_no_login(no_login, monkeypatch, smoke_cfg):
    from oiplab import tracking

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"https://bob:{SECRET}@mlflow.lab")
    assert tracking.tracking_uri(smoke_cfg) == tracking.default_uri() == "https://mlflow.lab"
    assert os.environ[PASSWORD] == SECRET


def test_a_password_in_conf_is_refused_without_showing_it():
    from oiplab.config import ConfigError

    assert has_password(f"http://u:{SECRET}@h") and not has_password("http://u@h")
    with pytest.raises(ConfigError, match="'tracking.uri': holds a password") as caught:
        compose_typed(f"tracking.uri=http://u:{SECRET}@127.0.0.1:5000")
    assert SECRET not in str(caught.value)


def test_an_unreachable_server_with_a_login_is_named_without_it(no_login, tmp_path):
    """The probe once failed to parse such a URI and printed it, password and all."""
    from oiplab import tracking

    uri = f"http://alice:{SECRET}@127.0.0.1:{free_port()}"
    with pytest.raises(tracking.TrackingError, match="unreachable") as caught:
        tracking.check_server(login(uri), timeout=2)
    assert SECRET not in str(caught.value) and "http://127.0.0.1:" in str(caught.value)
    assert "nonnumeric port" not in str(caught.value)


def test_the_reports_links_hold_no_login():
    from oiplab.report.html import ui_base

    assert (
        ui_base(f"http://u:{SECRET}@mlflow.lab:5000/", "http://127.0.0.1:5000")
        == "http://mlflow.lab:5000"
    )


@pytest.mark.parametrize(
    ("host", "warned"),
    [("127.0.0.1", False), ("localhost", False), ("::1", False), ("0.0.0.0", True), ("::", True)],
)
def test_oiplab_ui_warns_on_a_host_other_machines_reach(host, warned):
    from oiplab.cli import exposure_warning

    warning = exposure_warning(host, 5000)
    assert (warning is not None) == warned
    if warning:
        assert warning.startswith(f"warning: --host {host} ") and "no login" in warning
        assert "basic-auth" in warning and "\n" not in warning


def _grep(secret: bytes, *folders: Path) -> list[str]:
    """The files under `folders` holding `secret`."""
    return [
        str(p)
        for folder in folders
        for p in folder.rglob("*")
        if p.is_file() and secret in p.read_bytes()
    ]


@pytest.mark.integration
def test_no_secret_reaches_a_file_a_param_a_tag_or_a_message(
    tmp_path, monkeypatch, capfd, no_login
):
    """The smoke study, every stage, against a server that wants a login given in the URI; then
    the password is looked for in the server's store, the study's outputs and everything
    printed."""
    import importlib.util

    from oiplab.layout import Layout

    # MLflow's basic-auth app needs Flask-WTF (`mlflow[auth]`); without it, a plain server, and
    # the login is checked where MLflow's client reads it
    auth = importlib.util.find_spec("flask_wtf") is not None
    (tmp_path / "server").mkdir()
    server = MlflowServer(tmp_path / "server", admin_password=SECRET if auth else None)
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    try:
        server.wait()
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri.replace("//", f"//admin:{SECRET}@"))
        cfg = compose_typed(*SMOKE)
        run_study(cfg)  # every stage, the seed-split design included
        wrong = server.uri.replace("//", "//admin:not-the-password-1@")
        env = {**os.environ, "MLFLOW_TRACKING_URI": wrong, "PYTHONPATH": os.pathsep.join(sys.path)}
        params = project / "params.yaml"
        params.write_text(OmegaConf.to_yaml(compose([*SMOKE], REPO_ROOT)))
        refused = subprocess.run(
            [sys.executable, "-m", "oiplab.stages.select_images", "--params", str(params)],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        found = server.api("/api/2.0/mlflow/experiments/get-by-name?experiment_name=oiplab")
        ids = [found["experiment"]["experiment_id"]]
        runs = server.api("/api/2.0/mlflow/runs/search", {"experiment_ids": ids})["runs"]
    finally:
        server.stop()
    printed = capfd.readouterr()
    assert (os.environ[USERNAME], os.environ[PASSWORD]) == ("admin", SECRET)
    if auth:
        assert refused.returncode == 2 and "HTTP 401" in refused.stderr, refused.stderr[-1500:]
    assert "not-the-password-1" not in refused.stdout + refused.stderr
    assert SECRET not in printed.out + printed.err
    assert _grep(SECRET.encode(), project, tmp_path / "server") == []
    assert len(runs) >= 15 and all(r["info"]["status"] == "FINISHED" for r in runs)
    for run in runs:
        values = [p["value"] for p in run["data"].get("params", [])]
        values += [t["value"] for t in run["data"].get("tags", [])]
        assert not [v for v in values if SECRET in v or "admin:" in v]
    html = Layout.of(cfg).report().read_text()
    assert f"{server.uri}/#/experiments/" in html and "admin:" not in html
