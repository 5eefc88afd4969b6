"""Plain ``nn.Module``s (no Lightning): one file per method."""

from .baseline import ViTClassifier
from .cfpl import CFPL
from .flip import FLIP
from .ifas import IFAS
from .instructflip import InstructFLIP
from .qformer import QFormer
from .safas import SAFAS
from .ssdg import SSDG
from .vitaf import ViTAF

__all__ = ["ViTClassifier", "IFAS", "InstructFLIP", "QFormer", "FLIP", "ViTAF", "SSDG", "SAFAS", "CFPL"]
