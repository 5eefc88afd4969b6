"""Fixtures of the `gpu` tests (`make gpu-check`).

Three ways these tests run:
- on a machine with CUDA (``make gpu-check``): everything, at the sizes the tests name for a GPU;
- with ``GPU_CHECK_DRY=1`` on a CPU (``GPU_CHECK_DRY=1 make gpu-check``): the same tests at tiny size, each test that
  needs CUDA itself (DeepSpeed, FSDP on NCCL, inductor's GPU kernels, real-size models) skipped with the reason
  ``needs CUDA: ...``, which the driver lists;
- anywhere else (``make test``): collected and skipped.

The data is the CelebA-Spoof layout written by ``tests/conftest.py:write_celeba_layout`` (PIL only), under the three
roots the tiny configs read (``data/synthetic/{celeba_spoof,synth_lowlight,synth_phonecam}``): the synthetic generator
needs PyAV, which a bare GPU machine lacks and whose wheel (36 MB) would take most of what a device call can carry.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, write_celeba_layout

CUDA = torch.cuda.is_available()
DRY = os.environ.get("GPU_CHECK_DRY") == "1"
SKIP_REASON = ("needs a CUDA GPU: run by `make gpu-check` on a GPU machine (`GPU_CHECK_DRY=1 make gpu-check` runs "
               "these tests on CPU at tiny size)")
ACCELERATOR = "gpu" if CUDA else "cpu"
# small presets on a GPU (ViT-S-width encoder, OPT-125M, T5-small width): bf16 numerics at a size where they matter.
# GPU_CHECK_SIZE=small runs the GPU sizes in the dry run too (slow on CPU; a check of the configs, not of speed).
SIZE = os.environ.get("GPU_CHECK_SIZE") or ("small" if CUDA else "tiny")


def need_cuda(what: str) -> None:
    """Skip a test that cannot run without CUDA; the driver lists these reasons (``needs CUDA: ...``)."""
    if not CUDA:
        pytest.skip(f"needs CUDA: {what}")


@pytest.fixture(autouse=True)
def _gpu_or_dry():
    if not (CUDA or DRY):
        pytest.skip(SKIP_REASON)


@pytest.fixture(scope="session")
def workdir(tmp_path_factory, tiny_clip_dir) -> Path:
    """A working directory laid out as the tiny configs expect: data/synthetic/<domain> and data/tiny_clip."""
    work = tmp_path_factory.mktemp("gpu_work")
    for seed, domain in enumerate(("celeba_spoof", "synth_lowlight", "synth_phonecam")):
        write_celeba_layout(work / "data" / "synthetic" / domain, n_train_subjects=10, n_test_subjects=3, seed=seed)
    (work / "data" / "tiny_clip").symlink_to(tiny_clip_dir)
    return work


def fasvlm(workdir: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python -m fasvlm.cli ARGS`` in ``workdir`` (one process per run: strategies set up process groups)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "MASTER_", "LOCAL_RANK", "WORLD_SIZE"))}
    env.update(HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
    if not CUDA:
        env["OMP_NUM_THREADS"] = "1"
    return subprocess.run([sys.executable, "-m", "fasvlm.cli", *args], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=timeout)


def fit_args(config: str, run: Path, *, steps: int, extra: tuple[str, ...] = ()) -> list[str]:
    """`fit` of a tiny config for ``steps`` optimizer steps, a checkpoint every step, 2 validation batches."""
    return ["fit", "--config", str(REPO / config), *extra,
            "--trainer.default_root_dir", str(run), "--trainer.max_steps", str(steps), "--trainer.max_epochs", "-1",
            "--trainer.limit_val_batches", "2", "--trainer.val_check_interval", str(steps),
            "--trainer.num_sanity_val_steps", "0", "--trainer.enable_progress_bar", "false",
            "--data.init_args.batch_size", "8", "--data.init_args.num_workers", "2",
            "--last_checkpoint.every_n_train_steps", "1"]


def tail(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-6000:]}"
