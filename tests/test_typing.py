"""The type checker CI runs (`make typecheck`, mypy with pyproject.toml's settings) catches a wrong
attribute on a typed result, in an annotated function and in an unannotated one."""

from __future__ import annotations

from pathlib import Path

import pytest
from mypy import api

REPO_ROOT = Path(__file__).resolve().parents[1]

SNIPPET = """\
from oiplab.compare.summary import LayerAnswer


def headline(answer: LayerAnswer) -> float:
    return answer.partnered.{attr}


def unannotated(answer):
    a: LayerAnswer = answer
    return a.cka.{attr}
"""


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mypy_cache")


def _mypy(tmp_path: Path, cache_dir: Path, attr: str, *flags: str) -> tuple[str, int]:
    snippet = tmp_path / "snippet.py"
    snippet.write_text(SNIPPET.format(attr=attr), encoding="utf-8")
    config = str(REPO_ROOT / "pyproject.toml")
    stdout, stderr, status = api.run(
        ["--config-file", config, "--cache-dir", str(cache_dir), *flags, str(snippet)]
    )
    return stdout + stderr, status


def test_the_project_settings_reject_a_missing_attribute_of_a_result(tmp_path, cache_dir):
    out, status = _mypy(tmp_path, cache_dir, "valeu")
    assert status == 1, out
    assert 'snippet.py:5: error: "Estimate" has no attribute "valeu"' in out, out
    # check_untyped_defs: the body of a function without annotations is checked too
    assert 'snippet.py:10: error: "Estimate" has no attribute "valeu"' in out, out


def test_the_same_snippet_with_a_real_attribute_passes(tmp_path, cache_dir):
    out, status = _mypy(tmp_path, cache_dir, "value")
    assert status == 0, out


def test_without_the_project_settings_an_unannotated_body_goes_unchecked(tmp_path, cache_dir):
    out, status = _mypy(tmp_path, cache_dir, "valeu", "--no-check-untyped-defs")
    assert "snippet.py:5: error" in out, out
    assert "snippet.py:10: error" not in out, out
