"""DeepSpeed ZeRO-2 and ZeRO-3 (fit -> resume -> export) and FSDP (fit) on one GPU, with conf/strategy/*.yaml through
the real CLI, on I-FAS at tiny size (frozen CLIP + trained LLM: the parameter mix the strategies must handle)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import REPO

from .conftest import fasvlm, fit_args, need_cuda, tail

CONFIG = "conf/ifas/tiny.yaml"


@pytest.mark.gpu
@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_fit_resume_export(stage, workdir, tmp_path, monkeypatch):
    need_cuda(f"DeepSpeed ZeRO-{stage} (CUDA and NCCL)")
    strategy = ("--config", str(REPO / "conf" / "strategy" / f"deepspeed_zero{stage}.yaml"), "--trainer.devices", "1")
    run = workdir / "runs" / f"zero{stage}"
    first = fasvlm(workdir, *fit_args(CONFIG, run, steps=2, extra=strategy))
    assert first.returncode == 0, tail(first)
    last = run / "checkpoints" / "last.ckpt"
    assert last.is_dir(), f"DeepSpeed writes a checkpoint directory: {sorted(p.name for p in run.rglob('*'))}"

    resumed = fasvlm(workdir, *fit_args(CONFIG, run, steps=4, extra=strategy), "--ckpt_path", str(last))
    assert resumed.returncode == 0, tail(resumed)
    assert f"Restoring states from the checkpoint path at {last}" in resumed.stdout + resumed.stderr, tail(resumed)

    # DeepSpeed directory -> one fp32 checkpoint -> exported safetensors + config that rebuild the module
    fp32 = tmp_path / "last-fp32.ckpt"
    conv = fasvlm(workdir, "export", "--deepspeed-dir", str(last), "--out", str(fp32))
    assert conv.returncode == 0, tail(conv)
    ckpt = torch.load(fp32, map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 4, "the resumed run did not continue from step 2 to step 4"
    out = tmp_path / "exported"
    exp = fasvlm(workdir, "export", "--ckpt", str(last), "--out", str(out))
    assert exp.returncode == 0, tail(exp)
    config = json.loads((out / "config.json").read_text())
    assert config["class_path"] == "fasvlm.systems.ifas.IFASSystem"
    assert config["source"]["global_step"] == 4
    from fasvlm.tools.export import load_exported

    monkeypatch.chdir(workdir)  # the config's frozen CLIP is data/tiny_clip, relative to the run's directory
    module = load_exported(out)
    state = module.state_dict()
    for name, value in ckpt["state_dict"].items():
        assert name in state, f"{name} of the DeepSpeed checkpoint is missing from the exported module"
        torch.testing.assert_close(state[name].float(), value.float(), msg=name)


@pytest.mark.gpu
def test_fsdp_fit(workdir):
    need_cuda("FSDP (NCCL)")
    run = workdir / "runs" / "fsdp"
    strategy = ("--config", str(REPO / "conf" / "strategy" / "fsdp.yaml"), "--trainer.devices", "1")
    proc = fasvlm(workdir, *fit_args(CONFIG, run, steps=2, extra=strategy))
    assert proc.returncode == 0, tail(proc)
    last = run / "checkpoints" / "last.ckpt"
    assert last.exists(), sorted(p.name for p in run.rglob("*"))
    if last.is_dir():  # state_dict_type: sharded -> one directory with the shards and Lightning's meta.pt
        assert any(last.iterdir())
