"""The architecture holds: the layer contract of pyproject.toml ([tool.importlinter]) and no import cycle.

Both read the source of the `hamr` package this test imports (the checkout's ``src`` when it
is first on the path), with imports inside functions counted as imports.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import hamr

ROOT = Path(__file__).resolve().parents[1]
SRC = Path(hamr.__file__).resolve().parents[1]

#: Packages whose import cycles are tolerated: none.
CYCLES_ALLOWED_IN = ()


def test_layer_contract():
    pytest.importorskip("importlinter", reason="import-linter is not installed (pip install -e '.[test]')")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            "from importlinter.cli import lint_imports_command; lint_imports_command()",
            "--no-cache",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, f"lint-imports: a layer contract is broken\n{run.stdout[-6000:]}{run.stderr[-2000:]}"
    assert "0 broken" in run.stdout


def _cycles(graph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return sorted(found)


def _under(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_no_import_cycles():
    grimp = pytest.importorskip("grimp", reason="grimp (installed with import-linter) is not installed")
    sys.path.insert(0, str(SRC))
    try:
        graph = grimp.build_graph("hamr", cache_dir=None, exclude_type_checking_imports=True)
    finally:
        sys.path.remove(str(SRC))
    cycles = _cycles(graph)
    described = "\n".join(" <-> ".join(c) for c in cycles)
    outside = [c for c in cycles if not all(_under(m, CYCLES_ALLOWED_IN) for m in c)]
    assert not outside, f"import cycles (imports inside functions count):\n{described}"
    if cycles:
        print(f"cycles left in {', '.join(CYCLES_ALLOWED_IN)}:\n{described}")
