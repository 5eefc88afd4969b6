"""Imports run one way (docs/design.md, "Import rules"), checked with import-linter against the built wheel.

The contracts live in pyproject.toml (``[tool.importlinter]``). An editable install maps ``fasvlm.data_modules`` and
``fasvlm.callbacks`` to top-level folders through a finder that import-linter cannot follow, so the contracts run on
the wheel installed into an empty directory, where all three source roots are ordinary subpackages; a test checks that
import-linter's graph holds every module of every root. Each contract is then shown to fail on a planted violation.

Two rules import-linter cannot express are checked on the source tree with ``ast``: no ``from x import _private``
across the project's files, and no ``obj._method()`` call on a private method defined in another project file.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from conftest import REPO

ROOTS = {REPO / "src" / "fasvlm": "fasvlm", REPO / "data_modules": "fasvlm.data_modules",
         REPO / "callbacks": "fasvlm.callbacks"}
CONTRACTS = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]

# contract id -> (file under site/fasvlm, an import line that breaks exactly that rule)
PLANTED = {
    "data-modules": ("data_modules/record.py", "import fasvlm.metrics"),
    "text": ("text/instructions.py", "import fasvlm.backbones"),
    "pure-bottom": ("losses.py", "import fasvlm.data_modules.taxonomy"),
    "pure-bottom-independent": ("perf.py", "import fasvlm.metrics"),
    "backbones": ("backbones.py", "import fasvlm.data_modules.record"),
    "models": ("models/layers.py", "import lightning"),
    "systems": ("systems/common.py", "import fasvlm.callbacks.metrics"),
    "callbacks": ("callbacks/rng.py", "import fasvlm.data_modules.record"),
    "cli-only": ("systems/common.py", "import fasvlm.tools.bench"),
    "top-independent": ("tools/export.py", "import fasvlm.captioning.stages"),
}


def _modules() -> set[str]:
    """Every module of the three source roots, by its installed dotted name."""
    out = set()
    for root, name in ROOTS.items():
        for path in root.rglob("*.py"):
            rel = path.relative_to(root).with_suffix("").parts
            if rel[-1] == "__init__":
                rel = rel[:-1]
            out.add(".".join((name, *rel)))
    return out


def _lint(site: Path, cwd: Path) -> subprocess.CompletedProcess:
    lint = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(lint), "--config", str(REPO / "pyproject.toml"), "--no-cache"], cwd=cwd,
                          env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True)


def test_contracts_hold_on_the_wheel(wheel_site, tmp_path):
    out = _lint(wheel_site, tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in out.stdout


def test_import_graph_sees_every_module_of_all_three_roots(wheel_site, tmp_path):
    code = ("import sys, grimp; sys.path.insert(0, sys.argv[1]); "
            "print('\\n'.join(sorted(grimp.build_graph('fasvlm', cache_dir=None).modules)))")
    out = subprocess.run([sys.executable, "-c", code, str(wheel_site)], cwd=tmp_path, capture_output=True, text=True,
                         check=True)
    seen = set(out.stdout.split())
    expected = _modules()
    assert any(m.startswith("fasvlm.data_modules.") for m in expected)
    assert any(m.startswith("fasvlm.callbacks.") for m in expected)
    assert expected <= seen, sorted(expected - seen)


def test_every_top_level_module_is_under_a_contract():
    named = set()
    for contract in CONTRACTS:
        for key in ("source_modules", "forbidden_modules", "modules"):
            named.update(m for m in contract.get(key, []) if m.startswith("fasvlm."))
    top = {".".join(m.split(".")[:2]) for m in _modules() if m != "fasvlm"}
    assert top - named <= {"fasvlm.cli"}, sorted(top - named)  # cli sits on top of everything; nothing imports it
    assert {c["id"] for c in CONTRACTS} == set(PLANTED)


@pytest.mark.parametrize("contract_id", sorted(PLANTED))
def test_each_contract_fails_on_a_planted_violation(wheel_site, tmp_path, contract_id):
    site = tmp_path / "site"
    shutil.copytree(wheel_site / "fasvlm", site / "fasvlm")
    file, line = PLANTED[contract_id]
    path = site / "fasvlm" / file
    path.write_text(path.read_text() + f"\n{line}  # planted violation\n")
    out = _lint(site, tmp_path)
    assert out.returncode != 0
    name = next(c["name"] for c in CONTRACTS if c["id"] == contract_id)
    assert f"{name} BROKEN" in out.stdout, out.stdout


# ---------------------------------------------------------------------------------------------------------------------
# private names across files


def _sources() -> dict[Path, ast.Module]:
    return {p: ast.parse(p.read_text(), str(p)) for root in ROOTS for p in root.rglob("*.py")}


def private_imports(trees: dict[Path, ast.Module]) -> list[str]:
    """``from <project module> import _name`` anywhere (a private name taken across files)."""
    bad = []
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("fasvlm")):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        bad.append(f"{path.relative_to(REPO)}:{node.lineno} imports {alias.name}")
    return bad


def foreign_private_calls(trees: dict[Path, ast.Module]) -> list[str]:
    """``obj._m(...)`` where ``_m`` is a method defined in another project file and not in this one (self/cls/super
    receivers are the file's own business)."""
    defined: dict[Path, set[str]] = {}
    for path, tree in trees.items():
        defined[path] = {f.name for c in ast.walk(tree) if isinstance(c, ast.ClassDef) for f in c.body
                         if isinstance(f, ast.FunctionDef) and f.name.startswith("_") and not f.name.startswith("__")}
    everywhere = set().union(*defined.values())
    bad = []
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            name, recv = node.func.attr, node.func.value
            if not name.startswith("_") or name.startswith("__") or name in defined[path] or name not in everywhere:
                continue
            if isinstance(recv, ast.Name) and recv.id in ("self", "cls"):
                continue
            if isinstance(recv, ast.Call) and isinstance(recv.func, ast.Name) and recv.func.id == "super":
                continue
            bad.append(f"{path.relative_to(REPO)}:{node.lineno} calls .{name}()")
    return bad


def test_no_private_names_across_files():
    trees = _sources()
    assert private_imports(trees) == []
    assert foreign_private_calls(trees) == []


def test_private_name_checks_catch_planted_violations():
    trees = _sources()
    some = REPO / "src" / "fasvlm" / "losses.py"
    planted = dict(trees)
    planted[some] = ast.parse(some.read_text() + "\nfrom fasvlm.metrics import _planted\n"
                              "def f(module):\n    return module._frozen_features(1, 2)\n")
    assert any("_planted" in m for m in private_imports(planted))
    assert any("_frozen_features" in m for m in foreign_private_calls(planted))
