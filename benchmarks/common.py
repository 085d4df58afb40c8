"""Shared benchmark plumbing: the machine's description, the model to measure, result tables."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from oiplab.io import atomic_write_text, write_json

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """Where the numbers were taken: CPU, core count, backend and device."""
    from oiplab.backend import backend_name, versions

    info = {
        "host": platform.node(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "keras_backend": backend_name(),
        "versions": versions(),
        "device": "cpu",
    }
    if backend_name() == "jax":
        import jax

        info["device"] = str(jax.devices()[0])
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def default_config(overrides: Sequence[str] = ()):
    """The default study's configuration, composed from conf/ (the only source of defaults), with
    Hydra `overrides` (e.g. `paths.models=/elsewhere/models` to measure another clone's models)."""
    from oiplab.config import to_typed
    from oiplab.params import compose

    return to_typed(compose(list(overrides), root=Path(__file__).resolve().parents[1]))


def model_cfg():
    return default_config().model


def load_model_or_untrained(path: str | Path):
    """The trained model at `path` if the pipeline made one, else an untrained CNN (same cost)."""
    from oiplab.model import build_model, load_model

    path = Path(path)
    if path.is_file():
        return load_model(path), str(path)
    return build_model(model_cfg()), "untrained CNN (run the pipeline for a trained one)"


def write_results(name: str, rows: list[dict[str, Any]], meta: dict[str, Any]) -> Path:
    """Write `results/<name>.json` and a Markdown table `results/<name>.md`."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / f"{name}.json", {"machine": machine(), **meta, "rows": rows})
    columns = list(dict.fromkeys(k for row in rows for k in row))
    lines = [f"# {name}", "", f"machine: {json.dumps(machine())}", ""]
    lines += [f"{k}: {v}" for k, v in meta.items()] + [""]
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("|" + "---|" * len(columns))
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c, "")) for c in columns) + " |")
    atomic_write_text(RESULTS / f"{name}.md", "\n".join(lines) + "\n")
    return RESULTS / f"{name}.md"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
