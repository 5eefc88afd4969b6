"""Baseline system: fine-tunes a CLIP/ViT binary classifier with cross entropy."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..backbones import image_spec
from ..models.baseline import ViTClassifier
from .common import ImageScoringSystem, SchedulerName, eval_output, from_pretrained, save_pretrained

__all__ = ["BaselineSystem"]


class BaselineSystem(ImageScoringSystem):
    """CLIP/ViT binary classifier (the papers' "ViT" rows).

    Args:
        vision: vision backbone: preset (``tiny``, ``small``, ``clip-vit-b16``, ``clip-vit-l14``), local directory or
            Hugging Face id.
        dropout: dropout before the linear head.
        lr, weight_decay, scheduler, warmup_frac: AdamW and its per-step schedule.
    """

    def __init__(self, vision: str = "clip-vit-b16", dropout: float = 0.0, lr: float = 1e-5,
                 weight_decay: float = 0.05, scheduler: SchedulerName = "cosine", warmup_frac: float = 0.1):
        super().__init__()
        self.save_hyperparameters()
        self.model = ViTClassifier(vision, dropout)
        self.image_spec = image_spec(vision)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """P(attack) for each image, (B,)."""
        return self.model(pixel_values).softmax(-1)[:, 1]

    def _shared_step(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(batch["pixel_values"])  # (B, 2)
        loss = F.cross_entropy(logits.float(), batch["label"])
        return loss, logits.float().softmax(-1)[:, 1]

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, _ = self._shared_step(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["label"]))
        return loss

    def eval_step(self, batch: dict, stage: str, dataloader_idx: int) -> dict:
        loss, scores = self._shared_step(batch)
        if dataloader_idx == 0:  # the source loader: its loss is comparable across runs
            self.log(f"{stage}/loss", loss, batch_size=len(batch["label"]), add_dataloader_idx=False, sync_dist=True)
        return eval_output(scores, batch)


    def save_pretrained(self, directory, *, threshold: float | None = None):
        """Hugging Face style directory: model.safetensors + config.json (``fasvlm.systems.common.save_pretrained``)."""
        return save_pretrained(self, directory, threshold=threshold)

    @classmethod
    def from_pretrained(cls, directory):
        """The system saved by :meth:`save_pretrained` or ``fasvlm export`` (``fasvlm.systems.common.from_pretrained``)."""
        return from_pretrained(directory, expected=cls)
