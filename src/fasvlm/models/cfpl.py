"""CFPL-FAS (Liu et al., "CFPL-FAS: Class Free Prompt Learning for Generalizable Face Anti-spoofing", CVPR 2024).

No official code exists (``liuajian/CASIA-FAS-Benchmark`` holds no CFPL model). Written from the paper and checked
against InstructFLIP's unofficial re-implementation (``kunkunlin1221/InstructFLIP`` ``src/models/cfpl/``, which
produced InstructFLIP's CFPL rows), as summarised in ``shared/reference/methods-instructflip-flip-metrics.md`` §6.2:

- Image encoder: CLIP ViT; content feature f_c = projected CLS (B, P); style feature f_s = layer average of the
  per-layer token [mean, std] (B, 2D) (Sec. 3.2). In training, with p = 0.5, f_s is mixed across the batch with
  λ ~ Beta(0.1, 0.1) (MixStyle-like; the re-implementation's choice, the paper's "style diversification").
- Content and style Q-Formers (Sec. 3.2, Eq. 1-2): M = 16 learnable queries of width P, one block of self-attention,
  cross-attention to f_c (content) or f_s (style), FFN.
- Prompt modulation (Sec. 3.3, Eq. 3-4): each Q-Former's queries are fed as prompt tokens, followed by the
  end-of-text token embedding, through the CLIP text transformer (frozen, causal mask); the end token's output,
  projected, is the prompt's text feature (t_c, t_s). w = sigmoid(MLP([t_c; t_s])) (2P -> P/16 -> P), and
  logits = Linear(P, 2)(w ⊙ f_c) (Eq. 5).
- Prompt-text matching (PTM, Sec. 3.4, Eq. 6): t_c must match the text feature of its class sentence
  ("A photo of a real face" / "A photo of a fake face"): a binary head on t_c ⊙ T_y (match) and t_c ⊙ T_{1-y}
  (mismatch), cross entropy. L = L_ce + L_ptm.

Departures from the re-implementation (docs/methods.md): no momentum Q-Former, 4,096 queue or hard-negative mining for
PTM (one positive and one negative pair per image), and no double softmax (it passes softmaxed PTM scores to
CrossEntropyLoss); class sentences are encoded with the text tower's projected EOS feature instead of a mean of token
embeddings.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones import load_clip
from .layers import Block

__all__ = ["CFPL", "CLASS_SENTENCES", "ptm_loss", "mix_style"]

CLASS_SENTENCES = ("A photo of a real face", "A photo of a fake face")  # [live, attack]


def ptm_loss(logits_match: torch.Tensor, logits_mismatch: torch.Tensor) -> torch.Tensor:
    """Prompt-text matching: CE of (B, 2) match logits against class 1 and mismatch logits against class 0."""
    logits = torch.cat([logits_match, logits_mismatch]).float()  # (2B, 2)
    target = torch.cat([torch.ones(len(logits_match)), torch.zeros(len(logits_mismatch))]).long().to(logits.device)
    return F.cross_entropy(logits, target)


def mix_style(style: torch.Tensor, p: float = 0.5, alpha: float = 0.1,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """With probability p, λ f_s + (1 - λ) f_s[perm], λ ~ Beta(α, α) per sample. style (B, S) -> (B, S)."""
    if torch.rand((), generator=generator).item() >= p:
        return style
    b = style.shape[0]
    lam = torch.distributions.Beta(alpha, alpha).sample((b, 1)).to(style)
    perm = torch.randperm(b, generator=generator).to(style.device)
    return lam * style + (1 - lam) * style[perm]


class CFPL(nn.Module):
    """Class-free prompt learning over a CLIP from :func:`fasvlm.backbones.load_clip` (module docstring).

    ``forward`` -> dict with ``logits`` (B, 2) [live, attack], ``t_content`` (B, P) and ``class_text`` (2, P).
    """

    def __init__(self, clip: str = "clip-vit-b16", num_queries: int = 16, num_heads: int = 8, mix_p: float = 0.5,
                 mix_alpha: float = 0.1):
        super().__init__()
        self.clip, tokenizer = load_clip(clip)
        self.clip.text_model.requires_grad_(False)
        self.clip.text_projection.requires_grad_(False)
        p = self.clip.config.projection_dim
        d = self.clip.config.vision_config.hidden_size
        dt = self.clip.config.text_config.hidden_size
        heads = num_heads if p % num_heads == 0 else 1
        self.mix_p, self.mix_alpha = mix_p, mix_alpha
        self.content_queries = nn.Parameter(torch.randn(num_queries, p) * 0.02)
        self.style_queries = nn.Parameter(torch.randn(num_queries, p) * 0.02)
        self.content_qformer = Block(p, heads, context_dim=p)
        self.style_qformer = Block(p, heads, context_dim=2 * d)
        self.to_text = nn.Linear(p, dt)  # queries -> text-token width
        self.modulator = nn.Sequential(nn.Linear(2 * p, max(p // 16, 1)), nn.ReLU(), nn.Linear(max(p // 16, 1), p))
        self.classifier = nn.Linear(p, 2)
        self.ptm_head = nn.Linear(p, 2)
        tok = tokenizer(list(CLASS_SENTENCES), padding=True, return_tensors="pt")
        self.register_buffer("class_ids", tok["input_ids"], persistent=False)
        self.register_buffer("class_mask", tok["attention_mask"], persistent=False)
        self.register_buffer("eos_id", torch.tensor([tokenizer.eos_token_id]), persistent=False)

    def image_features(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.clip.vision_model(pixel_values=pixel_values, output_hidden_states=True)
        f_c = self.clip.visual_projection(out.pooler_output)  # (B, P)
        hs = torch.stack(out.hidden_states[1:])  # (L, B, N, D)
        f_s = torch.cat([hs.mean(2), hs.std(2)], -1).mean(0)  # (B, 2D)
        return f_c, f_s

    def prompt_text(self, queries: torch.Tensor) -> torch.Tensor:
        """Queries (B, M, P) as prompt tokens + EOS through the text transformer -> projected EOS output (B, P)."""
        tm = self.clip.text_model
        b, m, _ = queries.shape
        eos = tm.embeddings.token_embedding(self.eos_id).expand(b, 1, -1)  # (B, 1, Dt)
        tokens = torch.cat([self.to_text(queries), eos], 1)  # (B, M+1, Dt)
        h = tm.embeddings(inputs_embeds=tokens)  # adds positions
        t = m + 1
        causal = torch.full((t, t), float("-inf"), device=h.device, dtype=h.dtype).triu(1)
        h = tm.encoder(inputs_embeds=h, attention_mask=causal[None, None].expand(b, 1, t, t)).last_hidden_state
        h = tm.final_layer_norm(h)[:, m]  # (B, Dt): the EOS position
        return self.clip.text_projection(h)  # (B, P)

    def class_text(self) -> torch.Tensor:
        with torch.no_grad():
            out = self.clip.text_model(input_ids=self.class_ids, attention_mask=self.class_mask)
            return F.normalize(self.clip.text_projection(out.pooler_output), dim=-1)  # (2, P)

    def forward(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        f_c, f_s = self.image_features(pixel_values)
        if self.training:
            f_s = mix_style(f_s, self.mix_p, self.mix_alpha)
        b = f_c.shape[0]
        q_c = self.content_qformer(self.content_queries.expand(b, -1, -1), f_c[:, None])  # (B, M, P)
        q_s = self.style_qformer(self.style_queries.expand(b, -1, -1), f_s[:, None])  # (B, M, P)
        t_c, t_s = self.prompt_text(q_c), self.prompt_text(q_s)  # (B, P) each
        w = torch.sigmoid(self.modulator(torch.cat([t_c, t_s], -1)))  # (B, P)
        return {"logits": self.classifier(w * f_c), "t_content": F.normalize(t_c, dim=-1),
                "class_text": self.class_text()}

    def ptm_logits(self, t_content: torch.Tensor, class_text: torch.Tensor,
                   label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Match / mismatch logits (B, 2) of each content prompt with its own and the other class sentence."""
        return self.ptm_head(t_content * class_text[label]), self.ptm_head(t_content * class_text[1 - label])
