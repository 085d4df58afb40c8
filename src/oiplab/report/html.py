"""Small HTML building blocks: escaped text, tables, embedded PNG figures, sections."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from html import escape
from pathlib import Path
from typing import Any

STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif; margin: 0;
       color: #1d232a; background: #fafbfc; line-height: 1.45; }
header { background: #1f3a5f; color: white; padding: 1.4rem 2rem; }
header h1 { margin: 0 0 .3rem 0; font-size: 1.6rem; }
nav { background: #e8eef5; padding: .5rem 2rem; position: sticky; top: 0; z-index: 2; }
nav a { margin-right: 1.1rem; color: #1f3a5f; text-decoration: none; font-weight: 600; }
main { padding: 0 2rem 3rem 2rem; max-width: 1250px; }
section { margin-top: 2rem; }
h2 { border-bottom: 2px solid #1f3a5f; padding-bottom: .2rem; }
table { border-collapse: collapse; margin: .6rem 0 1rem 0; font-size: .88rem; background: white; }
th, td { border: 1px solid #d0d7de; padding: .25rem .55rem; text-align: right; }
th { background: #eef2f6; } td:first-child, th:first-child { text-align: left; }
figure { margin: .8rem 0 1.4rem 0; } figure img { max-width: 100%; border: 1px solid #d0d7de;
  background: white; } figcaption { font-size: .85rem; color: #57606a; }
.verdict { background: #fff8e1; border-left: 5px solid #f0b400; padding: .8rem 1rem; }
.muted { color: #57606a; font-size: .85rem; } .run { font-size: .8rem; }
.grid2 { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 1rem; }
"""

# Marks the page once every image has decoded, so a headless browser check can read the result.
IMAGE_CHECK = """
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.setAttribute('data-images-loaded', ok + '/' + imgs.length);
});
"""


def text(value: Any) -> str:
    return escape(str(value))


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, bool) or value is None:
        return text(value)
    if isinstance(value, int):
        return f"{value:,}"
    return text(value)


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    head = "".join(f"<th>{text(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{fmt(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def figure(path: str | Path, caption: str) -> str:
    """The PNG at `path` embedded as a data URI (the page needs no other file), or a note."""
    path = Path(path)
    if not path.is_file():
        return f'<p class="muted">(figure missing: {text(path)})</p>'
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{text(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{text(caption)}</figcaption></figure>"
    )


def run_link(url: str | None, label: str = "MLflow run") -> str:
    if not url:
        return '<p class="run muted">(no MLflow run recorded)</p>'
    return f'<p class="run"><a href="{text(url)}">{text(label)}</a></p>'


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{text(anchor)}"><h2>{text(title)}</h2>{body}</section>'


def page(title: str, subtitle: str, sections: list[tuple[str, str, str]]) -> str:
    nav = "".join(f'<a href="#{text(a)}">{text(t)}</a>' for a, t, _ in sections)
    body = "".join(section(a, t, b) for a, t, b in sections)
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{text(title)}</title><style>{STYLE}</style>"
        f"<script>{IMAGE_CHECK}</script></head><body>"
        f"<header><h1>{text(title)}</h1><div>{text(subtitle)}</div></header>"
        f"<nav>{nav}</nav><main>{body}</main></body></html>"
    )
