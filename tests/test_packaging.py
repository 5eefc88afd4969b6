"""The wheel contains the mapped packages (data_modules/ and callbacks/ install as fasvlm subpackages)."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO

# Every subpackage of the project, mapped or not; the list must follow the source tree (checked below).
SUBPACKAGES = ["fasvlm.models", "fasvlm.systems", "fasvlm.text", "fasvlm.captioning", "fasvlm.tools",
               "fasvlm.data_modules", "fasvlm.data_modules.adapters", "fasvlm.data_modules.synthetic",
               "fasvlm.data_modules.synthetic.releases", "fasvlm.callbacks"]


def _source_packages() -> set[str]:
    """Every directory with an __init__.py under the three source roots, as a dotted package name."""
    roots = {REPO / "src" / "fasvlm": "fasvlm", REPO / "data_modules": "fasvlm.data_modules",
             REPO / "callbacks": "fasvlm.callbacks"}
    out = set()
    for root, name in roots.items():
        for init in root.rglob("__init__.py"):
            rel = init.parent.relative_to(root).parts
            out.add(".".join((name, *rel)))
    return out - {"fasvlm"}


def test_subpackage_list_follows_the_source_tree():
    assert set(SUBPACKAGES) == _source_packages()


def test_wheel_contains_and_imports_mapped_packages(wheel_site, tmp_path):
    target = wheel_site
    assert (target / "fasvlm/data_modules/datamodule.py").is_file()
    assert (target / "fasvlm/callbacks/data.py").is_file()
    assert (target / "fasvlm/data_modules/adapters/celeba_spoof.py").is_file()
    assert (target / "fasvlm/captioning/scf.py").is_file()
    code = (
        "import importlib, sys; sys.path.insert(0, sys.argv[1]);"
        f"mods = [importlib.import_module(m) for m in {SUBPACKAGES!r}];"
        "bad = [m.__name__ for m in mods if not m.__file__.startswith(sys.argv[1])];"
        "assert not bad, bad; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code, str(target)], check=True, capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.stdout.strip() == "ok"


def test_editable_install_imports_mapped_packages():
    import fasvlm.callbacks
    import fasvlm.data_modules

    assert fasvlm.data_modules.__file__.startswith(str(REPO / "data_modules"))
    assert fasvlm.callbacks.__file__.startswith(str(REPO / "callbacks"))
