"""ViTAF system: L = L_ce + λ · L_cos (ensemble-adapter cosine loss; maths in :mod:`fasvlm.models.vitaf`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..backbones import image_spec
from ..models.vitaf import ViTAF
from .common import ImageScoringSystem, SchedulerName, two_class_eval_output

__all__ = ["ViTAFSystem"]


class ViTAFSystem(ImageScoringSystem):
    """ViTAF (ECCV 2022), zero-shot (sources only).

    Args:
        vision: vision backbone preset, local directory or hub id (ViTAF: ViT-B/16, 224 px).
        num_adapters, bottleneck: ensemble adapters per block (2) and their width.
        gamma, beta: initial FWT standard deviations (config.py: 0.3 / 0.5 for MCIO, 0.1 / 0.1 for WCS).
        cos_weight: λ of the adapters' cosine loss (config.py ``weight``: 1 for M and O, 0.03 for C and I).
        freeze_backbone: train only adapters, FWT and head (True) or the whole ViT.
        embed_dim, dropout: the SSDG-style head's bottleneck width 512 and dropout 0.5.
        lr, weight_decay, scheduler, warmup_frac: ViTAF: Adam 1e-4, wd 1e-6.
    """

    def __init__(self, vision: str = "clip-vit-b16", num_adapters: int = 2, bottleneck: int = 64, gamma: float = 0.3,
                 beta: float = 0.5, cos_weight: float = 1.0, freeze_backbone: bool = True, embed_dim: int = 512,
                 dropout: float = 0.5, lr: float = 1e-4,
                 weight_decay: float = 1e-6, scheduler: SchedulerName = "constant", warmup_frac: float = 0.1):
        super().__init__()
        self.save_hyperparameters()
        self.model = ViTAF(vision, num_adapters, bottleneck, gamma, beta, freeze_backbone, embed_dim, dropout)
        self.image_spec = image_spec(vision)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """P(attack) for each image, (B,)."""
        return self.model(pixel_values)[0].float().softmax(-1)[:, 1]

    def loss_terms(self, batch: dict) -> dict[str, torch.Tensor]:
        logits, cos = self.model(batch["pixel_values"])
        ce = F.cross_entropy(logits.float(), batch["label"])
        return {"loss": ce + self.hparams.cos_weight * cos, "ce": ce, "cos": cos}

    def eval_step(self, batch: dict, stage: str, dataloader_idx: int) -> dict:
        logits = self.model(batch["pixel_values"])[0].float()
        return two_class_eval_output(self, logits, batch, stage, dataloader_idx)
