"""CFPL system: L = L_ce + λ_ptm · L_ptm (maths in :mod:`fasvlm.models.cfpl`)."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F

from ..backbones import image_spec
from ..models.cfpl import CFPL, ptm_loss
from .common import SchedulerName, configure_adamw, two_class_eval_output

__all__ = ["CFPLSystem"]


class CFPLSystem(L.LightningModule):
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

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        terms = self.loss_terms(batch)
        n = len(batch["label"])
        self.log("train/loss", terms["loss"], prog_bar=True, batch_size=n)
        self.log_dict({f"train/{k}": v for k, v in terms.items() if k != "loss"}, batch_size=n)
        return terms["loss"]

    def _eval_step(self, batch: dict, stage: str, dataloader_idx: int) -> dict | None:
        if len(batch["label"]) == 0:
            return None
        logits = self.model(batch["pixel_values"])["logits"].float()
        return two_class_eval_output(self, logits, batch, stage, dataloader_idx)

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict | None:
        return self._eval_step(batch, "val", dataloader_idx)

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict | None:
        return self._eval_step(batch, "test", dataloader_idx)

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict:
        return {"sample_id": batch["sample_id"], "score": self(batch["pixel_values"]).float().cpu()}

    def configure_optimizers(self):
        hp = self.hparams
        return configure_adamw(self, hp.lr, hp.weight_decay, hp.scheduler, hp.warmup_frac)
