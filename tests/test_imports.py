"""The import graph of `src/oiplab`, derived from the code, has no cycle.

Every import counts: at module level, inside functions (lazy) and under `TYPE_CHECKING`, since a
cycle through any of them means two modules each need the other to be understood.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO_ROOT

PACKAGE = "oiplab"


def module_names(root: Path) -> dict[str, Path]:
    """Every module of the package under `root` (the folder holding the package): name -> file."""
    names = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imported_modules(path: Path, name: str, modules: set[str]) -> set[str]:
    """The package's modules that the module `name` at `path` imports, at any depth of the file.

    `from pkg import x` counts as an import of `pkg.x` when `x` is a submodule, else of `pkg`.
    """
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package, `level - 1` further up
                package = name.split(".") if is_package else name.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, base] if base else package)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in modules else base)
    return {m for m in found if m in modules and m != name}


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports."""
    files = module_names(root)
    return {name: imported_modules(path, name, set(files)) for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a closed path of module names (first == last), or None (depth-first search)."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path, on_path = [start], {start}
        stack = [iter(sorted(graph[start]))]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                stack.pop()
                finished = path.pop()
                on_path.discard(finished)
                done.add(finished)
                continue
            if nxt in on_path:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in done:
                path.append(nxt)
                on_path.add(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def test_the_package_has_no_import_cycle():
    graph = import_graph(REPO_ROOT / "src")
    assert "oiplab.model" in graph and "oiplab.config" in graph  # the graph saw the package
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_a_cycle_through_a_type_checking_import_is_found(tmp_path):
    # the shape of the cycle this test was written for: config <- model, model -> config (types)
    _write(
        tmp_path,
        {
            "oiplab/__init__.py": "",
            "oiplab/config.py": "from oiplab.model import LAYERS\n",
            "oiplab/model.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from oiplab.config import ModelConfig\nLAYERS = ()\n"
            ),
        },
    )
    cycle = find_cycle(import_graph(tmp_path))
    assert cycle is not None and set(cycle) == {"oiplab.config", "oiplab.model"}


def test_lazy_package_and_relative_imports_are_resolved_to_submodules(tmp_path):
    _write(
        tmp_path,
        {
            "oiplab/__init__.py": "",
            "oiplab/a.py": "def f():\n    from oiplab import b\n",
            "oiplab/b.py": "from oiplab.sub import c\n",
            "oiplab/sub/__init__.py": "",
            "oiplab/sub/c.py": "from .. import a\n",
            "oiplab/d.py": "from oiplab.a import f\n",
        },
    )
    graph = import_graph(tmp_path)
    assert graph["oiplab.a"] == {"oiplab.b"} and graph["oiplab.sub.c"] == {"oiplab.a"}
    assert graph["oiplab.d"] == {"oiplab.a"}
    assert set(find_cycle(graph) or []) == {"oiplab.a", "oiplab.b", "oiplab.sub.c"}
    del graph["oiplab.sub.c"]
    assert find_cycle({k: v - {"oiplab.sub.c"} for k, v in graph.items()}) is None
