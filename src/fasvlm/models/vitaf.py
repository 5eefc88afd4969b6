"""ViTAF (Huang et al., "Adaptive Transformers for Robust Few-shot Cross-domain Face Anti-spoofing", ECCV 2022), in
the zero-shot setting I-FAS compared against (trained on the sources only, no target shots).

Source consulted: hhsinping/few_shot_fas (``fas.py``: embedder/classifier, ``config.py``: λ, γ, β per protocol); its
adapter ViT lives in ``third_party`` (timm-based), which the stored index does not hold, so the adapter and FWT
layers follow the paper's Sec. 3.2-3.3:

- Ensemble adapters (Sec. 3.2): in every transformer block, K = 2 bottleneck adapters (Linear(D, r) -> GELU ->
  Linear(r, D), up-projection zero-initialised) read the MLP output h; h <- h + mean_k A_k(h). A cosine-similarity
  loss between the adapters' outputs (mean over token positions and adapter pairs) keeps them diverse:
  L_cos = mean_{i<j} cos(A_i(h), A_j(h)).
- Feature-wise transformation (Sec. 3.3, after Tseng et al. 2020), training only: h <- γ ⊙ h + β per channel with
  γ ~ N(1, softplus(θ_γ)), β ~ N(0, softplus(θ_β)); θ initialised so that softplus(θ) = (gamma, beta) of config.py
  (0.3, 0.5 for MCIO; 0.1, 0.1 for WCS).
- Head: ViT CLS -> SSDG embedder (Linear(D, 512), ReLU, Dropout 0.5, feature normalisation) -> weight-normalised
  classifier. L = L_ce + λ · L_cos with λ = config.py's ``weight`` (1 for M/O, 0.03 for C/I).
- Backbone: a CLIP/ViT vision tower from :mod:`fasvlm.backbones` (ViTAF used timm's ImageNet-21k ViT-B/16; timm stays
  off the CPU path).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones import load_vision_encoder
from .ssdg import NormedClassifier, NormedEmbedder

__all__ = ["ViTAF", "EnsembleAdapter", "adapter_cosine_loss"]


def adapter_cosine_loss(outputs: list[torch.Tensor]) -> torch.Tensor:
    """Mean cosine similarity between every pair of adapter outputs, each (B, N, D) (over tokens and pairs)."""
    terms = [F.cosine_similarity(outputs[i].float(), outputs[j].float(), dim=-1).mean()
             for i in range(len(outputs)) for j in range(i + 1, len(outputs))]
    return torch.stack(terms).mean() if terms else outputs[0].new_zeros(())


def _inv_softplus(y: float) -> float:
    return math.log(math.expm1(y))


class EnsembleAdapter(nn.Module):
    """Wraps a transformer block's MLP: h = mlp(x); h + mean_k A_k(h); then FWT while training. Keeps the last
    cosine loss in ``self.cos_loss`` for the model to collect."""

    def __init__(self, mlp: nn.Module, dim: int, bottleneck: int, num_adapters: int, gamma: float, beta: float):
        super().__init__()
        self.mlp = mlp
        self.adapters = nn.ModuleList()
        for _ in range(num_adapters):
            up = nn.Linear(bottleneck, dim)
            nn.init.zeros_(up.weight)
            nn.init.zeros_(up.bias)
            self.adapters.append(nn.Sequential(nn.Linear(dim, bottleneck), nn.GELU(), up))
        self.theta_gamma = nn.Parameter(torch.full((dim,), _inv_softplus(gamma)))
        self.theta_beta = nn.Parameter(torch.full((dim,), _inv_softplus(beta)))
        self.cos_loss: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.mlp(x)  # (B, N, D)
        outs = [a(h) for a in self.adapters]
        self.cos_loss = adapter_cosine_loss(outs) if len(outs) > 1 else None
        h = h + torch.stack(outs).mean(0)
        if self.training:
            b, d = h.shape[0], h.shape[-1]
            g = 1 + torch.randn(b, 1, d, device=h.device, dtype=h.dtype) * F.softplus(self.theta_gamma)
            bt = torch.randn(b, 1, d, device=h.device, dtype=h.dtype) * F.softplus(self.theta_beta)
            h = g * h + bt
        return h


class ViTAF(nn.Module):
    """ViT with ensemble adapters and FWT in every block + SSDG-style head. ``forward`` -> (logits (B, 2)
    [live, attack], L_cos)."""

    def __init__(self, vision: str = "clip-vit-b16", num_adapters: int = 2, bottleneck: int = 64, gamma: float = 0.3,
                 beta: float = 0.5, freeze_backbone: bool = True, embed_dim: int = 512, dropout: float = 0.5):
        super().__init__()
        self.encoder = load_vision_encoder(vision)
        if freeze_backbone:
            self.encoder.requires_grad_(False)
        width = self.encoder.config.hidden_size
        layers = getattr(self.encoder, "vision_model", self.encoder).encoder.layers  # transformers 4.x nests it
        for layer in layers:  # registered once, inside the encoder (no second name for the same tensors)
            layer.mlp = EnsembleAdapter(layer.mlp, width, bottleneck, num_adapters, gamma, beta)
        self.embedder = NormedEmbedder(width, embed_dim, dropout, norm=True)
        self.classifier = NormedClassifier(embed_dim, 2, norm=True)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cls = self.encoder(pixel_values=pixel_values).pooler_output  # (B, D)
        losses = [m.cos_loss for m in self.encoder.modules() if isinstance(m, EnsembleAdapter) and m.cos_loss is not None]
        cos = torch.stack(losses).mean() if losses else cls.new_zeros(())
        return self.classifier(self.embedder(cls)), cos
