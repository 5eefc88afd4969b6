"""LightningModules: losses, optimisation and logging around the models in :mod:`fasvlm.models`.

``SYSTEMS`` maps each system's class path (as LightningCLI writes it in configs and checkpoints) to the class: the
registry that exports and other files read from disk may name (nothing outside it is imported from a file). The
systems are imported on first access (``from fasvlm.systems import SYSTEMS``); add a system to ``_WHERE``.
"""

from __future__ import annotations

import importlib

__all__ = ["BaselineSystem", "CLIPPretrainSystem", "IFASSystem", "InstructFLIPSystem", "SYSTEMS"]

# class name -> module under fasvlm.systems
_WHERE = {"BaselineSystem": "baseline", "CLIPPretrainSystem": "clip_pretrain", "IFASSystem": "ifas",
          "InstructFLIPSystem": "instructflip"}
_REGISTRY: dict[str, type] = {}


def _systems() -> dict[str, type]:
    if not _REGISTRY:
        for name, module in _WHERE.items():
            _REGISTRY[f"{__name__}.{module}.{name}"] = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    return _REGISTRY


def __getattr__(name: str):
    if name == "SYSTEMS":
        return _systems()
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
