"""FLIP (Srivatsan et al., "FLIP: Cross-domain Face Anti-spoofing with Language Guidance", ICCV 2023).

Source consulted: koushiksrivats/FLIP (``train_flip.py``, ``train_flip_mcl.py``, ``prompt_templates.py``, the
models in ``third_party``/``fas.py``), as summarised in ``shared/reference/methods-instructflip-flip-metrics.md`` §5.3.

Three variants over one CLIP (image and text towers, both fine-tuned):

- ``v``   FLIP-V (Sec. 3.1): visual CLS token (post-LN, before the projection) -> SSDG-style embedder
  Linear(D, 512) -> ReLU -> Dropout(0.5) -> feature normalisation -> classifier with L2-normalised weight columns.
- ``it``  FLIP-IT (Sec. 3.2, Eq. 1-2): class embedding t_c = mean over the c-class prompt templates of the normalised
  text embeddings (renormalised); logits = exp(logit_scale) · cos(image embedding, t_c).
- ``mcl`` FLIP-MCL (Sec. 3.3, Eq. 3-5): FLIP-IT + SimCLR InfoNCE (τ = 0.1) on two augmented views through an MLP
  (proj -> 4096 -> 4096 -> 256, BN + ReLU) + MSE between the two views' image-text cosine similarities, each view
  against the class embeddings of a different random half of the prompt templates. L = L_ce + 1·L_simclr + 1·L_mse.

Logits are ordered [live, attack] (the project's label 1 = attack; FLIP orders [spoof, real]).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones import load_clip
from .ssdg import NormedClassifier, NormedEmbedder

__all__ = ["FLIP", "FLIPVariant", "SPOOF_TEMPLATES", "REAL_TEMPLATES", "simclr_loss", "mcl_consistency_loss"]

FLIPVariant = Literal["v", "it", "mcl"]

# FLIP's prompt_templates.py (Table of prompts in the paper's supplement), verbatim
SPOOF_TEMPLATES = (
    "This is an example of a spoof face",
    "This is an example of an attack face",
    "This is not a real face",
    "This is how a spoof face looks like",
    "a photo of a spoof face",
    "a printout shown to be a spoof face",
)
REAL_TEMPLATES = (
    "This is an example of a real face",
    "This is a bonafide face",
    "This is a real face",
    "This is how a real face looks like",
    "a photo of a real face",
    "This is not a spoof face",
)


def simclr_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """NT-Xent / InfoNCE of SimCLR: for each of the 2B embeddings, cross entropy of its partner view among the other
    2B - 1 (cosine similarity / τ). z1, z2 (B, D) -> scalar."""
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)  # (2B, D)
    b = z1.shape[0]
    sim = (z @ z.t()) / temperature
    sim = sim.masked_fill(torch.eye(2 * b, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    return F.cross_entropy(sim, target)


def mcl_consistency_loss(sim1: torch.Tensor, sim2: torch.Tensor) -> torch.Tensor:
    """FLIP-MCL's multimodal consistency: MSE between the two views' image-text similarity matrices (B, 2)."""
    return F.mse_loss(sim1.float(), sim2.float())


class FLIP(nn.Module):
    """FLIP-V / FLIP-IT / FLIP-MCL over a CLIP from :func:`fasvlm.backbones.load_clip` (module docstring)."""

    def __init__(self, clip: str = "tiny", variant: FLIPVariant = "it", ssl_hidden: int = 4096, ssl_dim: int = 256,
                 embed_dim: int = 512, dropout: float = 0.5):
        super().__init__()
        if variant not in ("v", "it", "mcl"):
            raise ValueError(f"unknown FLIP variant {variant!r}; valid: v, it, mcl")
        self.variant = variant
        self.clip, tokenizer = load_clip(clip)
        self.n_templates = len(REAL_TEMPLATES)
        tok = tokenizer(list(REAL_TEMPLATES) + list(SPOOF_TEMPLATES), padding=True, return_tensors="pt")
        # (2T, L): rows 0..T-1 live prompts, T..2T-1 attack prompts; rebuilt from the tokenizer, not checkpointed
        self.register_buffer("prompt_ids", tok["input_ids"], persistent=False)
        self.register_buffer("prompt_mask", tok["attention_mask"], persistent=False)
        if variant == "v":
            width = self.clip.config.vision_config.hidden_size
            self.embedder = NormedEmbedder(width, embed_dim, dropout, norm=True)
            self.classifier = NormedClassifier(embed_dim, 2, norm=True)
        if variant == "mcl":
            proj = self.clip.config.projection_dim
            self.ssl_head = nn.Sequential(
                nn.Linear(proj, ssl_hidden), nn.BatchNorm1d(ssl_hidden), nn.ReLU(inplace=True),
                nn.Linear(ssl_hidden, ssl_hidden), nn.BatchNorm1d(ssl_hidden), nn.ReLU(inplace=True),
                nn.Linear(ssl_hidden, ssl_dim))

    # -- towers ---------------------------------------------------------------------------------------------------------

    def image_embeds(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Projected, L2-normalised image embedding (B, P)."""
        out = self.clip.vision_model(pixel_values=pixel_values)
        return F.normalize(self.clip.visual_projection(out.pooler_output), dim=-1)

    def prompt_embeds(self) -> torch.Tensor:
        """Normalised text embedding of every template (2T, P): live templates first, then attack ones."""
        out = self.clip.text_model(input_ids=self.prompt_ids, attention_mask=self.prompt_mask)
        return F.normalize(self.clip.text_projection(out.pooler_output), dim=-1)

    def class_embeds(self, prompts: torch.Tensor, live_idx: torch.Tensor | None = None,
                     attack_idx: torch.Tensor | None = None) -> torch.Tensor:
        """Class embeddings (2, P) [live, attack]: mean of the chosen templates' embeddings, renormalised."""
        t = self.n_templates
        live = prompts[:t] if live_idx is None else prompts[:t][live_idx]
        attack = prompts[t:] if attack_idx is None else prompts[t:][attack_idx]
        return F.normalize(torch.stack([live.mean(0), attack.mean(0)]), dim=-1)

    # -- heads ----------------------------------------------------------------------------------------------------------

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Logits (B, 2) [live, attack]."""
        if self.variant == "v":
            cls = self.clip.vision_model(pixel_values=pixel_values).pooler_output  # (B, D) post-LN CLS
            return self.classifier(self.embedder(cls))
        img = self.image_embeds(pixel_values)  # (B, P)
        return self.clip.logit_scale.exp() * img @ self.class_embeds(self.prompt_embeds()).t()  # (B, 2)

    def mcl_terms(self, view1: torch.Tensor, view2: torch.Tensor,
                  generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """FLIP-MCL's extra terms on two views (B, 3, S, S): SimCLR on the MLP outputs, MSE of the cosine similarities
        of view 1 to one random half of the templates and of view 2 to the other half."""
        if self.variant != "mcl":
            raise ValueError("mcl_terms needs variant='mcl'")
        img = self.image_embeds(torch.cat([view1, view2]))  # (2B, P)
        e1, e2 = img.chunk(2)
        ssl = simclr_loss(self.ssl_head(e1), self.ssl_head(e2))
        t = self.n_templates
        perm_live = torch.randperm(t, generator=generator).to(img.device)
        perm_attack = torch.randperm(t, generator=generator).to(img.device)
        half = t // 2
        prompts = self.prompt_embeds()
        c1 = self.class_embeds(prompts, perm_live[:half], perm_attack[:half])  # (2, P)
        c2 = self.class_embeds(prompts, perm_live[half:], perm_attack[half:])
        return {"simclr": ssl, "mse": mcl_consistency_loss(e1 @ c1.t(), e2 @ c2.t())}
