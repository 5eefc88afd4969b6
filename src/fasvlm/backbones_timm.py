"""timm vision encoders behind the ``timm`` extra (``pip install 'fasvlm[timm]'``): ``vision: timm:<model name>``.

Kept apart from :mod:`fasvlm.backbones`, which imports this module only when a ``timm:`` name is asked for: on a
CPU-only torch, timm's torchvision (a CUDA build from PyPI) fails to import, so nothing else may import timm.

Names (the ``vision`` argument of the baseline system)::

    timm:vit_small_patch16_224                       random init (timm's architecture registry)
    timm:vit_base_patch16_clip_224.openai@/w/m.safetensors   weights from a local safetensors file (no download)

The encoder returns what the project's classifier reads from ``transformers.CLIPVisionModel``: ``pooler_output``
(B, D), timm's pooled pre-logits features (the CLS token after the final norm for ViTs), and ``last_hidden_state``,
timm's ``forward_features`` ((B, N, D) tokens for ViTs, (B, C, H, W) maps for CNNs). I-FAS and InstructFLIP read
CLIP's per-layer hidden states and so need a CLIP encoder; timm encoders serve the baseline classifier.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

__all__ = ["PREFIX", "is_timm_name", "parse_timm_name", "TimmVisionEncoder", "load_timm_vision_encoder",
           "timm_image_spec_args"]

PREFIX = "timm:"


def is_timm_name(name: str) -> bool:
    return isinstance(name, str) and name.startswith(PREFIX)


@dataclass(frozen=True)
class TimmName:
    model: str  # timm model name, optionally with a pretrained tag (``name.tag``)
    weights: Path | None  # local safetensors file, or None for random init


def parse_timm_name(name: str) -> TimmName:
    """``timm:<model>[@<weights.safetensors>]`` -> model name and weights file."""
    if not is_timm_name(name):
        raise ValueError(f"{name!r} is not a timm backbone name; expected 'timm:<model name>[@<file.safetensors>]'")
    body = name[len(PREFIX):]
    model, _, weights = body.partition("@")
    if not model:
        raise ValueError(f"{name!r}: no model name after 'timm:'; e.g. timm:vit_small_patch16_224")
    path = Path(weights).expanduser() if weights else None
    if path is not None and path.suffix != ".safetensors":
        raise ValueError(f"{name!r}: weights must be a local .safetensors file (pickled checkpoints are not loaded); "
                         "convert with safetensors.torch.save_file(model.state_dict(), 'model.safetensors')")
    return TimmName(model, path)


def _timm():
    try:
        import timm
        import timm.data
    except ImportError as err:
        raise ImportError("timm backbones need the `timm` extra: pip install 'fasvlm[timm]' (on a CUDA torch build; "
                          f"timm's torchvision does not import on CPU-only torch): {err}") from err
    return timm


class TimmVisionEncoder(nn.Module):
    """A timm model without its classifier, answering like ``CLIPVisionModel`` (``pooler_output``,
    ``last_hidden_state``) with a ``config.hidden_size`` (timm's ``num_features``)."""

    def __init__(self, model: nn.Module, image_size: int):
        super().__init__()
        self.timm_model = model
        self.config = SimpleNamespace(hidden_size=int(model.num_features), image_size=image_size)

    def forward(self, pixel_values: torch.Tensor) -> SimpleNamespace:
        features = self.timm_model.forward_features(pixel_values)  # (B, N, D) for ViTs, (B, C, H, W) for CNNs
        pooled = self.timm_model.forward_head(features, pre_logits=True)  # (B, D)
        return SimpleNamespace(pooler_output=pooled, last_hidden_state=features)


def load_timm_vision_encoder(name: str, *, image_size: int | None = None) -> TimmVisionEncoder:
    """Build ``timm:<model>`` (random init, or a local safetensors file after ``@``) without a classifier head."""
    timm = _timm()
    spec = parse_timm_name(name)
    base = spec.model.split(".")[0]
    if not timm.is_model(base):
        close = timm.list_models(f"*{base.split('_')[0]}*")[:15]
        raise ValueError(f"unknown timm model {spec.model!r}; e.g. {', '.join(close) or 'see timm.list_models()'}")
    kwargs = {"num_classes": 0}
    if image_size is not None:
        kwargs["img_size"] = image_size  # ViT-family models; others take their size from the input
    if spec.weights is not None and not spec.weights.is_file():
        raise FileNotFoundError(f"{spec.weights}: no such weights file for {name!r}")
    model = timm.create_model(spec.model, pretrained=False, **kwargs)
    if spec.weights is not None:
        _load_weights(model, spec.weights, name)
    size = image_size or int(timm.data.resolve_model_data_config(model)["input_size"][-1])
    return TimmVisionEncoder(model, size)


def _load_weights(model: nn.Module, path: Path, name: str) -> None:
    """A local safetensors state dict into ``model`` (built without a classifier): the checkpoint's classifier is
    dropped, anything else that does not match is an error. Loaded here rather than through timm's pretrained-source
    resolution, which prefers a hub id over a file for some configs and would need the network."""
    from safetensors.torch import load_file

    heads = (getattr(model, "pretrained_cfg", None) or {}).get("classifier") or "head"
    heads = (heads,) if isinstance(heads, str) else tuple(heads)
    state = {k: v for k, v in load_file(str(path)).items() if not any(k.startswith(h + ".") for h in heads)}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: not a state dict of timm model {name!r}: missing {missing[:5]}, unexpected "
                         f"{unexpected[:5]}; write it with safetensors.torch.save_file(model.state_dict(), path)")


def timm_image_spec_args(name: str, *, image_size: int | None = None) -> dict:
    """Input size, mean and std of ``timm:<model>`` from timm's pretrained config (no model is built)."""
    timm = _timm()
    cfg = timm.models.get_pretrained_cfg(parse_timm_name(name).model)
    size = image_size or (int(cfg.input_size[-1]) if cfg is not None else 224)
    mean = tuple(cfg.mean) if cfg is not None else timm.data.IMAGENET_DEFAULT_MEAN
    std = tuple(cfg.std) if cfg is not None else timm.data.IMAGENET_DEFAULT_STD
    return {"size": size, "mean": tuple(float(m) for m in mean), "std": tuple(float(s) for s in std)}
