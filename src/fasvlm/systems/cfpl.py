"""CFPL system: L = L_ce + λ_ptm · L_ptm (maths in :mod:`fasvlm.models.cfpl`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..backbones import image_spec
from ..models.cfpl import CFPL, ptm_loss
from .common import ImageScoringSystem, SchedulerName, two_class_eval_output

__all__ = ["CFPLSystem"]


class CFPLSystem(ImageScoringSystem):
    """CFPL-FAS (CVPR 2024), from the paper and InstructFLIP's unofficial re-implementation.

    Args:
        clip: CLIP preset, local directory or hub id (CFPL: CLIP ViT-B/16).
        num_queries, num_heads: Q-Former queries (16) and heads.
        ptm_weight: weight of the prompt-text matching loss (1 in the re-implementation).
        mix_p, mix_alpha: style mixing probability 0.5 and Beta(0.1, 0.1).
        lr, weight_decay, scheduler, warmup_frac: InstructFLIP's re-run: AdamW, OneCycle max 1e-6, wd 1e-6.
    """

    def __init__(self, clip: str = "clip-vit-b16", num_queries: int = 16, num_heads: int = 8, ptm_weight: float = 1.0,
                 mix_p: float = 0.5, mix_alpha: float = 0.1, lr: float = 1e-6, weight_decay: float = 1e-6,
                 scheduler: SchedulerName = "onecycle", warmup_frac: float = 0.1):
        super().__init__()
        self.save_hyperparameters()
        self.model = CFPL(clip, num_queries, num_heads, mix_p, mix_alpha)
        self.image_spec = image_spec(clip)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """P(attack) for each image, (B,)."""
        return self.model(pixel_values)["logits"].float().softmax(-1)[:, 1]

    def loss_terms(self, batch: dict) -> dict[str, torch.Tensor]:
        out = self.model(batch["pixel_values"])
        ce = F.cross_entropy(out["logits"].float(), batch["label"])
        ptm = ptm_loss(*self.model.ptm_logits(out["t_content"], out["class_text"], batch["label"]))
        return {"loss": ce + self.hparams.ptm_weight * ptm, "ce": ce, "ptm": ptm}

    def eval_step(self, batch: dict, stage: str, dataloader_idx: int) -> dict:
        logits = self.model(batch["pixel_values"])["logits"].float()
        return two_class_eval_output(self, logits, batch, stage, dataloader_idx)
