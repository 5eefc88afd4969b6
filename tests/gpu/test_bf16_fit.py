"""bf16-mixed `fasvlm fit` of each system through the real CLI (small presets on a GPU, tiny on CPU in the dry run)."""

from __future__ import annotations

import pytest
import torch

from .conftest import ACCELERATOR, SIZE, fasvlm, fit_args, tail

# the backbone arguments of each tiny config, swapped for SIZE on a GPU (I-FAS keeps its frozen tiny CLIP on CPU)
SYSTEMS = {
    "baseline": ("conf/baseline/tiny.yaml", ("vision",)),
    "ifas": ("conf/ifas/tiny.yaml", ("vision", "llm")),
    "instructflip": ("conf/instructflip/tiny.yaml", ("vision", "qformer", "t5")),
}


@pytest.mark.gpu
@pytest.mark.parametrize("method", list(SYSTEMS))
def test_bf16_mixed_fit(method, workdir):
    config, backbones = SYSTEMS[method]
    run = workdir / "runs" / f"bf16_{method}"
    extra = ["--trainer.accelerator", ACCELERATOR, "--trainer.devices", "1", "--trainer.precision", "bf16-mixed"]
    if SIZE != "tiny":
        for arg in backbones:
            extra += [f"--model.init_args.{arg}", SIZE]
    proc = fasvlm(workdir, *fit_args(config, run, steps=3, extra=tuple(extra)))
    assert proc.returncode == 0, tail(proc)
    assert "bf16" in proc.stdout + proc.stderr  # Lightning: "Using bf16 Automatic Mixed Precision (AMP)"
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 3
    for name, value in ckpt["state_dict"].items():
        if value.is_floating_point():
            assert torch.isfinite(value).all(), f"{method}: non-finite weights in {name} after bf16 training"
