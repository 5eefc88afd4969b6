"""Config layout: one paper config per method composed with one protocol of conf/data/ (merged through the real CLI),
every config headed by the command that runs it, no stale config paths in the docs, systems mirroring their models'
constructor arguments, ``__all__`` in every package ``__init__``."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import re
import typing
from pathlib import Path

import pytest
import yaml
from conftest import REPO

PAPER_CONFIGS = sorted((REPO / "conf").glob("*/paper.yaml"))
PROTOCOL_KEYS = {"sources", "targets", "val_sources"}
DOCS = [REPO / "README.md", REPO / "docs/design.md", REPO / "docker/README.md", REPO / "conf/slurm/README.md",
        REPO / "CHANGELOG.md"]
CONFIG_PATH = re.compile(r"conf/[\w./{},-]+\.yaml")


def _load(path: str | Path) -> dict:
    return yaml.safe_load((REPO / path).read_text()) or {}


def _header_pairs() -> set[tuple[str, str]]:
    """(paper config, protocol config) of every two-config command in the READMEs, docs and config headers."""
    texts = [p.read_text() for p in DOCS if p.exists()]
    texts += [p.read_text() for p in (REPO / "conf").rglob("*.yaml")]
    texts += [p.read_text() for p in (REPO / "conf/slurm").glob("*.sbatch")]
    pairs = set()
    for text in texts:
        for line in text.splitlines():
            papers = re.findall(r"--config (conf/\w+/paper\.yaml)", line)
            protocols = re.findall(r"--config (conf/data/\w+\.yaml)", line)
            pairs |= {(paper, protocol) for paper in papers for protocol in protocols}
    return pairs


PAIRS = sorted(_header_pairs())


def test_every_method_and_protocol_is_documented_as_a_pair():
    # the two paper configs and every protocol appear in at least one documented command
    assert {p for p, _ in PAIRS} == {str(p.relative_to(REPO)) for p in PAPER_CONFIGS} != set()
    assert {d for _, d in PAIRS} == {str(p.relative_to(REPO)) for p in (REPO / "conf/data").glob("*.yaml")}
    readme = (REPO / "README.md").read_text()
    for pair in [("conf/ifas/paper.yaml", f"conf/data/mcio_{t}.yaml") for t in "mcio"] + [
            ("conf/ifas/paper.yaml", "conf/data/one_to_eleven.yaml"),
            ("conf/instructflip/paper.yaml", "conf/data/unified.yaml")]:
        assert f"--config {pair[0]} --config {pair[1]}" in readme, pair


@pytest.mark.parametrize("path", PAPER_CONFIGS, ids=lambda p: p.parent.name)
def test_paper_config_writes_no_protocol(path):
    text = path.read_text()
    first = text.splitlines()[0]
    assert re.fullmatch(rf"# fasvlm fit --config {path.relative_to(REPO)} --config conf/data/\w+\.yaml", first), first
    conf = yaml.safe_load(text)
    assert conf["data"]["class_path"] == "fasvlm.data_modules.FASDataModule"
    assert not PROTOCOL_KEYS & set(conf["data"]["init_args"]), "protocols live in conf/data/ only"


def _print_config(*configs: str) -> dict:
    import contextlib
    import io

    from fasvlm.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exc:
        main(["fit", *[a for c in configs for a in ("--config", c)], "--print_config"])
    assert exc.value.code in (0, None)
    text = out.getvalue()
    return yaml.safe_load(text[text.index("seed_everything:"):])  # libraries may print on import


@pytest.mark.parametrize("paper,protocol", PAIRS, ids=[f"{Path(p).parent.name}+{Path(d).stem}" for p, d in PAIRS])
def test_paper_and_protocol_merge(paper, protocol, monkeypatch):
    """jsonargparse merges the two files key by key: the protocol's domains, the method's model/trainer/loader."""
    from fasvlm.data_modules import FASDataModule

    monkeypatch.chdir(REPO)
    monkeypatch.setattr("sys.argv", ["fasvlm"])  # the CLI's args only, not pytest's
    merged = _print_config(paper, protocol)
    method, data = _load(paper), _load(protocol)
    assert merged["seed_everything"] == method["seed_everything"]
    assert merged["model"]["class_path"] == method["model"]["class_path"]
    for key, value in method["model"]["init_args"].items():
        assert merged["model"]["init_args"][key] == value, key
    for key, value in method["trainer"].items():
        assert merged["trainer"][key] == value, key
    assert merged["data"]["class_path"] == data["data"]["class_path"]
    got, loader, domains = merged["data"]["init_args"], method["data"]["init_args"], data["data"]["init_args"]
    defaults = {k: p.default for k, p in inspect.signature(FASDataModule.__init__).parameters.items() if k != "self"}
    assert set(got) == set(defaults)
    for key in defaults:
        if key in PROTOCOL_KEYS:  # exactly the protocol file's domains, nothing inherited
            assert got[key] == domains.get(key), key
        elif key in loader:
            assert got[key] == loader[key], key
        elif key in domains:  # what the protocol names besides its domains (e.g. its SCF captions table)
            assert got[key] == domains[key], key
        else:
            assert got[key] == defaults[key], key


def _conf_paths(text: str) -> set[str]:
    paths = set()
    for found in CONFIG_PATH.findall(text):
        brace = re.search(r"\{([^}]*)\}", found)
        if brace:  # conf/data/mcio_{m,c,i,o}.yaml
            paths |= {found.replace(brace.group(0), alt) for alt in brace.group(1).split(",")}
        else:
            paths.add(found)
    return {p for p in paths if "<" not in p}


def test_documented_config_paths_exist():
    texts = {p: p.read_text() for p in DOCS if p.exists()}
    texts |= {p: p.read_text() for p in (REPO / "conf").rglob("*") if p.suffix in {".yaml", ".sbatch"}}
    texts |= {p: p.read_text() for p in (REPO / "src").rglob("*.py")}
    texts[REPO / "Makefile"] = (REPO / "Makefile").read_text()
    missing = {f"{p.relative_to(REPO)}: {c}" for p, t in texts.items() for c in _conf_paths(t)
               if not (REPO / c).exists() and p.name != "CHANGELOG.md"}
    assert not missing, sorted(missing)


@pytest.mark.parametrize("path", sorted((REPO / "conf").rglob("*.yaml")), ids=lambda p: str(p.relative_to(REPO)))
def test_config_starts_with_the_command_that_runs_it(path):
    first = path.read_text().splitlines()[0]
    assert re.match(r"# (fasvlm|make) ", first), first
    if not path.is_relative_to(REPO / "conf/caption"):  # caption configs: the config of a `fasvlm caption` step
        assert str(path.relative_to(REPO)) in first or first.startswith("# make "), first


# ------------------------------------------------------------------------------------- systems mirror their models

# Arguments of the system that its model does not take: optimisation, loss and the text/caption settings the system
# owns. Every other constructor argument of the system is the model's, with the same name, type and default.
SYSTEM_ONLY = {
    "ifas": {"use_scf", "captions", "caption_source", "loss", "alpha", "max_new_tokens", "lr", "weight_decay", "scheduler",
             "warmup_frac"},
    "instructflip": {"t5_dtype", "llm_free", "style_question", "style_seed", "loss_weights", "answer_questions", "lr",
                     "weight_decay", "scheduler", "warmup_frac"},
    "baseline": {"lr", "weight_decay", "scheduler", "warmup_frac"},
    "flip": {"simclr_weight", "mse_weight", "view_scale_min", "lr", "weight_decay", "scheduler", "warmup_frac"},
    "vitaf": {"cos_weight", "lr", "weight_decay", "scheduler", "warmup_frac"},
    "ssdg": {"image_size", "source_domains", "lambda_triplet", "lambda_adv", "margin", "grl_alpha", "lr", "weight_decay", "scheduler", "warmup_frac"},
    "safas": {"image_size", "source_domains", "supcon_weight", "temperature", "align_alpha", "align_epoch",
              "view_scale_min", "lr", "weight_decay", "scheduler", "warmup_frac"},
    "cfpl": {"ptm_weight", "lr", "weight_decay", "scheduler", "warmup_frac"},
}
PAIRS_OF_CLASSES = {
    "ifas": ("fasvlm.systems.ifas:IFASSystem", "fasvlm.models.ifas:IFAS"),
    "instructflip": ("fasvlm.systems.instructflip:InstructFLIPSystem", "fasvlm.models.instructflip:InstructFLIP"),
    "baseline": ("fasvlm.systems.baseline:BaselineSystem", "fasvlm.models.baseline:ViTClassifier"),
    "flip": ("fasvlm.systems.flip:FLIPSystem", "fasvlm.models.flip:FLIP"),
    "vitaf": ("fasvlm.systems.vitaf:ViTAFSystem", "fasvlm.models.vitaf:ViTAF"),
    "ssdg": ("fasvlm.systems.ssdg:SSDGSystem", "fasvlm.models.ssdg:SSDG"),
    "safas": ("fasvlm.systems.safas:SAFASSystem", "fasvlm.models.safas:SAFAS"),
    "cfpl": ("fasvlm.systems.cfpl:CFPLSystem", "fasvlm.models.cfpl:CFPL"),
}


def _class(path: str) -> type:
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def _mirror_problems(system: type, model: type, system_only: set[str]) -> list[str]:
    """Differences between a system's constructor and its model's (names, resolved types, defaults)."""
    sys_params = dict(inspect.signature(system.__init__).parameters)
    model_params = dict(inspect.signature(model.__init__).parameters)
    sys_hints, model_hints = typing.get_type_hints(system.__init__), typing.get_type_hints(model.__init__)
    problems = [f"{n}: listed as system-only but the model takes it" for n in system_only & set(model_params)]
    problems += [f"{n}: system-only, add it to SYSTEM_ONLY or to the model" for n in
                 set(sys_params) - set(model_params) - system_only - {"self"}]
    problems += [f"{n}: the model takes it, the system does not" for n in set(model_params) - set(sys_params)]
    for name in (set(sys_params) & set(model_params)) - {"self"}:
        if sys_params[name].default != model_params[name].default:
            problems.append(f"{name}: default {sys_params[name].default!r} != {model_params[name].default!r}")
        if sys_hints.get(name) != model_hints.get(name):
            problems.append(f"{name}: type {sys_hints.get(name)} != {model_hints.get(name)}")
    return sorted(problems)


@pytest.mark.parametrize("method", sorted(PAIRS_OF_CLASSES))
def test_system_mirrors_model_arguments(method):
    system, model = (_class(p) for p in PAIRS_OF_CLASSES[method])
    assert _mirror_problems(system, model, SYSTEM_ONLY[method]) == []


def test_mirror_check_finds_each_kind_of_drift():
    class Model:
        def __init__(self, width: int = 32, depth: int = 2, heads: int = 4):
            pass

    class System:
        def __init__(self, width: int = 64, depth: float = 2, lr: float = 1e-3, extra: int = 0):
            pass

    problems = _mirror_problems(System, Model, {"lr"})
    assert problems == ["depth: type <class 'float'> != <class 'int'>", "extra: system-only, add it to SYSTEM_ONLY or "
                        "to the model", "heads: the model takes it, the system does not", "width: default 64 != 32"]


# ------------------------------------------------------------------------------------------- __all__ in packages

PACKAGE_INITS = sorted([*(REPO / "src/fasvlm").rglob("__init__.py"), *(REPO / "data_modules").rglob("__init__.py"),
                        *(REPO / "callbacks").rglob("__init__.py")])


def _module_name(init: Path) -> str:
    rel = init.parent.relative_to(REPO)
    parts = rel.parts[1:] if rel.parts[0] == "src" else ("fasvlm", *rel.parts)
    return ".".join(parts)


@pytest.mark.parametrize("init", PACKAGE_INITS, ids=_module_name)
def test_package_init_declares_all(init):
    tree = ast.parse(init.read_text())
    assert ast.get_docstring(tree), f"{init}: a docstring saying what the package holds"
    declared = [n for n in tree.body if isinstance(n, (ast.Assign, ast.AnnAssign))
                and any(getattr(t, "id", None) == "__all__" for t in getattr(n, "targets", [getattr(n, "target", None)]))]
    assert declared, f"{init}: no __all__"
    package = _module_name(init)
    module = importlib.import_module(package)
    for name in module.__all__:  # an attribute, or a submodule (``from package import *`` imports those)
        found = getattr(module, name, None) is not None or importlib.util.find_spec(f"{package}.{name}") is not None
        assert found, f"{package}.__all__ names {name!r}, which is neither an attribute nor a submodule"
