"""SA-FAS (Sun et al., "Rethinking Domain Generalization for Face Anti-spoofing: Separability and Alignment",
CVPR 2023).

Source consulted: sunyiyou/SAFAS (``train.py``, ``networks/resnet_lgt.py``, ``loss/__init__.py``).

- Encoder: ResNet-18 -> global average pool -> feature f (B, C).
- One logistic-regression head per source domain, w_d (Sec. 3.2): each domain's samples are scored by their own
  head with BCE; the loss is the mean over the domains (``binary_func_sep``). At test the score is the mean of the
  heads' sigmoids.
- Separability (Sec. 3.1, SupCon, Eq. 2): supervised contrastive loss on L2-normalised features of two augmented views,
  positives = same (domain, label) pair (the code's ``UUID * 10 + label``), temperature τ = 0.1 scaled by
  τ / τ_base with τ_base = 0.07; weight 0.1 (``feat_loss_weight``).
- Alignment (Sec. 3.2, Eq. 4, "v4" in the code): after every optimiser step from ``align_epoch`` on, each head's
  direction moves towards the head it is least aligned with: w_d <- normalize(α β_d + (1 - α) β_far(d)) · ||w_d||,
  β = w / ||w||, α = 0.995 (``hyperplane_align``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones import load_resnet

__all__ = ["SAFAS", "supcon_loss", "hyperplane_align"]


def supcon_loss(features: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1,
                base_temperature: float = 0.07) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020, L^sup_out). features (B, V, D) L2-normalised views, labels
    (B,). Every anchor (B·V of them) averages log p over its positives (same label, not itself); the loss is
    -(τ / τ_base) times that, averaged over anchors."""
    b, v, _ = features.shape
    feats = torch.cat(features.unbind(1), 0).float()  # (V·B, D), view-major like the reference code
    lab = labels.repeat(v)  # (V·B,)
    logits = feats @ feats.t() / temperature  # (VB, VB)
    self_mask = torch.eye(b * v, dtype=torch.bool, device=feats.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    pos = (lab[:, None] == lab[None, :]) & ~self_mask
    mean_log_prob_pos = (log_prob.masked_fill(~pos, 0.0)).sum(1) / pos.sum(1).clamp(min=1)
    return -(temperature / base_temperature) * mean_log_prob_pos.mean()


@torch.no_grad()
def hyperplane_align(weights: torch.Tensor, alpha: float = 0.995) -> torch.Tensor:
    """SA-FAS's alignment update ("v4") of the per-domain hyperplanes. weights (K, D) -> (K, D) with unchanged row
    norms: row d moves to normalize(α β_d + (1 - α) β_j), j = the other row with the smallest cosine to row d."""
    k = weights.shape[0]
    if k < 2:
        return weights.clone()
    beta = F.normalize(weights, dim=1, eps=1e-10)
    cos = beta @ beta.t()
    cos.fill_diagonal_(float("inf"))
    far = cos.argmin(dim=1)  # (K,)
    new = F.normalize(alpha * beta + (1 - alpha) * beta[far], dim=1, eps=1e-10)
    return new * weights.norm(dim=1, keepdim=True)


class SAFAS(nn.Module):
    """ResNet-18 features + one logistic head per source domain (module docstring).

    ``features`` gives (B, C); ``domain_logits`` gives every head's logit (B, K); ``forward`` = mean of the heads'
    sigmoids = P(attack) (B,).
    """

    def __init__(self, resnet: str = "resnet18", num_domains: int = 3):
        super().__init__()
        self.backbone = load_resnet(resnet)
        width = self.backbone.config.hidden_sizes[-1]
        self.heads = nn.Linear(width, num_domains)  # row d = hyperplane w_d of domain d, with its bias

    def features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.backbone(pixel_values=pixel_values).pooler_output.flatten(1)  # (B, C)

    def domain_logits(self, feats: torch.Tensor) -> torch.Tensor:
        return self.heads(feats)  # (B, K)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.domain_logits(self.features(pixel_values)).sigmoid().mean(1)  # (B,)
