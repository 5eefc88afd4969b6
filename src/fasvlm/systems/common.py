"""Pure helpers shared by the systems: optimiser and schedule, trainable-only checkpoints, batch conventions.

No base class: each system calls these functions itself (docs/design.md, "Models and systems").
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import lightning as L
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
    "two_class_eval_output",
    "ImageScoringSystem",
    "PRETRAINED_FORMAT",
    "save_pretrained",
    "from_pretrained",
]

PRETRAINED_FORMAT = "fasvlm.export/1"  # the format of `fasvlm export` directories
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"

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
    final_div_factor=1). A warm-up shorter than two steps is lengthened to two (from 4 total steps on): torch's
    OneCycleLR divides by zero when ``pct_start * total_steps == 1`` (e.g. 10 steps at 0.1).
    """
    if name == "constant":
        return None
    total_steps = max(int(total_steps), 1)
    if name == "onecycle":
        pct = warmup_frac if warmup_frac * total_steps >= 2 or total_steps < 4 else 2 / total_steps
        sched = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps,
                                                    pct_start=pct, anneal_strategy="cos", div_factor=10,
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



def two_class_eval_output(system, logits: torch.Tensor, batch: dict, stage: str,
                          dataloader_idx: int) -> dict[str, torch.Tensor]:
    """Evaluation step of a two-class (live, attack) classifier: on loader 0 (the source validation set) log
    ``<stage>/loss`` (cross entropy), then P(attack) = softmax(logits)[:, 1] for the metrics callback."""
    if dataloader_idx == 0:
        system.log(f"{stage}/loss", torch.nn.functional.cross_entropy(logits, batch["label"]),
                   batch_size=len(batch["label"]), add_dataloader_idx=False, sync_dist=True)
    return eval_output(logits.softmax(-1)[:, 1], batch)

class ImageScoringSystem(L.LightningModule):
    """The Lightning steps shared by the systems that score ``pixel_values`` directly (baseline, CLIP pretraining,
    FLIP, ViTAF, SSDG, SA-FAS, CFPL). A subclass defines:

    * ``eval_step(batch, stage, dataloader_idx)``: the metrics callback's output for a non-empty batch of one loader
      (``validation_step``/``test_step`` return None for an empty one);
    * ``forward(pixel_values)`` = P(attack), which ``predict_step`` returns per sample id;
    * ``loss_terms(batch)`` = {"loss": ..., other terms} for the default ``training_step``, which logs
      ``train/loss`` and ``train/<term>`` (or its own ``training_step``);
    * hyper-parameters ``lr``, ``weight_decay``, ``scheduler``, ``warmup_frac`` for ``configure_optimizers`` (AdamW
      with a per-step schedule, :func:`configure_adamw`).
    """

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        terms = self.loss_terms(batch)
        n = len(batch["label"])
        self.log("train/loss", terms["loss"], prog_bar=True, batch_size=n)
        self.log_dict({f"train/{k}": v for k, v in terms.items() if k != "loss"}, batch_size=n)
        return terms["loss"]

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict | None:
        return self.eval_step(batch, "val", dataloader_idx) if len(batch["label"]) else None

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict | None:
        return self.eval_step(batch, "test", dataloader_idx) if len(batch["label"]) else None

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict:
        return {"sample_id": batch["sample_id"], "score": self(batch["pixel_values"]).float().cpu()}

    def configure_optimizers(self):
        hp = self.hparams
        return configure_adamw(self, hp.lr, hp.weight_decay, hp.scheduler, hp.warmup_frac)


# ---------------------------------------------------------------------------------------------------------------------
# Hugging Face style directories (the same format `fasvlm export` writes from a checkpoint)


def _plain(value: Any) -> Any:
    """Hyper-parameters as JSON values (tuples become lists, paths strings)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def save_pretrained(system, directory, *, threshold: float | None = None, margin: float = 0.2):
    """Write ``model.safetensors`` (the system's ``state_dict``: trainable weights and buffers; frozen backbones are
    rebuilt from the hyper-parameters) + ``config.json`` (class path, hyper-parameters, preprocessing, threshold),
    readable by the group (0644). :func:`from_pretrained` and ``fasvlm predict --model`` read it back."""
    import json
    from pathlib import Path

    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").clone().contiguous() for k, v in system.state_dict().items()
               if isinstance(v, torch.Tensor)}
    cls = type(system)
    hp = {k: v for k, v in dict(system.hparams).items() if not k.startswith("_")}
    spec = system.image_spec
    config = {"format": PRETRAINED_FORMAT, "class_path": f"{cls.__module__}.{cls.__name__}",
              "hyper_parameters": _plain(hp),
              "preprocessing": {"size": int(spec.size), "mean": list(spec.mean), "std": list(spec.std),
                                "margin": float(margin), "layout": "float32 NCHW RGB, (pixel / 255 - mean) / std"},
              "threshold": {"value": threshold, "source": None if threshold is None else "save_pretrained(threshold=)",
                            "rule": "score = P(attack) >= value -> attack"},
              "weights": {"file": WEIGHTS_FILE, "num_tensors": len(tensors)}}
    save_file(tensors, str(directory / WEIGHTS_FILE), metadata={"format": "pt", "fasvlm_format": PRETRAINED_FORMAT})
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        (directory / name).chmod(0o644)
    return directory


def from_pretrained(directory, *, class_path: str | None = None, expected: type | None = None):
    """Rebuild a system from a ``save_pretrained``/``fasvlm export`` directory: ``Class(**hyper_parameters)`` (the
    class from the registry, never imported from the file's text) + the weights. Every trainable parameter must be in
    the directory and every stored tensor must belong to the module; otherwise ValueError."""
    import json
    from pathlib import Path

    from safetensors.torch import load_file

    from fasvlm.systems import system_class

    directory = Path(directory)
    config = json.loads((directory / CONFIG_FILE).read_text())
    if config.get("format") != PRETRAINED_FORMAT:
        raise ValueError(f"{directory / CONFIG_FILE}: format {config.get('format')!r}, expected {PRETRAINED_FORMAT!r}")
    class_path = class_path or config.get("class_path")
    if not class_path:
        raise ValueError(f"{directory}: no class path recorded; pass class_path=")
    cls = system_class(class_path)
    if expected is not None and not issubclass(cls, expected):
        raise ValueError(f"{directory} holds a {class_path}, not a {expected.__module__}.{expected.__name__}")
    module = cls(**config["hyper_parameters"])
    missing, unexpected = module.load_state_dict(load_file(str(directory / WEIGHTS_FILE)), strict=False)
    if unexpected:
        raise ValueError(f"stored tensors not in {class_path}: {unexpected[:10]}")
    params = dict(module.named_parameters())
    missing_trainable = [k for k in missing if k in params and params[k].requires_grad]
    if missing_trainable:
        raise ValueError(f"trainable parameters of {class_path} missing from {directory}: {missing_trainable[:10]}")
    return module.eval()
