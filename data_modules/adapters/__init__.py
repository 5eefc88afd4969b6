"""Dataset adapters: each reads one public FAS dataset from its official on-disk layout.

An adapter is a module in this package that defines:

- ``NAME``: the registry name (``fasvlm prepare --dataset NAME``),
- ``DESCRIPTION``: one line for ``--help``,
- ``MEDIA``: ``"image"`` or ``"video"`` (or ``"frames"`` for releases shipped as per-video frame folders),
- ``EXPECTED_LAYOUT``: the official layout as a short tree, shown in errors,
- ``index(root: Path, *, domain=None, <typed keyword options>) -> IndexResult``: lists the release **without opening
  media**; its keyword parameters are the adapter's options (``--adapter-option KEY=VALUE``, ``DomainSpec.options``),
  and a key it does not take is an error that lists them (:func:`check_options`).

For video datasets ``index`` yields one record per video with ``frame = -1``; ``fasvlm prepare`` later expands it into
frame records. Live/attack and the attack type always come from the dataset's own naming convention; list files only
pick the split or protocol (their label polarity differs between files).

The registry is a static table (name -> module) so that adapters import lazily and a missing optional dependency of
one adapter never breaks the others.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from ..record import SampleRecord

__all__ = ["IndexResult", "LayoutError", "ADAPTER_MODULES", "get_adapter", "adapter_names", "index_dataset", "index_options",
           "check_options", "search_dirs"]

# registry name -> module in this package
ADAPTER_MODULES: dict[str, str] = {
    "celeba_spoof": "celeba_spoof",
    "msu_mfsd": "msu_mfsd",
    "casia_fasd": "casia_fasd",
    "replay_attack": "replay_attack",
    "oulu_npu": "oulu_npu",
    "siw": "siw",
    "rose_youtu": "rose_youtu",
    "hkbu_mars": "hkbu_mars",
    "wmca": "wmca",
    "siw_m_v2": "siw_m_v2",
    "casia_surf_3dmask": "casia_surf_3dmask",
    "hifimask": "hifimask",
    "casia_cefa": "casia_cefa",
    "casia_surf": "casia_surf",
    "padisi_face": "padisi_face",
}


class LayoutError(FileNotFoundError):
    """The directory given is not the dataset's official layout. The message names the path and the expected tree."""

    def __init__(self, dataset: str, path: Path | str, problem: str, expected_layout: str):
        self.dataset, self.path = dataset, Path(path)
        super().__init__(
            f"{dataset}: {problem} (at {path}).\nExpected the official layout:\n{expected_layout.rstrip()}\n"
            f"Pass --root pointing at the directory that contains this tree."
        )


@dataclass
class IndexResult:
    """What an adapter found: the records, files that match no naming rule (reported, never guessed), and ``report``:
    findings of the index that the user must see (``fasvlm prepare`` prints them and writes them to ``summary.json``
    under ``"index_report"``), e.g. ``{"unavailable_protocols": {"3": "why"}, "missing_images": {"count": n,
    "examples": [...]}, "conflicts": {...}}``. Values are JSON-serialisable."""

    records: list[SampleRecord]
    unknown: list[str] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)


def adapter_names() -> list[str]:
    return list(ADAPTER_MODULES)


def get_adapter(name: str) -> ModuleType:
    """Import and return the adapter module for ``name``; unknown names raise an error listing the valid ones."""
    if name not in ADAPTER_MODULES:
        raise KeyError(f"unknown dataset {name!r}; valid names: {', '.join(ADAPTER_MODULES)}")
    try:
        return importlib.import_module(f"{__name__}.{ADAPTER_MODULES[name]}")
    except ModuleNotFoundError as err:
        if err.name and err.name.endswith(ADAPTER_MODULES[name]):
            raise NotImplementedError(f"dataset adapter {name!r} is registered but not implemented yet") from err
        raise


def index_options(module: ModuleType) -> dict[str, inspect.Parameter]:
    """The keyword options of an adapter's ``index(root, *, ...)``: name -> parameter (default and annotation)."""
    params = list(inspect.signature(module.index).parameters.values())[1:]
    return {p.name: p for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def check_options(adapter: str | ModuleType, options: Mapping[str, object]) -> None:
    """Raise ``TypeError`` naming the valid options when ``options`` holds a key that the adapter's ``index()``
    does not take (``--adapter-option`` of ``fasvlm prepare``, ``DomainSpec.options`` of the data module).
    ``adapter``: a registered name or an adapter module."""
    module = get_adapter(adapter) if isinstance(adapter, str) else adapter
    name = getattr(module, "NAME", module.__name__)
    valid = index_options(module)
    bad = sorted(set(options) - set(valid))
    if bad:
        listed = ", ".join(f"{k}={p.default!r}" for k, p in valid.items()) or "none"
        raise TypeError(f"{name}: unknown adapter option(s) {', '.join(map(repr, bad))}; valid options "
                        f"(with defaults): {listed}")


def index_dataset(name: str, root: str | Path, **options) -> IndexResult:
    """Index the release of dataset ``name`` found at ``root`` (no media is opened); an option the adapter does not
    take is an error listing the valid ones."""
    root = Path(root)
    module = get_adapter(name)
    check_options(name, options)
    if not root.is_dir():
        raise LayoutError(name, root, "directory does not exist", module.EXPECTED_LAYOUT)
    return module.index(root, **options)


def search_dirs(root: Path, pick: Callable[[Path, list[Path]], Path | None], depth: int = 2) -> Path | None:
    """Breadth-first over ``root`` and its subdirectories down to ``depth`` levels: the first non-None
    ``pick(directory, sorted_child_directories)``. Releases are often unpacked one or two folders deeper than the
    folder a user passes; adapters use this to find their data folder without guessing further."""
    frontier = [root]
    for _ in range(depth + 1):
        nxt = []
        for d in frontier:
            try:
                children = sorted(p for p in d.iterdir() if p.is_dir())
            except OSError:
                continue
            found = pick(d, children)
            if found is not None:
                return found
            nxt.extend(children)
        frontier = nxt
    return None
