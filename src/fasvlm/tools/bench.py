"""``fasvlm bench``: FLOPs per sample, training samples/s, inference images/s, peak memory, dataloader wait and MFU.

Usage::

    fasvlm bench --config conf/ifas/tiny.yaml                     # CPU, tiny presets
    fasvlm bench --config conf/ifas/tiny.yaml --preset small      # ViT-S width encoder, OPT-125M
    fasvlm bench --config conf/ifas/paper.yaml --config conf/data/one_to_eleven.yaml --preset real \
        --device cuda --precision bf16-mixed

The config's model is built (``--preset`` swaps every backbone for a named preset with random weights, so no weights
are needed), then ``--warmup`` and ``--steps`` training steps run through a Lightning ``Trainer`` (the real training
path, optimizer included) and ``--infer-batches`` inference batches through ``system.forward`` (the scoring path: no
generation, no LLM for InstructFLIP). Batches come from the config's data module when its data exists, else they are
random tensors following the batch contract (``"data": "random"`` in the output; the dataloader wait is then 0).
For I-FAS the scoring FLOPs per image are counted with and without the prompt prefix reused through the KV cache.

``--data`` measures the data path instead (no model step; docs/data_path.md)::

    fasvlm bench --data --config conf/quickstart.yaml

with one thread (one loader worker's core): the bare decode rate of the stored files (the limit), the loader's
images/s for the train and eval paths before (the whole transform on the worker, ``device_transforms=False``) and
after (uint8 carriers, the rest on the device), their ratio to the decode rate, the top costs in ms per image, the
device half's cost per image, and the largest difference between the eval inputs of the two placements. It does so on
the config's data, on full-size 1280x960 JPEG photographs it renders into a temporary directory (CelebA-Spoof-like)
and on face crops of those stored as ``fasvlm prepare`` stores them (training size + jitter margin); plus a format
study of those crops (PNG / JPEG q95 / WebP: decode time, size, error).

One JSON object is printed on stdout, nothing else (progress and library chatter go to stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

__all__ = ["main", "random_batch", "PRESET_MAP"]

# --preset real: hub ids of the published backbones -> presets with the same dimensions (random init)
_REAL = {
    "openai/clip-vit-large-patch14": "clip-vit-l14",
    "openai/clip-vit-base-patch16": "clip-vit-b16",
    "facebook/opt-2.7b": "opt-2.7b",
    "google/flan-t5-base": "flan-t5-base",
    "bert-base-uncased": "bert-base",
}
BACKBONE_ARGS = ("vision", "llm", "t5", "qformer")
PRESET_MAP = {"tiny": "tiny", "small": "small"}


def _preset_for(value: Any, preset: str) -> Any:
    if not isinstance(value, str):
        return value
    if preset == "real":
        return _REAL.get(value, value)
    return PRESET_MAP[preset]


def random_batch(batch_size: int, image_size: int, *, seed: int = 0) -> dict[str, Any]:
    """A batch following the FASDataModule contract, with random pixels and plausible labels."""
    from fasvlm.data_modules.taxonomy import CAMERA_QUALITIES, CELEBA_SPOOF_TYPES, ENVIRONMENTS, ILLUMINATIONS

    g = torch.Generator().manual_seed(seed)
    label = torch.randint(0, 2, (batch_size,), generator=g)
    content = torch.where(label == 1, torch.randint(1, 11, (batch_size,), generator=g), 0)
    illum = torch.where(label == 1, torch.randint(0, 4, (batch_size,), generator=g), -1)
    env = torch.where(label == 1, torch.randint(0, 2, (batch_size,), generator=g), -1)
    quality = torch.randint(0, 3, (batch_size,), generator=g)
    return {
        "pixel_values": torch.randn(batch_size, 3, image_size, image_size, generator=g),
        "label": label, "content": content, "illumination": illum, "environment": env, "camera_quality": quality,
        "attack": [CELEBA_SPOOF_TYPES[int(c)] for c in content],
        "domain": ["bench"] * batch_size,
        "video": [f"bench/{seed}_{i}" for i in range(batch_size)],
        "sample_id": [f"bench/{seed}_{i}/0" for i in range(batch_size)],
        "illumination_name": [ILLUMINATIONS[int(i)] if i >= 0 else None for i in illum],
        "environment_name": [ENVIRONMENTS[int(e)] if e >= 0 else None for e in env],
        "camera_quality_name": [CAMERA_QUALITIES[int(q)] for q in quality],
        "skipped": [],
    }


class _RandomBatches(torch.utils.data.Dataset):
    def __init__(self, n: int, batch_size: int, image_size: int):
        self.n, self.batch_size, self.image_size = n, batch_size, image_size

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        return random_batch(self.batch_size, self.image_size, seed=i)


def _load_config(paths: list[str]) -> dict[str, Any]:
    import yaml

    merged: dict[str, Any] = {}
    for p in paths:
        content = yaml.safe_load(Path(p).read_text()) or {}
        for key, value in content.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
    return merged


def _build(args: argparse.Namespace, extra: list[str]):
    """Model and data module from the config through LightningCLI (run=False), with preset overrides."""
    from lightning.pytorch.cli import LightningCLI

    cfg = _load_config(args.config)
    overrides: list[str] = []
    if args.preset:
        init = ((cfg.get("model") or {}).get("init_args") or {})
        for key in BACKBONE_ARGS:
            if key in init and init[key] is not None:
                overrides += [f"--model.init_args.{key}", str(_preset_for(init[key], args.preset))]
    model_cfg = cfg.get("model") or {}
    if str(model_cfg.get("class_path", "")).endswith("IFASSystem") and (
            (model_cfg.get("init_args") or {}).get("caption_source", "scf") == "scf"):
        # bench times the training step: I-FAS answers from the caption templates, no SCF captions table needed
        overrides += ["--model.init_args.caption_source", "templates"]
    argv = [a for c in args.config for a in ("--config", c)] + overrides + extra
    argv += ["--trainer.logger", "false", "--trainer.enable_checkpointing", "false"]
    class BenchCLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:
            # the project's callback settings (`checkpoint:`, `metrics:` ...) are accepted so that any config of
            # `fasvlm fit` parses, and unused: bench times the training step, not checkpoints or reports
            from fasvlm.cli import callback_groups

            for key, cls in callback_groups().items():
                parser.add_class_arguments(cls, key)

    cli = BenchCLI(model_class=None, datamodule_class=None, subclass_mode_model=True, subclass_mode_data=True,
                   run=False, args=argv, save_config_callback=None, auto_configure_optimizers=False)
    return cli.model, cli.datamodule, cfg


def _data_loader(datamodule, model, batch_size: int, n: int, image_size: int):
    """The config's data module when its data exists (the Trainer then runs its device-side transform), else random
    batches. Returns (loader or None, data module or None, kind)."""
    if datamodule is not None:
        try:
            datamodule.batch_size = batch_size
            import lightning as L

            trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
            trainer.strategy.connect(model)
            datamodule.trainer = trainer
            datamodule.setup("fit")
            datamodule.trainer = None
            return None, datamodule, "config"
        except (FileNotFoundError, ValueError, OSError) as err:
            print(f"fasvlm bench: data of the config unavailable ({err.__class__.__name__}: {str(err)[:200]}); "
                  "using random batches", file=sys.stderr)
    loader = torch.utils.data.DataLoader(_RandomBatches(n, batch_size, image_size), batch_size=None)
    return loader, None, "random"


class _Timer:
    """Callback: times each training step and the gap before it (dataloader wait), after warm-up."""

    def __init__(self, warmup: int, device: torch.device):
        self.warmup, self.device = warmup, device
        self.steps: list[float] = []
        self.waits: list[float] = []
        self.sizes: list[int] = []
        self._end: float | None = None
        self._start = 0.0

    def hooks(self):
        import lightning as L

        timer = self

        class Hook(L.Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                from fasvlm.perf import sync

                sync(timer.device)
                now = time.perf_counter()
                if timer._end is not None and batch_idx >= timer.warmup:
                    timer.waits.append(now - timer._end)
                timer._start = now

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                from fasvlm.perf import sync

                sync(timer.device)
                now = time.perf_counter()
                if batch_idx >= timer.warmup:
                    timer.steps.append(now - timer._start)
                    timer.sizes.append(len(batch["label"]))
                timer._end = now

        return Hook()


def _profile(model, loader, device, precision: str, steps: int) -> list[dict[str, Any]]:
    """Top operators by self time over a few training steps (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    import lightning as L

    trainer = L.Trainer(accelerator=device.type, devices=1, precision=precision, max_steps=steps, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, num_sanity_val_steps=0, use_distributed_sampler=False)
    with profile(activities=activities) as prof:
        trainer.fit(model, train_dataloaders=loader)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = sorted(prof.key_averages(), key=lambda e: getattr(e, key), reverse=True)[:12]
    total = sum(getattr(e, key) for e in prof.key_averages()) or 1.0
    return [{"op": e.key, "self_ms": round(getattr(e, key) / 1e3, 2), "share": round(getattr(e, key) / total, 4),
             "calls": e.count} for e in events]


def run(args: argparse.Namespace, extra: list[str]) -> dict[str, Any]:
    import lightning as L

    from fasvlm.perf import count_flops, peak_flops, peak_memory_bytes, reset_peak_memory, sync

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    precision = args.precision or ("bf16-mixed" if device.type == "cuda" else "32-true")
    model, datamodule, cfg = _build(args, extra)
    spec = getattr(model, "image_spec", None)
    image_size = spec.size if spec is not None else 224
    batch_size = args.batch_size or ((cfg.get("data") or {}).get("init_args") or {}).get("batch_size", 8)
    total_steps = args.warmup + args.steps
    loader, data_module, data_kind = _data_loader(None if args.random_data else datamodule, model, batch_size,
                                                  total_steps + 2, image_size)

    # --- FLOPs of one training step (forward + backward + optimizer) and of one inference batch
    model.setup("fit")  # systems load lazily held parts here (InstructFLIP's frozen T5); Trainer.fit repeats it
    model = model.to(device)
    probe = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in random_batch(batch_size, image_size).items()}
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision.startswith("bf16"))
    opt_cfg = model.configure_optimizers()
    optimizer = opt_cfg["optimizer"] if isinstance(opt_cfg, dict) else opt_cfg

    def train_step():
        model.train()
        with autocast:
            out = model.training_step(probe, 0)
        loss = out["loss"] if isinstance(out, dict) else out
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def infer_step():
        model.eval()
        with torch.no_grad(), autocast:
            model(probe["pixel_values"])

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log outside a Trainer
        train_step()  # materialise optimizer state before counting
        train_flops = count_flops(train_step)
        infer_flops = count_flops(infer_step)
        scoring = _ifas_scoring_flops(model, probe["pixel_values"], autocast)

    # --- timed training through the Trainer
    timer = _Timer(args.warmup, device)
    reset_peak_memory(device)
    trainer = L.Trainer(accelerator=device.type, devices=1, precision=precision, max_steps=total_steps, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, num_sanity_val_steps=0, use_distributed_sampler=False,
                        callbacks=[timer.hooks()])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if data_module is not None:
            trainer.fit(model, datamodule=data_module)
        else:
            trainer.fit(model, train_dataloaders=loader)
    step_time = sum(timer.steps)
    samples = sum(timer.sizes)
    wait = sum(timer.waits)
    train_sps = samples / step_time if step_time else float("nan")

    # --- timed inference (scoring path)
    infer_bs = args.infer_batch_size or batch_size
    pixels = torch.randn(infer_bs, 3, image_size, image_size, device=device)
    model.eval()
    with torch.no_grad(), autocast:
        for _ in range(max(1, args.warmup)):
            model(pixels)
        sync(device)
        t0 = time.perf_counter()
        for _ in range(args.infer_batches):
            model(pixels)
        sync(device)
    infer_ips = args.infer_batches * infer_bs / (time.perf_counter() - t0)

    peak, peak_source = peak_flops(device)
    flops_per_sample = train_flops / batch_size
    result = {
        "config": args.config,
        "preset": args.preset,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "precision": precision,
        "data": data_kind,
        "batch_size": batch_size,
        "steps": len(timer.steps),
        "flops_per_sample": flops_per_sample,
        "infer_flops_per_image": infer_flops / batch_size,
        "train_samples_per_s": train_sps,
        "infer_images_per_s": infer_ips,
        "peak_mem_bytes": peak_memory_bytes(device),
        "dataloader_wait_frac": wait / (wait + step_time) if (wait + step_time) else 0.0,
        "peak_flops": peak,
        "peak_flops_source": peak_source,
        "mfu": flops_per_sample * train_sps / peak,
        "infer_mfu": (infer_flops / batch_size) * infer_ips / peak,
    }
    if scoring is not None:
        result["ifas_scoring_flops_per_image"] = {k: (v / batch_size if k in ("full_prompt", "reused_prefix") else v)
                                                  for k, v in scoring.items()}
    if args.profile:
        prof_loader, _, _ = _data_loader(None, model, batch_size, args.profile + 1, image_size)
        result["top_ops"] = _profile(model, prof_loader, device, precision, args.profile)
    return result


