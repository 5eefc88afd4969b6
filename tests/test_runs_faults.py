"""Issue 14, fault injection through the real CLI (slow: several short trainings each).

* SIGTERM (scancel, preemption) -> a resumable last.ckpt and exit code 143; the resume ends with the weights of an
  uninterrupted run (finding 4).
* A crash during a checkpoint write (SIGKILL with half of the temporary file written) and a full destination
  filesystem (a real 640 KiB tmpfs mounted for the test; needs root, skipped otherwise) -> the previous checkpoint
  is intact; the resume ends with the weights of an uninterrupted run (finding 6).
* A torn last.ckpt (what Lightning's cross-filesystem move left on a full disk) -> resume falls back to the previous
  good checkpoint and says which (finding 6).
* A resume with a larger max_epochs on a OneCycle schedule stops with how to proceed instead of Lightning's
  "Tried to step N times" (finding 5); ``--ckpt_path none`` says in the report that the model is untrained (finding 3).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import REPO
from test_runs import fasvlm, ok

pytestmark = pytest.mark.slow

BASE = str(REPO / "conf/baseline/tiny.yaml")
TRAIN = ["--config", BASE, "--data.init_args.num_workers", "0", "--data.init_args.batch_size", "4",
         "--trainer.max_steps", "7", "--trainer.max_epochs", "-1", "--trainer.check_val_every_n_epoch", "1000",
         "--trainer.num_sanity_val_steps", "0", "--trainer.enable_progress_bar", "false",
         "--last_checkpoint.every_n_train_steps", "2"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, synthetic_root) -> Path:
    work = tmp_path_factory.mktemp("faults")
    (work / "data").mkdir()
    (work / "data" / "synthetic").symlink_to(synthetic_root)
    return work


def _fit(workdir: Path, run: Path, *extra: str) -> subprocess.CompletedProcess:
    return fasvlm(["fit", *TRAIN, "--trainer.default_root_dir", str(run), *extra], workdir)


def _state(ckpt: Path) -> dict:
    return torch.load(ckpt, map_location="cpu", weights_only=True)


def _same_weights(a: Path, b: Path) -> None:
    sa, sb = _state(a), _state(b)
    assert sa["global_step"] == sb["global_step"] == 7
    assert sa["state_dict"].keys() == sb["state_dict"].keys()
    for key in sa["state_dict"]:
        assert torch.equal(sa["state_dict"][key], sb["state_dict"][key]), f"{key} differs from the uninterrupted run"


@pytest.fixture(scope="module")
def reference(workdir) -> Path:
    """The uninterrupted run: 7 steps."""
    run = workdir / "reference"
    ok(_fit(workdir, run))
    return run / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def terminated(workdir) -> Path:
    """A run stopped by SIGTERM after step 5 (kept pristine: tests resume copies of it)."""
    run = workdir / "terminated"
    proc = _fit(workdir, run, "--trainer.callbacks+=helpers.faults.SignalAtStep", "--trainer.callbacks.step", "5")
    assert proc.returncode == 143, f"SIGTERM must end fit with 143, got {proc.returncode}\n{proc.stderr[-3000:]}"
    assert "saved" in proc.stderr and "at step 5" in proc.stderr
    return run


def test_sigterm_leaves_a_resumable_checkpoint_and_exit_code_143(workdir, reference, terminated, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(terminated, run)
    assert _state(run / "checkpoints" / "last.ckpt")["global_step"] == 5
    resumed = ok(_fit(workdir, run, "--ckpt_path", "last"))
    assert f"resuming from {run / 'checkpoints' / 'last.ckpt'}" in resumed.stderr
    _same_weights(reference, run / "checkpoints" / "last.ckpt")


def test_resume_falls_back_to_the_previous_checkpoint_when_last_is_torn(workdir, reference, terminated, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(terminated, run)
    last = run / "checkpoints" / "last.ckpt"
    assert _state(run / "checkpoints" / "last.ckpt.prev")["global_step"] == 4
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # torn, as a cross-filesystem move leaves it
    resumed = ok(_fit(workdir, run, "--ckpt_path", "last"))
    assert f"skipping unreadable checkpoint {last}" in resumed.stderr
    assert f"resuming from {run / 'checkpoints' / 'last.ckpt.prev'}" in resumed.stderr
    _same_weights(reference, last)


def test_kill_during_a_checkpoint_write_keeps_the_previous_one(workdir, reference):
    run = workdir / "killed"
    proc = _fit(workdir, run, "--trainer.callbacks+=helpers.faults.FaultOnCheckpointWrite",
                "--trainer.callbacks.mode", "kill", "--trainer.callbacks.after_saves", "1")
    assert proc.returncode == -9, proc.stderr[-3000:]
    ckpt_dir = run / "checkpoints"
    assert [p.name for p in ckpt_dir.glob(".last.ckpt.tmp-*")], "the write was not interrupted"
    assert _state(ckpt_dir / "last.ckpt")["global_step"] == 2  # the step-4 write died half-way
    resumed = ok(_fit(workdir, run, "--ckpt_path", "last"))
    assert "a checkpoint write that did not finish" in resumed.stderr
    assert not list(ckpt_dir.glob(".last.ckpt.tmp-*"))
    _same_weights(reference, ckpt_dir / "last.ckpt")


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 640 KiB tmpfs (the baseline's checkpoint is ~370 KB: one fits, a second temporary file does not)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "small_fs"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=640k", "tmpfs", str(mnt)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_full_destination_filesystem_keeps_the_previous_checkpoint(workdir, reference, small_tmpfs, tmp_path):
    run = tmp_path / "run"
    ckpts = small_tmpfs / "checkpoints"
    dirs = ["--checkpoint.dirpath", str(ckpts), "--last_checkpoint.dirpath", str(ckpts)]
    proc = _fit(workdir, run, *dirs)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "(the filesystem is full)" in proc.stderr and "the previous checkpoint there is unchanged" in proc.stderr
    assert _state(ckpts / "last.ckpt")["global_step"] == 2  # readable, the state before the failed write
    assert not list(ckpts.glob(".last.ckpt.tmp-*"))
    subprocess.run(["mount", "-o", "remount,size=4m", str(small_tmpfs)], check=True)  # the user frees space
    ok(_fit(workdir, run, *dirs, "--ckpt_path", "last"))
    _same_weights(reference, ckpts / "last.ckpt")


def test_longer_resume_of_a_onecycle_schedule_says_how_to_proceed(workdir, tmp_path):
    run = tmp_path / "run"
    # batch 3: 7 steps an epoch (torch's OneCycleLR divides by zero when pct_start * total_steps == 1, e.g. 10 steps)
    args = ["--config", BASE, "--data.init_args.num_workers", "0", "--data.init_args.batch_size", "3",
            "--trainer.check_val_every_n_epoch", "1000", "--trainer.num_sanity_val_steps", "0",
            "--trainer.enable_progress_bar", "false", "--model.init_args.scheduler", "onecycle",
            "--trainer.default_root_dir", str(run)]
    ok(fasvlm(["fit", *args, "--trainer.max_epochs", "1"], workdir))
    proc = fasvlm(["fit", *args, "--trainer.max_epochs", "2", "--ckpt_path", "last"], workdir)
    assert proc.returncode != 0
    assert "Tried to step" not in proc.stderr
    assert "OneCycleLR schedule was built for" in proc.stderr and "Resume with the original" in proc.stderr


def test_ckpt_path_none_reports_an_untrained_model(workdir, reference):
    run = reference.parent.parent
    proc = ok(fasvlm(["test", *TRAIN[:6], "--trainer.default_root_dir", str(run), "--ckpt_path", "none"], workdir))
    assert "UNTRAINED model" in proc.stderr
    report = json.loads((run / "test_metrics.json").read_text())
    assert report["untrained"] is True and report["checkpoint"] is None
