"""Pure helpers shared by the systems: optimiser and schedule, trainable-only checkpoints, batch conventions.

No base class: each system calls these functions itself (docs/design.md, "Models and systems").
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import torch
from torch import nn

__all__ = [
    "SchedulerName",
    "build_optimizer",
    "build_scheduler",
    "configure_adamw",
    "frozen_prefixes",
    "drop_frozen",
    "eval_output",
]

SchedulerName = Literal["constant", "cosine", "onecycle"]

_NO_DECAY = ("bias", "norm", "ln_", "layernorm", "layer_norm", "embedding", "query_tokens", "queries")


def build_optimizer(module: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float] = (0.9, 0.999)):
    """AdamW over the parameters that require grad (frozen ones get no optimizer state); no decay on biases/norms."""
    decay, no_decay = [], []
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or any(k in name.lower() for k in _NO_DECAY) else decay).append(param)
    if not decay and not no_decay:
        raise ValueError(f"{type(module).__name__} has no trainable parameter: nothing to optimise")
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=betas)


def build_scheduler(optimizer, name: SchedulerName, total_steps: int, lr: float, warmup_frac: float = 0.1) -> dict | None:
    """A per-step LR schedule as Lightning's scheduler dict, or None for a constant LR.

    ``onecycle`` follows the published InstructFLIP code: OneCycleLR(max_lr=lr, pct_start=0.1, cos, div_factor=10,
    final_div_factor=1).
    """
    if name == "constant":
        return None
    total_steps = max(int(total_steps), 1)
    if name == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps,
                                                    pct_start=warmup_frac, anneal_strategy="cos", div_factor=10,
                                                    final_div_factor=1)
    elif name == "cosine":
        warmup = max(1, int(warmup_frac * total_steps))
        sched = torch.optim.lr_scheduler.SequentialLR(
            optimizer,
            [torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1e-3, total_iters=warmup),
             torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps - warmup))],
            milestones=[warmup],
        )
    else:
        raise ValueError(f"unknown scheduler {name!r}; valid: constant, cosine, onecycle")
    return {"scheduler": sched, "interval": "step", "frequency": 1}


def configure_adamw(system, lr: float, weight_decay: float, scheduler: SchedulerName, warmup_frac: float = 0.1):
    """``configure_optimizers`` body shared by the systems: AdamW + optional per-step schedule."""
    optimizer = build_optimizer(system, lr, weight_decay)
    total = system.trainer.estimated_stepping_batches if system._trainer is not None else 1
    sched = build_scheduler(optimizer, scheduler, total, lr, warmup_frac)
    return optimizer if sched is None else {"optimizer": optimizer, "lr_scheduler": sched}


def frozen_prefixes(module: nn.Module, names: Iterable[str]) -> list[str]:
    """State-dict prefixes of the named submodules that are frozen (every parameter has requires_grad False)."""
    out = []
    for name in names:
        sub = module.get_submodule(name)
        if all(not p.requires_grad for p in sub.parameters()):
            out.append(name + ".")
    return out


def drop_frozen(state: dict[str, Any], prefixes: Iterable[str]) -> dict[str, Any]:
    """Remove frozen backbone tensors from a state dict: they are reloaded by id/path, never copied into checkpoints."""
    prefixes = tuple(prefixes)
    return {k: v for k, v in state.items() if not k.startswith(prefixes)} if prefixes else state


def eval_output(scores: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
    """What validation/test steps return to the metrics callback: P(attack) and labels (docs/design.md, "Contracts")."""
    return {"scores": scores.detach().float(), "labels": batch["label"].detach()}
