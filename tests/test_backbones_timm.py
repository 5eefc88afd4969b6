"""`timm:` backbone names parse without timm, and with timm absent the error says which extra to install."""

from __future__ import annotations

import importlib.util

import pytest

from fasvlm.backbones_timm import is_timm_name, parse_timm_name


def test_timm_names_parse():
    assert is_timm_name("timm:vit_small_patch16_224") and not is_timm_name("clip-vit-b16")
    spec = parse_timm_name("timm:vit_base_patch16_clip_224.openai@/w/model.safetensors")
    assert spec.model == "vit_base_patch16_clip_224.openai" and str(spec.weights) == "/w/model.safetensors"
    assert parse_timm_name("timm:resnet50").weights is None
    with pytest.raises(ValueError, match="no model name"):
        parse_timm_name("timm:")
    with pytest.raises(ValueError, match="safetensors"):
        parse_timm_name("timm:resnet50@/w/model.pth")  # pickled checkpoints are refused


@pytest.mark.skipif(importlib.util.find_spec("timm") is not None, reason="timm is installed here")
def test_without_timm_the_error_names_the_extra():
    from fasvlm.backbones import load_vision_encoder

    with pytest.raises(ImportError, match=r"fasvlm\[timm\]"):
        load_vision_encoder("timm:vit_small_patch16_224")
