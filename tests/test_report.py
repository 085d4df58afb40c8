"""The report page, rendered from hand-made typed results (no stage runs): every section, every
table with its headers once, and an older results file named with the stage to rerun."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from oiplab.io import StaleOutputError
from oiplab.layout import METRICS
from oiplab.report import page
from oiplab.report.html import Links, render
from oiplab.report.tables import ANSWER, OVER_TRAINING, Table, table
from tests import results


def _page(cfg) -> str:
    lay = results.write_study(cfg)
    missing = Path("no-figure.png")  # the two figures the report stage draws itself
    context = page.context(
        cfg, lay, Links("http://ui", lay), ("abc1234", "d1g3st"), missing, missing
    )
    return render(context)


def _headers(html: str) -> list[list[str]]:
    heads = re.findall(r"<thead><tr>(.*?)</tr></thead>", html)
    return [re.findall(r"<th>(.*?)</th>", h) for h in heads]


def test_every_section_shows_its_numbers(smoke_cfg):
    html = _page(smoke_cfg)
    for anchor, _ in page.SECTIONS:
        assert f'<section id="{anchor}">' in html
    assert "<td>seed</td>" not in html  # no header printed as a cell
    expected = [
        "93.75%",  # test accuracy min
        "clear_4_vs_clear_9",  # a common-pattern comparison
        "<td>25%</td>",  # OIPs converged
        "<td>0.00</td>",  # a start mean of ~0 is not printed as -0.00
        "62% (50%-75%)",  # partnered with its interval
        "3 of 24 tested, 1.5 expected",  # same index / expected
        "as trained",  # barriers: the alignment's name
        "test images, loss",  # ... its image set and measure
        "partners 0.975 vs every other pair 0.875",  # pixel similarity
        "<td>1 / 0.2</td><td>0.25; 0.75</td>",  # same index between seeds, over training
        "<td>3.1%</td><td>1e-40; 2e-40</td>",  # at own final index: chance, exact p and Holm
        "12 of 24",  # same index of tested, a seed-split design that keeps the order
        "/#/experiments/1/runs/0123456789abcdef",  # the training runs' links
    ]
    for text in expected:
        assert text in html, text


def test_each_table_has_its_headers_beside_its_rows(smoke_cfg):
    html = _page(smoke_cfg)
    heads = _headers(html)
    assert ["seed", "test accuracy", "test loss", "train seconds", "images/s"] in heads
    answer = [h for h, _ in ANSWER]
    assert heads.count(answer) == 1  # the seed-split designs have their own table
    template = (Path(page.__file__).parent / "templates" / "report.html.j2").read_text()
    assert "<th>" not in template.replace("<th>{{ h }}</th>", "")
    assert "partnered (95% CI)" not in template


def test_the_first_screen_answers_the_three_questions_before_data_and_setup(smoke_cfg):
    """The page opens with the answers, each a sentence with its numbers and a link to its
    section; here the hand-made same_init design keeps the order and same_order does not."""
    html = _page(smoke_cfg)
    first = html.index('<section id="answers">')
    assert first < html.index('<section id="setup">') and first < html.index("<table>")
    screen = html[first : html.index("</section>", first)]
    questions = re.findall(r"<dt>(.*?)</dt>", screen)
    assert questions == ["Same filters?", "Same order?", "What decides the order?"]
    assert (
        "Conv2D_1: units recur (most maps), 62% of live maps partnered (untrained 25%, "
        "trained vs untrained p = 0.0039, rotated units up to 38%)" in screen
    )
    clear = r"12% of clear matches \([0-9]+%(-[0-9]+%)? of all matches\) at their index, at chance"
    assert "calibrated" in screen and re.search(clear, screen)
    assert "The initialization: networks sharing the first seed&#39;s initialization" in screen
    assert "at their index in 6 of 6 layers (chance 3.1%; Holm p &lt;= 6e-12)" in screen
    assert re.search(r"4% of clear matches( \([^)]*\))? at their index, at chance in all 6", screen)
    for anchor in ("compare", "decides"):
        assert f'href="#{anchor}"' in screen
        assert f'<section id="{anchor}">' in html
    assert "Why is the order lost?" not in html and "Not run yet" not in html


def test_the_seed_split_section_shows_each_design_and_its_run(smoke_cfg):
    lay = results.write_study(smoke_cfg)
    for d in smoke_cfg.split.designs:
        results.run_record().save(lay.split_compare_dir(d))
    splits = page.split_answers(smoke_cfg, lay)
    section = page.decides(smoke_cfg, lay, splits, Links("u", lay))
    assert section["decider"] == "initialization"
    assert [d["name"] for d in section["designs"]] == ["same_init", "same_order"]
    assert section["designs"][0]["kept"] == list(smoke_cfg.compare.layers)
    assert section["designs"][1]["kept"] == []
    assert section["designs"][0]["url"] == "u/#/experiments/1/runs/0123456789abcdef"
    rows = section["designs"][0]["order"].rows
    expected = ("12 of 24", "50%", "3.1%", "1e-12", "6e-12", "same order")
    assert rows[0][:7] == (smoke_cfg.compare.layers[0], *expected)


def test_a_table_takes_each_cell_from_its_column():
    rows = table([("a", lambda x: x * 2), ("b", str)], [1, 2])
    assert rows == Table(("a", "b"), [(2, "1"), (4, "2")])


@pytest.mark.parametrize(
    ("folder", "stage"),
    [
        (lambda lay: lay.oip_dir(1), "oip"),
        (lambda lay: lay.precursor_dir(0), "precursor"),
        (lambda lay: lay.oip_compare_dir(), "oip_compare"),
    ],
)
def test_an_older_results_file_names_the_file_and_the_stage(smoke_cfg, folder, stage):
    lay = results.write_study(smoke_cfg)
    path = folder(lay) / METRICS
    data = json.loads(path.read_text())
    data["renamed_in_a_later_version"] = data.pop(next(iter(data)))
    path.write_text(json.dumps(data))
    with pytest.raises(StaleOutputError) as caught:
        page.context(smoke_cfg, lay, Links(None, lay), ("c", "d"), path, path)
    assert str(path) in str(caught.value)
    assert f"rerun its stage: `dvc repro {stage}`" in str(caught.value)


def test_the_final_snapshot_against_itself_reads_as_no_test():
    row = [r for r in results.alignment(["Conv2D_1"]).records if r.step == 20][0]
    row = row.model_copy(update={"final_same_index_p": float("nan")})
    assert table(OVER_TRAINING, [row]).rows[0][-1] == "- (the final network itself)"


def test_run_links_follow_the_configured_ui_address(smoke_cfg, tmp_path):
    """A store on this machine is browsed where `oiplab ui` serves it (`tracking.ui`), not at
    a fixed port; a tracking server is its own UI."""
    from oiplab.cli import configured_ui
    from oiplab.report.html import ui_base

    smoke_cfg.tracking.ui = "http://127.0.0.1:5123"
    lay = results.write_study(smoke_cfg)
    base = ui_base("sqlite:///mlflow.db", smoke_cfg.tracking.ui)
    context = page.context(
        smoke_cfg, lay, Links(base, lay), ("c", "d"), Path("none.png"), Path("none.png")
    )
    links = re.findall(r'href="(http[^"]+)"', render(context))
    assert links and all(u.startswith("http://127.0.0.1:5123/#/experiments/1/runs/") for u in links)
    assert ui_base("http://mlflow.lab:8080/", smoke_cfg.tracking.ui) == "http://mlflow.lab:8080"
    params = tmp_path / "params.yaml"
    params.write_text("tracking:\n  ui: http://127.0.0.1:5123\n")
    assert configured_ui(params) == "http://127.0.0.1:5123"
    assert configured_ui(tmp_path / "missing.yaml") == "http://127.0.0.1:5000"


@pytest.mark.parametrize(("epoch", "shown"), [(0.0, "0"), (1.0, "1"), (5.0, "5"), (0.1023, "0.1")])
def test_epochs_print_as_whole_numbers_where_they_are(epoch, shown):
    from oiplab.report.tables import epoch_text

    assert epoch_text(epoch) == shown


def test_an_exact_p_value_below_the_smallest_double_reads_as_a_bound_not_zero():
    from fractions import Fraction

    from oiplab.report.tables import _p_pair, p_value

    tiny = float(Fraction(1, 10**400))  # an exact p-value rounded to a double, as the tests do
    assert tiny == 0.0 and p_value(tiny) == "< 1e-323"
    assert p_value(5e-324) == "4.9e-324" and p_value(0.0123) == "0.012"
    assert p_value(float("nan")) == "n/a"
    assert _p_pair(0.0, 0.0) == "< 1e-323; < 1e-323" and _p_pair(0.01, 0.04) == "0.01; 0.04"
