"""SSDG (Jia et al., "Single-Side Domain Generalization for Face Anti-Spoofing", CVPR 2020).

Source consulted: taylover-pei/SSDG-CVPR2020 (``models/DGFAS.py``, ``loss/hard_triplet_loss.py``, ``loss/AdLoss.py``,
``experiment/*/train_ssdg_full.py``, ``experiment/*/config.py``).

- Feature generator: ResNet-18 (``transformers.ResNetModel``) -> global average pool -> bottleneck
  Linear(C, 512) -> ReLU -> Dropout(0.5).
- Feature normalisation (Sec. 3.3): f <- f / (sqrt(||f||_2) * sqrt(2)) (the published code's scaling).
- Weight normalisation: the classifier's weight columns are L2-normalised (``NormedClassifier``; the code rewrites
  ``weight.data`` in place each call, here the normalisation is functional so gradients see it).
- Single-side adversarial learning (Sec. 3.1, Eq. 1-2): a domain discriminator sees only the *real* faces' features
  through a gradient reversal layer (GRL) whose coefficient follows 2 / (1 + exp(-10 p)) - 1, p = step / max_steps.
- Asymmetric triplet loss (Sec. 3.2, Eq. 3): real faces of every domain form one class, the fake faces of each
  domain their own class; batch-all triplets with margin 0.1, averaged over the triplets with positive loss.
- Total (Eq. 4): L = L_cls + λ_trip · L_trip + λ_ada · L_ada, λ_trip = 2, λ_ada = 0.1 (config.py).

FLIP-V and ViTAF reuse ``NormedEmbedder`` and ``NormedClassifier`` (their code copies SSDG's).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones import load_resnet

__all__ = ["SSDG", "NormedEmbedder", "NormedClassifier", "GradReverse", "grad_reverse", "grl_coeff",
           "asymmetric_triplet_labels", "hard_triplet_loss", "feature_norm"]


def feature_norm(f: torch.Tensor) -> torch.Tensor:
    """SSDG's feature normalisation: f / (sqrt(||f||_2) * sqrt(2)). f (B, D) -> (B, D)."""
    return f / (f.norm(p=2, dim=1, keepdim=True).clamp(min=1e-12).sqrt() * math.sqrt(2.0))


class NormedEmbedder(nn.Module):
    """Bottleneck Linear(in, out) -> ReLU -> Dropout, then (optionally) ``feature_norm``."""

    def __init__(self, in_dim: int, out_dim: int = 512, dropout: float = 0.5, norm: bool = True):
        super().__init__()
        self.fc = nn.Linear(in_dim, out_dim)
        nn.init.normal_(self.fc.weight, 0.0, 0.005)
        nn.init.constant_(self.fc.bias, 0.1)
        self.drop = nn.Dropout(dropout)
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.drop(F.relu(self.fc(x)))  # (B, out)
        return feature_norm(f) if self.norm else f


class NormedClassifier(nn.Module):
    """Linear(in, 2) whose weight columns are L2-normalised at every call (SSDG's weight normalisation)."""

    def __init__(self, in_dim: int, num_classes: int = 2, norm: bool = True):
        super().__init__()
        self.fc = nn.Linear(in_dim, num_classes)
        nn.init.normal_(self.fc.weight, 0.0, 0.01)
        nn.init.zeros_(self.fc.bias)
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = F.normalize(self.fc.weight, p=2, dim=0) if self.norm else self.fc.weight  # (K, D), unit columns
        return F.linear(x, w, self.fc.bias)  # (B, K)


class GradReverse(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by -coeff (Ganin & Lempitsky's gradient reversal)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, coeff: float) -> torch.Tensor:
        ctx.coeff = float(coeff)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.coeff * grad, None


def grad_reverse(x: torch.Tensor, coeff: float) -> torch.Tensor:
    return GradReverse.apply(x, coeff)


def grl_coeff(step: int, max_steps: int, alpha: float = 10.0, low: float = 0.0, high: float = 1.0) -> float:
    """SSDG's GRL schedule: 2 (high - low) / (1 + exp(-alpha · step / max_steps)) - (high - low) + low."""
    p = step / max(max_steps, 1)
    return 2.0 * (high - low) / (1.0 + math.exp(-alpha * p)) - (high - low) + low


def asymmetric_triplet_labels(label: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
    """Triplet classes: 0 for every real face (label 0), 1 + domain for a fake face of that domain. (B,) -> (B,)."""
    return torch.where(label == 0, torch.zeros_like(domain), domain + 1)


def _pairwise_distance(x: torch.Tensor, eps: float = 1e-16) -> torch.Tensor:
    """Euclidean distances (B, B), with a zero-safe square root (gradient 0 on the diagonal)."""
    dot = x @ x.t()
    sq = dot.diagonal()
    d2 = F.relu(sq[:, None] - 2 * dot + sq[None, :])
    zero = (d2 == 0).to(x.dtype)
    return (d2 + zero * eps).sqrt() * (1 - zero)


def hard_triplet_loss(emb: torch.Tensor, labels: torch.Tensor, margin: float = 0.1) -> torch.Tensor:
    """Batch-all triplet loss: mean over the triplets (a, p, n) with positive loss of
    relu(d(a, p) - d(a, n) + margin), a != p != n, labels[a] == labels[p] != labels[n]. emb (B, D), labels (B,)."""
    d = _pairwise_distance(emb.float())
    loss = d[:, :, None] - d[:, None, :] + margin  # (B, B, B): anchor, positive, negative
    b = len(labels)
    distinct = ~torch.eye(b, dtype=torch.bool, device=emb.device)
    same = labels[:, None] == labels[None, :]
    valid = (distinct[:, :, None] & distinct[:, None, :] & distinct[None, :, :]
             & same[:, :, None] & ~same[:, None, :])
    loss = F.relu(loss * valid)
    n_hard = (loss > 1e-16).sum()
    return loss.sum() / (n_hard + 1e-16)


class SSDG(nn.Module):
    """ResNet-18 generator + normalised embedder/classifier + real-face domain discriminator (module docstring).

    ``forward`` returns (logits (B, 2) [live, attack], feature (B, 512)); ``discriminate`` gives domain logits of
    features through the GRL.
    """

    def __init__(self, resnet: str = "resnet18", num_domains: int = 3, embed_dim: int = 512, dropout: float = 0.5,
                 norm: bool = True):
        super().__init__()
        self.backbone = load_resnet(resnet)
        width = self.backbone.config.hidden_sizes[-1]
        self.embedder = NormedEmbedder(width, embed_dim, dropout, norm)
        self.classifier = NormedClassifier(embed_dim, 2, norm)
        self.discriminator = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.ReLU(), nn.Dropout(dropout),
                                           nn.Linear(embed_dim, num_domains))
        nn.init.normal_(self.discriminator[0].weight, 0.0, 0.01)
        nn.init.zeros_(self.discriminator[0].bias)
        nn.init.normal_(self.discriminator[3].weight, 0.0, 0.3)
        nn.init.zeros_(self.discriminator[3].bias)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.backbone(pixel_values=pixel_values).pooler_output.flatten(1)  # (B, C, 1, 1) -> (B, C)
        feature = self.embedder(pooled)  # (B, 512)
        return self.classifier(feature), feature

    def discriminate(self, feature: torch.Tensor, coeff: float) -> torch.Tensor:
        return self.discriminator(grad_reverse(feature, coeff))  # (B, num_domains)
