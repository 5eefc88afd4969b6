"""A real-size, randomly initialised training step of each VLM (DESIGN.md's published dimensions, no weights needed):
I-FAS = frozen CLIP ViT-L/14 -> GAC -> OPT-2.7B with LoRA; InstructFLIP = CLIP ViT-B/16 + two BERT-base-width Q-Formers
+ frozen FLAN-T5-base. On a GPU, bf16-mixed; in the dry run, the same step at tiny size on CPU."""

from __future__ import annotations

import time

import lightning as L
import pytest
import torch

from .conftest import CUDA

REAL = {
    "ifas": dict(vision="clip-vit-l14", llm="opt-2.7b", llm_mode="lora", llm_dtype="bfloat16", vision_dtype="auto"),
    "instructflip": dict(vision="clip-vit-b16", qformer="bert-base", t5="flan-t5-base", t5_dtype="auto"),
}
TINY = {
    "ifas": dict(vision="tiny", llm="tiny", llm_mode="lora", num_queries=4),
    "instructflip": dict(vision="tiny", qformer="tiny", qformer_heads=2, t5="tiny", num_query_tokens=4, fusion_heads=2,
                         fusion_dim_head=16, fusion_ffn_dim=64),
}
# published sizes (parameters), checked on the real-size build: the presets must be the papers' architectures
REAL_SIZES = {
    "ifas": {"model.vision": (3.02e8, 3.06e8), "model.llm": (2.64e9, 2.67e9)},  # ViT-L/14 303M; OPT-2.7B 2.65B
    "instructflip": {"model.vision": (8.5e7, 8.8e7)},  # ViT-B/16 86M
}


def _system(method: str):
    from fasvlm.systems.ifas import IFASSystem
    from fasvlm.systems.instructflip import InstructFLIPSystem

    cls = {"ifas": IFASSystem, "instructflip": InstructFLIPSystem}[method]
    return cls(**(REAL if CUDA else TINY)[method], lr=1e-4, scheduler="constant")


class _Batches(torch.utils.data.Dataset):
    def __init__(self, n: int, batch_size: int, size: int):
        self.n, self.batch_size, self.size = n, batch_size, size

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        from fasvlm.tools.bench import random_batch

        return random_batch(self.batch_size, self.size, seed=i)


@pytest.mark.gpu
@pytest.mark.parametrize("method", ["ifas", "instructflip"])
def test_real_size_training_step(method):
    torch.manual_seed(0)
    t0 = time.perf_counter()
    system = _system(method)
    built = time.perf_counter() - t0
    if CUDA:
        for prefix, (low, high) in REAL_SIZES[method].items():
            n = sum(p.numel() for name, p in system.named_parameters() if name.startswith(prefix + ".")
                    and "lora_" not in name)
            assert low <= n <= high, f"{method}: {prefix} has {n:,} parameters, expected {low:,.0f}-{high:,.0f}"
    trainable = {n: p.detach().float().clone() for n, p in system.named_parameters() if p.requires_grad}
    assert trainable, f"{method}: no trainable parameters"
    # a sample of the frozen tensors (all of them would be 12 GB of copies at real size) with their dtypes: a frozen
    # encoder may be cast to bf16 when fit starts (vision_dtype auto), which is not training. InstructFLIP's frozen
    # T5 is loaded when fit starts, so it is checked after the fit only (no gradients).
    params = dict(system.named_parameters())
    frozen_before = [n for n, p in params.items() if not p.requires_grad]
    frozen = {n: (params[n].dtype, params[n].detach().clone())
              for n in frozen_before[:: max(1, len(frozen_before) // 40)]}

    losses: list[float] = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            losses.append(float(outputs["loss"] if isinstance(outputs, dict) else outputs))

    if CUDA:
        torch.cuda.reset_peak_memory_stats()
    trainer = L.Trainer(accelerator="gpu" if CUDA else "cpu", devices=1,
                        precision="bf16-mixed" if CUDA else "32-true", max_steps=2, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, num_sanity_val_steps=0, use_distributed_sampler=False,
                        callbacks=[Record()])
    t1 = time.perf_counter()
    trainer.fit(system, train_dataloaders=torch.utils.data.DataLoader(
        _Batches(2, 4, system.image_spec.size), batch_size=None))
    stepped = time.perf_counter() - t1
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses))), losses
    params = dict(system.named_parameters())
    changed = [n for n, v in trainable.items() if not torch.equal(params[n].detach().float().cpu(), v)]
    assert changed, f"{method}: no trainable parameter changed in two optimizer steps"
    moved = [n for n, (dtype, v) in frozen.items() if params[n].dtype == dtype and not torch.equal(params[n].cpu(), v)]
    assert not moved, f"{method}: frozen parameters changed: {moved[:5]}"
    frozen_after = [n for n, p in params.items() if not p.requires_grad]
    assert set(frozen_before) <= set(frozen_after) and frozen_after, f"{method}: expected frozen parameters"
    with_grad = [n for n in frozen_after if params[n].grad is not None]
    assert not with_grad, f"{method}: frozen parameters received gradients: {with_grad[:5]}"
    peak = torch.cuda.max_memory_allocated() / 2**30 if CUDA else float("nan")
    print(f"{method}: built in {built:.1f} s, 2 steps in {stepped:.1f} s, losses {losses}, peak {peak:.1f} GiB")
