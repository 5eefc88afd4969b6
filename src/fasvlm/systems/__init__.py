"""LightningModules: losses, optimisation and logging around the models in :mod:`fasvlm.models`.

``SYSTEMS`` is the registry of every system, class path -> class: the only classes ``fasvlm export`` / ``predict``
rebuild from a class path read from a checkpoint or export directory.
"""

from .baseline import BaselineSystem
from .cfpl import CFPLSystem
from .clip_pretrain import CLIPPretrainSystem
from .flip import FLIPSystem
from .ifas import IFASSystem
from .instructflip import InstructFLIPSystem
from .safas import SAFASSystem
from .ssdg import SSDGSystem
from .vitaf import ViTAFSystem

__all__ = ["SYSTEMS", "BaselineSystem", "CFPLSystem", "CLIPPretrainSystem", "FLIPSystem", "IFASSystem",
           "InstructFLIPSystem", "SAFASSystem", "SSDGSystem", "ViTAFSystem"]

SYSTEMS: dict[str, type] = {
    f"{cls.__module__}.{cls.__name__}": cls
    for cls in (BaselineSystem, CLIPPretrainSystem, IFASSystem, InstructFLIPSystem, FLIPSystem, ViTAFSystem,
                SSDGSystem, SAFASSystem, CFPLSystem)
}
