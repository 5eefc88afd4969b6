"""FLIP system (FLIP-V, FLIP-IT, FLIP-MCL): cross entropy, plus SimCLR and MCL consistency for FLIP-MCL
(maths in :mod:`fasvlm.models.flip`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..backbones import image_spec
from ..models.flip import FLIP, FLIPVariant
from ..models.views import random_view
from .common import ImageScoringSystem, SchedulerName, two_class_eval_output

__all__ = ["FLIPSystem"]


class FLIPSystem(ImageScoringSystem):
    """FLIP (ICCV 2023).

    Args:
        clip: CLIP preset (``tiny``), local directory or hub id (paper: OpenAI CLIP ViT-B/16, fully fine-tuned).
        variant: ``v`` (FLIP-V), ``it`` (FLIP-IT) or ``mcl`` (FLIP-MCL).
        simclr_weight, mse_weight: FLIP-MCL's loss weights (1.0, 1.0 in ``train_flip_mcl.py``).
        view_scale_min: smallest crop area of the SimCLR views (RandomResizedCrop scale 0.08).
        ssl_hidden, ssl_dim: FLIP-MCL's SimCLR MLP widths (4096, 256).
        embed_dim, dropout: FLIP-V's bottleneck width 512 and dropout 0.5.
        lr, weight_decay, scheduler, warmup_frac: FLIP: Adam 1e-6, wd 1e-6, constant.
    """

    def __init__(self, clip: str = "tiny", variant: FLIPVariant = "it", simclr_weight: float = 1.0,
                 mse_weight: float = 1.0, view_scale_min: float = 0.08, ssl_hidden: int = 4096, ssl_dim: int = 256,
                 embed_dim: int = 512, dropout: float = 0.5, lr: float = 1e-6, weight_decay: float = 1e-6,
                 scheduler: SchedulerName = "constant", warmup_frac: float = 0.1):
        super().__init__()
        self.save_hyperparameters()
        self.model = FLIP(clip, variant, ssl_hidden, ssl_dim, embed_dim, dropout)
        self.image_spec = image_spec(clip)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """P(attack) for each image, (B,)."""
        return self.model(pixel_values).float().softmax(-1)[:, 1]

    def loss_terms(self, batch: dict, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        hp = self.hparams
        x = batch["pixel_values"]
        ce = F.cross_entropy(self.model(x).float(), batch["label"])
        if hp.variant != "mcl":
            return {"loss": ce, "ce": ce}
        views = [random_view(x, scale=(hp.view_scale_min, 1.0), jitter=0.4, p_jitter=0.8, p_gray=0.2,
                             generator=generator) for _ in range(2)]
        extra = self.model.mcl_terms(*views, generator=generator)
        loss = ce + hp.simclr_weight * extra["simclr"] + hp.mse_weight * extra["mse"]
        return {"loss": loss, "ce": ce, **extra}

    def eval_step(self, batch: dict, stage: str, dataloader_idx: int) -> dict:
        logits = self.model(batch["pixel_values"]).float()
        return two_class_eval_output(self, logits, batch, stage, dataloader_idx)
