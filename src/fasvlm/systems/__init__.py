"""LightningModules: losses, optimisation and logging around the models in :mod:`fasvlm.models`.

``SYSTEMS`` is the registry of every system by its class path: the only classes that checkpoints, exports and
``fasvlm predict`` may rebuild from a class path read from a file (:func:`system_class`).
"""

import importlib

__all__ = ["BaselineSystem", "CFPLSystem", "CLIPPretrainSystem", "FLIPSystem", "IFASSystem", "InstructFLIPSystem",
           "SAFASSystem", "SSDGSystem", "ViTAFSystem", "SYSTEMS", "system_class"]

_WHERE = {"BaselineSystem": "baseline", "CLIPPretrainSystem": "clip_pretrain", "IFASSystem": "ifas",
          "InstructFLIPSystem": "instructflip", "FLIPSystem": "flip", "ViTAFSystem": "vitaf", "SSDGSystem": "ssdg",
          "SAFASSystem": "safas", "CFPLSystem": "cfpl"}

# class path -> class name (the class is imported on first use)
SYSTEMS: dict[str, str] = {f"{__name__}.{module}.{name}": name for name, module in _WHERE.items()}


def system_class(class_path: str) -> type:
    """The system class of a registered class path; anything else is an error listing the registered ones (a class
    path read from a checkpoint or an export is never imported as such)."""
    if class_path not in SYSTEMS:
        raise ValueError(f"class path {class_path!r} is not a registered fasvlm system; valid: "
                         f"{', '.join(sorted(SYSTEMS))}")
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
