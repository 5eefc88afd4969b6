"""LightningModules: losses, optimisation and logging around the models in :mod:`fasvlm.models`."""

__all__ = ["BaselineSystem", "CLIPPretrainSystem", "IFASSystem", "InstructFLIPSystem"]

_WHERE = {"BaselineSystem": "baseline", "CLIPPretrainSystem": "clip_pretrain", "IFASSystem": "ifas", "InstructFLIPSystem": "instructflip"}


def __getattr__(name: str):
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
