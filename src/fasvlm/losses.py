"""Loss functions shared by the systems (pure tensor maths, no module state).

``lopsided_lm_loss`` is I-FAS's Lopsided Language Model loss (I-FAS paper, Sec. "Lopsided LM loss"):

    L = α · mean CE(judgment tokens) + (1 − α) · mean CE(interpretation tokens)

**Causal shift is done inside.** ``logits`` and ``labels`` are given position-aligned with the model *inputs* (the
Hugging Face ``model(labels=input_ids)`` convention): ``logits[:, t]`` predicts ``labels[:, t + 1]``. The functions drop
the last logit and the first label; ``judgment_mask`` is aligned with ``labels`` (it marks input positions).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["IGNORE_INDEX", "lm_loss_terms", "lopsided", "lopsided_lm_loss", "standard_lm_loss"]

IGNORE_INDEX = -100


def _token_ce(logits: torch.Tensor, labels: torch.Tensor, judgment_mask: torch.Tensor | None):
    """Per-token CE over the labelled positions after the causal shift, and which of them are judgment tokens."""
    if logits.shape[:2] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} must share (B, T)")
    logits = logits[:, :-1]  # (B, T-1, V): position t predicts token t+1
    labels = labels[:, 1:]  # (B, T-1)
    keep = labels != IGNORE_INDEX
    # only labelled positions reach the (float32) softmax: saves a (B, T, V) upcast
    ce = F.cross_entropy(logits[keep].float(), labels[keep], reduction="none")  # (N,)
    judg = judgment_mask[:, 1:][keep] if judgment_mask is not None else torch.zeros_like(ce, dtype=torch.bool)
    return ce, judg


def _mean(ce: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``ce[mask]``; 0 (still attached to the graph) when the mask is empty."""
    return ce[mask].sum() / mask.sum().clamp(min=1)


def lm_loss_terms(logits: torch.Tensor, labels: torch.Tensor, judgment_mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mean CE over judgment tokens, over the other labelled (interpretation) tokens, and over all labelled tokens.

    logits (B, T, V), labels (B, T) with -100 ignored, judgment_mask (B, T) bool; shift inside (module docstring).
    A term with no tokens is 0.
    """
    if judgment_mask.shape != labels.shape:
        raise ValueError(f"judgment_mask {tuple(judgment_mask.shape)} must have the labels' shape {tuple(labels.shape)}")
    ce, judg = _token_ce(logits, labels, judgment_mask.bool())
    return {"judgment": _mean(ce, judg), "interpretation": _mean(ce, ~judg),
            "all": _mean(ce, torch.ones_like(judg))}


def lopsided(terms: dict[str, torch.Tensor], alpha: float) -> torch.Tensor:
    """The Lopsided combination α · judgment + (1 − α) · interpretation of :func:`lm_loss_terms`' terms.

    The one place the formula is written: :func:`lopsided_lm_loss` and the I-FAS system (single-task and the judgment
    rows of multi-task batches) call it.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    return alpha * terms["judgment"] + (1.0 - alpha) * terms["interpretation"]


def lopsided_lm_loss(logits: torch.Tensor, labels: torch.Tensor, judgment_mask: torch.Tensor,
                     alpha: float = 0.7) -> torch.Tensor:
    """α · mean CE over judgment tokens + (1 − α) · mean CE over the other labelled tokens (empty term = 0).

    logits (B, T, V), labels (B, T) with -100 ignored, judgment_mask (B, T) bool marking judgment tokens among the
    labelled ones. Logits and labels are shifted inside for a causal LM: ``logits[:, t]`` predicts ``labels[:, t+1]``.
    """
    return lopsided(lm_loss_terms(logits, labels, judgment_mask), alpha)


def standard_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Plain causal LM loss: mean CE over every labelled token (same shift convention as ``lopsided_lm_loss``)."""
    ce, _ = _token_ce(logits, labels, None)
    return _mean(ce, torch.ones_like(ce, dtype=torch.bool))
