"""torch.compile with the inductor backend on a GPU: compiled scoring matches eager for the baseline and InstructFLIP's
LLM-free path, and a bf16-mixed fit runs with CompileCallback through the CLI."""

from __future__ import annotations

import pytest
import torch

from .conftest import ACCELERATOR, SIZE, fasvlm, fit_args, need_cuda, tail


def _systems():
    from fasvlm.systems.baseline import BaselineSystem
    from fasvlm.systems.instructflip import InstructFLIPSystem

    yield "baseline", BaselineSystem(vision=SIZE), lambda out: out
    yield "instructflip", InstructFLIPSystem(vision=SIZE, qformer=SIZE, qformer_heads=2 if SIZE == "tiny" else 6,
                                             t5=SIZE, fusion_heads=2, fusion_dim_head=16, fusion_ffn_dim=64), \
        lambda out: out["score"]


@pytest.mark.gpu
def test_inductor_scores_match_eager():
    need_cuda("inductor GPU (Triton) kernels")
    from fasvlm.callbacks.compile import CompileCallback

    torch.manual_seed(0)
    torch.backends.cudnn.allow_tf32 = False  # fp32 convolutions (patch embedding) in both paths: compare like with like
    for name, system, score in _systems():
        system = system.to("cuda").eval()
        x = torch.randn(8, 3, system.image_spec.size, system.image_spec.size, device="cuda")
        with torch.no_grad():
            eager = score(system(x))
            CompileCallback(backend="inductor").setup(None, system, "fit")  # type: ignore[arg-type]
            compiled = score(system(x))
            again = score(system(x))  # second call: the compiled graph, no recompilation needed
        torch.testing.assert_close(compiled, eager, atol=1e-3, rtol=1e-3, msg=name)
        torch.testing.assert_close(again, compiled, msg=name)


@pytest.mark.gpu
def test_fit_with_inductor_through_the_cli(workdir):
    need_cuda("inductor GPU (Triton) kernels")
    run = workdir / "runs" / "inductor"
    extra = ("--trainer.accelerator", ACCELERATOR, "--trainer.devices", "1", "--trainer.precision", "bf16-mixed",
             "--model.init_args.vision", SIZE,
             "--trainer.callbacks+=fasvlm.callbacks.compile.CompileCallback", "--trainer.callbacks.backend", "inductor")
    proc = fasvlm(workdir, *fit_args("conf/baseline/tiny.yaml", run, steps=3, extra=extra))
    assert proc.returncode == 0, tail(proc)
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 3
    assert not any("_orig_mod" in k for k in ckpt["state_dict"]), "compiling changed the checkpoint's keys"
