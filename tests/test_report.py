"""The report page, rendered from hand-made typed results (no stage runs): every section, every
table with its headers once, and an older results file named with the stage to rerun."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from oiplab.compare.summary import StudyAnswer
from oiplab.io import StaleOutputError
from oiplab.layout import METRICS
from oiplab.report import page
from oiplab.report.html import Links, render
from oiplab.report.tables import ANSWER, Table, table
from tests import results


def _page(cfg, splits: dict[str, StudyAnswer | None] | None = None) -> str:
    lay = results.write_study(cfg)
    missing = Path("no-figure.png")  # the two figures the report stage draws itself
    context = page.context(
        cfg, lay, Links("http://ui", lay), ("abc1234", "d1g3st"), missing, missing, splits or {}
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
        "1 / 0.2, p = 0.25",  # same index between seeds, over training
        "Not run yet",  # no seed-split study in the store
        "/#/experiments/1/runs/0123456789abcdef",  # the training runs' links
    ]
    for text in expected:
        assert text in html, text


def test_each_table_has_its_headers_beside_its_rows(smoke_cfg):
    html = _page(smoke_cfg)
    heads = _headers(html)
    assert ["seed", "test accuracy", "test loss", "train seconds", "images/s"] in heads
    answer = [h for h, _ in ANSWER]
    assert heads.count(answer) == 1  # the seed-split studies are not found: only the answer
    template = (Path(page.__file__).parent / "templates" / "report.html.j2").read_text()
    assert "<th>" not in template.replace("<th>{{ h }}</th>", "")
    assert "partnered (95% CI)" not in template


def test_a_seed_split_study_shows_its_answer_and_run(smoke_cfg):
    found = StudyAnswer(results.answer(smoke_cfg.compare.layers), results.run_record())
    html = _page(smoke_cfg, {"same_init": found})
    assert _headers(html).count([h for h, _ in ANSWER]) == 2
    assert "http://ui/#/experiments/1/runs/0123456789abcdef" in html
    assert html.count("Not run yet") == 1  # same_order


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
        page.context(smoke_cfg, lay, Links(None, lay), ("c", "d"), path, path, {})
    assert str(path) in str(caught.value)
    assert f"rerun its stage: `dvc repro {stage}`" in str(caught.value)