def _ifas_scoring_flops(system, pixel_values: torch.Tensor, autocast) -> dict[str, Any] | None:
    """I-FAS scoring FLOPs of one batch with the whole prompt per image and with the constant prefix encoded once
    and reused through the KV cache (issue 20); None for other systems."""
    inner = getattr(system, "model", None)
    if not hasattr(inner, "first_answer_logits"):
        return None
    from fasvlm.perf import count_flops

    system.eval()
    counts = {}
    for name, reuse in (("full_prompt", False), ("reused_prefix", True)):
        with torch.no_grad(), autocast:
            counts[name] = count_flops(lambda r=reuse: inner.first_answer_logits(pixel_values, reuse_prefix=r))
    return {**counts, "reduction": 1.0 - counts["reused_prefix"] / counts["full_prompt"],
            "prompt_tokens": inner.prompt_flops()}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fasvlm bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", action="append", required=True, help="LightningCLI config (repeatable)")
    p.add_argument("--preset", choices=["tiny", "small", "real"], default=None,
                   help="swap every backbone for this preset size (random init); real = published dimensions")
    p.add_argument("--steps", type=int, default=10, help="timed training steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed warm-up steps")
    p.add_argument("--batch-size", type=int, default=None, help="default: the config's data batch_size")
    p.add_argument("--infer-batch-size", type=int, default=None)
    p.add_argument("--infer-batches", type=int, default=10)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--precision", default=None, help="default: bf16-mixed on GPU, 32-true on CPU")
    p.add_argument("--random-data", action="store_true", help="time compute only: random batches, no data loading")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="also profile N training steps and report the top operators by self time")
    p.add_argument("--data", action="store_true",
                   help="measure the data path (loader images/s per worker core against the decode rate), no model")
    p.add_argument("--data-images", type=int, default=128,
                   help="--data: images of the config's data per path (train, eval)")
    p.add_argument("--data-min-items", type=int, default=256,
                   help="--data: images per timed loader pass (the set is repeated up to this many)")
    p.add_argument("--full-size-images", type=int, default=16,
                   help="--data: full-size photographs rendered into a temporary directory (0: skip them)")
    p.add_argument("--full-size", default="1280x960", help="--data: their WIDTHxHEIGHT")
    p.add_argument("--image-size", type=int, default=None,
                   help="--data: model input size to measure at (default: the config's model's), e.g. 224")
    return p


@contextlib.contextmanager
def _stdout_to_stderr():
    """Everything written to stdout meanwhile (prints, Lightning, native libraries) goes to stderr instead."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    old, sys.stdout = sys.stdout, sys.stderr
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 1)
        os.close(saved)
        sys.stdout = old


def main(argv: list[str] | None = None) -> int:
    args, extra = build_parser().parse_known_args(argv)
    with _stdout_to_stderr():
        if args.data:
            from fasvlm.tools.bench_data import run_data

            result = run_data(args, _build(args, extra))
        else:
            result = run(args, extra)
    print(json.dumps(result, indent=2))
    return 0
