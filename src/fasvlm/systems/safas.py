"""SA-FAS system: per-domain BCE + 0.1 · SupCon on two views, hyperplane alignment after each step
(maths in :mod:`fasvlm.models.safas`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..backbones import IMAGENET_MEAN, IMAGENET_STD, ImageSpec
from ..models.safas import SAFAS, hyperplane_align, supcon_loss
from ..models.views import random_view
from .common import ImageScoringSystem, SchedulerName, eval_output
from .ssdg import domain_ids, source_domain_names

__all__ = ["SAFASSystem"]


class SAFASSystem(ImageScoringSystem):
    """SA-FAS (CVPR 2023) on a ResNet-18.

    Args:
        resnet, image_size, num_domains, source_domains: as :class:`~fasvlm.systems.ssdg.SSDGSystem` (SA-FAS: 256 px).
        supcon_weight, temperature: SupCon weight 0.1 and τ 0.1 (``train.py`` defaults).
        align_alpha, align_epoch: alignment momentum 0.995 from epoch ``align_epoch`` on (paper code: 20 of 100).
        view_scale_min: smallest crop area of the two views (RandomResizedCrop scale 0.2).
    """

    def __init__(self, resnet: str = "resnet18", image_size: int = 256, num_domains: int = 3,
                 source_domains: list[str] | None = None, supcon_weight: float = 0.1, temperature: float = 0.1,
                 align_alpha: float = 0.995, align_epoch: int = 20, view_scale_min: float = 0.2, lr: float = 5e-6,
                 weight_decay: float = 5e-4, scheduler: SchedulerName = "onecycle", warmup_frac: float = 0.1):
        super().__init__()
        self.save_hyperparameters()
        self.model = SAFAS(resnet, num_domains)
        self.image_spec = ImageSpec(size=image_size, mean=IMAGENET_MEAN, std=IMAGENET_STD)
        self.domains: list[str] | None = list(source_domains) if source_domains else None

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self.domains = source_domain_names(self, self.hparams.source_domains, self.hparams.num_domains)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """P(attack) for each image (mean of the domain heads' sigmoids), (B,)."""
        return self.model(pixel_values)

    def loss_terms(self, batch: dict, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        hp = self.hparams
        x, label = batch["pixel_values"], batch["label"]
        dom = domain_ids(batch["domain"], self.domains or [], label.device)
        v1 = random_view(x, scale=(hp.view_scale_min, 1.0), generator=generator)
        v2 = random_view(x, scale=(hp.view_scale_min, 1.0), generator=generator)
        feats = self.model.features(torch.cat([v1, v2]))  # (2B, C)
        logits = self.model.domain_logits(feats).float()  # (2B, K)
        dom2, label2 = dom.repeat(2), label.repeat(2).float()
        own = logits.gather(1, dom2[:, None])[:, 0]  # each sample scored by its own domain's head
        bce = torch.stack([F.binary_cross_entropy_with_logits(own[dom2 == d], label2[dom2 == d])
                           for d in dom2.unique()]).mean()
        f1, f2 = F.normalize(feats.float(), dim=1).chunk(2)
        sup = supcon_loss(torch.stack([f1, f2], 1), dom * 10 + label, hp.temperature)
        return {"loss": bce + hp.supcon_weight * sup, "bce": bce, "supcon": sup}

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self.current_epoch >= self.hparams.align_epoch:  # SA-FAS Eq. 4, after the optimiser step
            heads = self.model.heads.weight
            heads.data.copy_(hyperplane_align(heads.data, self.hparams.align_alpha))

    def eval_step(self, batch: dict, stage: str, dataloader_idx: int) -> dict:
        scores = self.model(batch["pixel_values"]).float()
        if dataloader_idx == 0:
            self.log(f"{stage}/loss", F.binary_cross_entropy(scores.clamp(1e-7, 1 - 1e-7), batch["label"].float()),
                     batch_size=len(batch["label"]), add_dataloader_idx=False, sync_dist=True)
        return eval_output(scores, batch)
