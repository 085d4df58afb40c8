"""`dvc plots show` / `dvc plots diff` offline: DVC's page template with Vega inlined
(.dvc/plots/page.html, `make plots-page`), and every plot dvc.yaml declares drawn once, checked in
headless Chromium with the network unreachable."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from oiplab.plots_page import PAGE, BundleError, page_html
from tests.browser import FLAGS
from tests.conftest import REPO_ROOT

# Chromium with every host unresolvable and a dead proxy: a page that needs the network fails.
CHROMIUM_OFFLINE = [*FLAGS, "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9"]


def test_the_committed_page_inlines_vega_and_is_dvcs_template():
    page = (REPO_ROOT / PAGE).read_text(encoding="utf-8")
    assert "{plot_divs}" in page and "{scripts}" not in page  # no place for DVC's CDN tags
    assert "<script src" not in page and len(page) > 500_000  # the libraries themselves
    config = (REPO_ROOT / ".dvc" / "config").read_text()
    template = re.search(r"html_template\s*=\s*(\S+)", config)
    assert template and REPO_ROOT / ".dvc" / template.group(1) == REPO_ROOT / PAGE


def test_a_bundle_that_would_break_dvcs_page_is_refused():
    assert "{plot_divs}" in page_html("window.x = 1;", "test")
    with pytest.raises(BundleError, match="contains '</script'"):
        page_html("var s = '</script>';", "test")
    with pytest.raises(BundleError, match="contains '{plot_divs}'"):
        page_html("var s = '{plot_divs}';", "test")


def _declared() -> tuple[int, list[str]]:
    """dvc.yaml's top-level plots: how many are Vega plots, and the image paths (folders)."""
    plots = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["plots"]
    vega = [p for p in plots if isinstance(p, dict)]
    return len(vega), [p for p in plots if isinstance(p, str)]


def _figures(folder: Path) -> int:
    """Stand-in PNGs for a figure folder a fresh checkout lacks (the stages write the real ones)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if folder.is_dir() and any(folder.glob("*.png")):
        return len(list(folder.glob("*.png")))
    folder.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1, 2], [1, 0, 2])
    fig.savefig(folder / "figure.png", dpi=60)
    plt.close(fig)
    return 1


def _git(project: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=project,
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="module")
def plots_project(tmp_path_factory):
    """A git repository with the project's dvc.yaml, DVC settings and committed plot data (no
    DVC cache, as in a fresh clone), the learning curves changed in the workspace."""
    project = tmp_path_factory.mktemp("plots")
    for name in ("dvc.yaml", "params.yaml", ".dvc/config", ".dvc/plots", "metrics"):
        source, target = REPO_ROOT / name, project / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy(source, target)
    n_vega, images = _declared()
    n_images = sum(_figures(project / p) for p in images)
    _git(project, "init", "-q")
    _git(project, "add", "-A")
    _git(project, "commit", "-qm", "plots")
    curves = project / "metrics" / "learning_curves.json"
    rows = json.loads(curves.read_text())
    curves.write_text(json.dumps([{**r, "loss": r["loss"] * 0.9} for r in rows], indent=2))
    return {"project": project, "vega": n_vega, "images": n_images}


def _rendered(page: Path, chromium: str, profile: Path) -> dict[str, tuple[int, int]]:
    """The page's own counts once rendered: Vega plots drawn / asked, images decoded / listed."""
    flags = [*CHROMIUM_OFFLINE, f"--user-data-dir={profile}", "--virtual-time-budget=15000"]
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=180
    ).stdout
    counts = dict(re.findall(r'data-(vega-drawn|images-loaded)="(\d+/\d+)"', dom))
    return {k: tuple(map(int, v.split("/"))) for k, v in counts.items()}


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("command", [["show"], ["diff", "HEAD"]], ids=["show", "diff"])
def test_every_declared_plot_renders_offline(plots_project, command, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not installed: apt-get install chromium")
    project, out = plots_project["project"], tmp_path / "out"
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]}
    shown = subprocess.run(
        ["dvc", "plots", *command, "-o", str(out)],
        cwd=project,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert shown.returncode == 0 and "failed to load" not in shown.stderr, shown.stderr
    html = (out / "index.html").read_text(encoding="utf-8")
    assert "cdn.jsdelivr" not in html and "<script src" not in html
    revisions = len(command)  # `diff HEAD`: HEAD and the workspace, each image once per revision
    counts = _rendered(out / "index.html", chromium, tmp_path / "profile")
    n_vega, n_images = plots_project["vega"], plots_project["images"] * revisions
    assert counts.get("vega-drawn") == (n_vega, n_vega), counts  # each plot once, each drawn
    assert counts.get("images-loaded") == (n_images, n_images), counts
    if command[0] == "diff":  # both revisions' curves are in the drawn data
        assert html.count('"rev": "HEAD"') > 0 and html.count('"rev": "workspace"') > 0
