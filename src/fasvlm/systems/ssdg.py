"""SSDG system: L = L_cls + λ_trip · L_trip + λ_ada · L_ada (SSDG Eq. 4; maths in :mod:`fasvlm.models.ssdg`)."""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch
import torch.nn.functional as F

from ..backbones import IMAGENET_MEAN, IMAGENET_STD, ImageSpec
from ..models.ssdg import SSDG, asymmetric_triplet_labels, grl_coeff, hard_triplet_loss
from .common import ImageScoringSystem, SchedulerName, two_class_eval_output

__all__ = ["SSDGSystem", "domain_ids", "source_domain_names"]


def domain_ids(domains: Sequence[str], known: Sequence[str], device=None) -> torch.Tensor:
    """Index of each sample's source domain in ``known`` (B,); an unknown name is an error that lists the known."""
    index = {name: i for i, name in enumerate(known)}
    missing = sorted({d for d in domains if d not in index})
    if missing:
        raise ValueError(f"training batch has domains {missing} that are not source domains {list(known)}; set the "
                         "system's `source_domains` to the names of the data config's `sources`")
    return torch.tensor([index[d] for d in domains], dtype=torch.long, device=device)


def source_domain_names(system: L.LightningModule, given: Sequence[str] | None, num_domains: int) -> list[str]:
    """The source-domain order: ``given``, else the attached datamodule's ``sources`` names; at most num_domains."""
    names = list(given) if given else None
    if names is None:
        dm = system.trainer.datamodule if system._trainer is not None else None
        sources = getattr(dm, "sources", None)
        if not sources:
            raise ValueError(f"{type(system).__name__}: give `source_domains` or train with a FASDataModule")
        names = [s.name for s in sources]
    if len(names) > num_domains:
        raise ValueError(f"{len(names)} source domains {names} but num_domains={num_domains}; raise num_domains")
    return names


class SSDGSystem(ImageScoringSystem):
    """SSDG (CVPR 2020) on a ResNet-18.

    Args:
        resnet: ResNet preset (``tiny``, ``resnet18``: random init) or a local ``save_pretrained`` directory
            (ImageNet weights, e.g. microsoft/resnet-18).
        image_size: input size (SSDG: 256); ImageNet mean/std normalisation.
        num_domains: discriminator classes (the number of source domains; 3 in MCIO leave-one-out).
        source_domains: source domain names in discriminator order; default: the data config's ``sources`` names.
        lambda_triplet, lambda_adv, margin: SSDG's 2, 0.1 and 0.1; grl_alpha: the GRL schedule's 10.
        embed_dim, dropout, norm: bottleneck width 512, its dropout 0.5, feature + weight normalisation on.
        lr, weight_decay, scheduler, warmup_frac: AdamW and its schedule (InstructFLIP's re-run of SSDG).
    """

    def __init__(self, resnet: str = "resnet18", image_size: int = 256, num_domains: int = 3,
                 source_domains: list[str] | None = None, lambda_triplet: float = 2.0, lambda_adv: float = 0.1,
                 margin: float = 0.1, grl_alpha: float = 10.0, embed_dim: int = 512, dropout: float = 0.5,
                 norm: bool = True, lr: float = 5e-6, weight_decay: float = 5e-4,
                 scheduler: SchedulerName = "onecycle", warmup_frac: float = 0.1):
        super().__init__()
        self.save_hyperparameters()
        self.model = SSDG(resnet, num_domains, embed_dim, dropout, norm)
        self.image_spec = ImageSpec(size=image_size, mean=IMAGENET_MEAN, std=IMAGENET_STD)
        self.domains: list[str] | None = list(source_domains) if source_domains else None

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self.domains = source_domain_names(self, self.hparams.source_domains, self.hparams.num_domains)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """P(attack) for each image, (B,)."""
        return self.model(pixel_values)[0].float().softmax(-1)[:, 1]

    def grl_coeff(self) -> float:
        total = self.trainer.estimated_stepping_batches if self._trainer is not None else 1
        return grl_coeff(self.global_step, int(total), self.hparams.grl_alpha)

    def loss_terms(self, batch: dict, coeff: float | None = None) -> dict[str, torch.Tensor]:
        """The loss and its terms; ``coeff`` is the gradient-reversal coefficient (default: this step's schedule)."""
        hp = self.hparams
        coeff = self.grl_coeff() if coeff is None else coeff
        logits, feature = self.model(batch["pixel_values"])
        label = batch["label"]
        dom = domain_ids(batch["domain"], self.domains or [], label.device)
        cls = F.cross_entropy(logits.float(), label)
        triplet = hard_triplet_loss(feature, asymmetric_triplet_labels(label, dom), hp.margin)
        real = label == 0
        adv = (F.cross_entropy(self.model.discriminate(feature[real], coeff).float(), dom[real]) if real.any()
               else feature.sum() * 0)
        loss = cls + hp.lambda_triplet * triplet + hp.lambda_adv * adv
        return {"loss": loss, "cls": cls, "triplet": triplet, "adv": adv}

    def eval_step(self, batch: dict, stage: str, dataloader_idx: int) -> dict:
        logits = self.model(batch["pixel_values"])[0].float()
        return two_class_eval_output(self, logits, batch, stage, dataloader_idx)
