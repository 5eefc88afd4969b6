"""timm backbones (the `timm` extra) as the baseline's encoder: shapes, local safetensors weights, and a bf16-mixed fit
through the CLI. timm's torchvision does not import on CPU-only torch, so these run where timm imports (the GPU
machine) and are skipped, with the reason, elsewhere."""

from __future__ import annotations

import pytest
import torch

from .conftest import ACCELERATOR, fasvlm, fit_args, tail

NAME = "timm:vit_small_patch16_224"


@pytest.fixture(scope="module")
def timm():
    try:
        import timm
        import timm.data  # noqa: F401
    except Exception as err:  # ImportError, or torchvision's operator registration failing on CPU-only torch
        pytest.skip(f"needs timm (the `timm` extra, CUDA torch build): {type(err).__name__}: {str(err)[:120]}")
    return timm


@pytest.mark.gpu
def test_timm_encoder_answers_like_clip(timm):
    from fasvlm.backbones import image_spec, load_vision_encoder

    encoder = load_vision_encoder(NAME)
    spec = image_spec(NAME)
    assert spec.size == 224 and len(spec.mean) == 3 and len(spec.std) == 3
    out = encoder(pixel_values=torch.randn(2, 3, spec.size, spec.size))
    assert out.pooler_output.shape == (2, 384)  # ViT-S width
    assert out.last_hidden_state.shape == (2, 197, 384)  # CLS + 14x14 patches
    assert encoder.config.hidden_size == 384


@pytest.mark.gpu
def test_timm_weights_from_a_local_safetensors_file(timm, tmp_path):
    from safetensors.torch import save_file

    from fasvlm.backbones import load_vision_encoder

    torch.manual_seed(0)
    source = load_vision_encoder(NAME).eval()
    save_file(source.timm_model.state_dict(), str(tmp_path / "model.safetensors"))
    torch.manual_seed(1)  # a different random init, overwritten by the file
    loaded = load_vision_encoder(f"{NAME}@{tmp_path / 'model.safetensors'}").eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixel_values=x).pooler_output, source(pixel_values=x).pooler_output)
    save_file(load_vision_encoder("timm:vit_tiny_patch16_224").timm_model.state_dict(), str(tmp_path / "tiny.safetensors"))
    with pytest.raises(ValueError, match="not a state dict of timm model"):  # another architecture's weights
        load_vision_encoder(f"{NAME}@{tmp_path / 'tiny.safetensors'}")
    with pytest.raises(FileNotFoundError, match="no such weights file"):
        load_vision_encoder(f"{NAME}@{tmp_path / 'missing.safetensors'}")


@pytest.mark.gpu
def test_baseline_fit_with_a_timm_encoder(timm, workdir):
    run = workdir / "runs" / "timm_baseline"
    extra = ("--trainer.accelerator", ACCELERATOR, "--trainer.devices", "1", "--trainer.precision", "bf16-mixed",
             "--model.init_args.vision", NAME)
    proc = fasvlm(workdir, *fit_args("conf/baseline/tiny.yaml", run, steps=3, extra=extra))
    assert proc.returncode == 0, tail(proc)
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 3
    assert any(k.startswith("model.encoder.timm_model.") for k in ckpt["state_dict"])
