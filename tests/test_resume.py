"""Exact resume: a run killed with SIGKILL mid-epoch and resumed with --ckpt_path last ends with weights identical
to the uninterrupted run (same seed, same config), on CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO

CONFIGS = {
    "baseline": "conf/baseline/tiny.yaml",
    "instructflip": "conf/instructflip/tiny.yaml",
    "ifas": "conf/ifas/tiny.yaml",
}


def _fit(workdir: Path, config: str, run: Path, extra: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])}
    args = [sys.executable, "-m", "fasvlm.cli", "fit", "--config", str(REPO / config),
            "--trainer.default_root_dir", str(run), "--trainer.max_steps", "7", "--trainer.max_epochs", "-1",
            "--trainer.check_val_every_n_epoch", "1000", "--trainer.num_sanity_val_steps", "0",
            "--trainer.enable_progress_bar", "false",
            "--data.init_args.batch_size", "4", "--data.init_args.num_workers", "1",
            "--last_checkpoint.every_n_train_steps", "2", *extra]
    return subprocess.run(args, cwd=workdir, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, synthetic_root, tiny_clip_dir) -> Path:
    work = tmp_path_factory.mktemp("resume")
    (work / "data").mkdir()
    (work / "data" / "synthetic").symlink_to(synthetic_root)
    (work / "data" / "tiny_clip").symlink_to(tiny_clip_dir)  # conf/ifas/tiny.yaml's frozen CLIP
    return work


def _weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]


@pytest.mark.parametrize("method", list(CONFIGS))
def test_sigkill_mid_epoch_then_resume_gives_identical_weights(method, workdir):
    if not (REPO / CONFIGS[method]).is_file():
        pytest.skip(f"{CONFIGS[method]} not present")
    ref, crashed = workdir / f"{method}_ref", workdir / f"{method}_crash"
    done = _fit(workdir, CONFIGS[method], ref, [])
    assert done.returncode == 0, done.stderr[-4000:]

    killed = _fit(workdir, CONFIGS[method], crashed,
                  ["--trainer.callbacks+=helpers.kill_at_step.KillAtStep", "--trainer.callbacks.step", "5"])
    assert killed.returncode == -9, f"expected SIGKILL, got {killed.returncode}: {killed.stderr[-3000:]}"
    last = torch.load(crashed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == 4  # the crash lost step 5; every_n_train_steps=2 kept step 4
    epoch_loop = last["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["completed"]
    assert epoch_loop > 0  # mid-epoch

    resumed = _fit(workdir, CONFIGS[method], crashed, ["--ckpt_path", "last"])
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    a, b = _weights(ref / "checkpoints" / "last.ckpt"), _weights(crashed / "checkpoints" / "last.ckpt")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{method}: {key} differs after resume"
