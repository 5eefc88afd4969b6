"""A failure while a checkpoint is being written never corrupts the last good checkpoint.

The CLI gives the Trainer :class:`fasvlm.callbacks.checkpoint.AtomicCheckpointIO`: temporary file in the destination
directory, fsync, rename (Lightning's own fsspec transaction moves a temporary file from the system temp directory,
which is a non-atomic copy across filesystems: finding 6 of issue 14). The end-to-end versions (SIGKILL during the
write, a real full tmpfs) are in tests/test_runs_faults.py.
"""

from __future__ import annotations

import errno
import io
import os

import lightning as L
import pytest
import torch

from fasvlm.callbacks import checkpoint as ckpt_module
from fasvlm.callbacks.checkpoint import AtomicCheckpointIO, atomic_write_bytes, readable_checkpoint
from fasvlm.systems.baseline import BaselineSystem


def test_failed_save_keeps_the_previous_checkpoint_and_no_temporary(tmp_path, monkeypatch):
    model = BaselineSystem(vision="tiny")
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, max_steps=1,
                        plugins=[AtomicCheckpointIO()])
    trainer.strategy.connect(model)
    path = tmp_path / "last.ckpt"
    trainer.save_checkpoint(path)
    good = path.read_bytes()
    saved = {k: v.clone() for k, v in model.state_dict().items()}

    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)

    real_write = os.write
    calls = []

    def full_disk(fd, data):
        calls.append(os.readlink(f"/proc/self/fd/{fd}"))
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, bytes(data)[: len(data) // 2])  # a short write first, as on a nearly full disk

    monkeypatch.setattr(ckpt_module.os, "write", full_disk)
    with pytest.raises(OSError, match=r"filesystem is full.*previous checkpoint there is unchanged"):
        trainer.save_checkpoint(path)
    monkeypatch.undo()

    assert calls and all(os.path.dirname(c) == str(tmp_path) for c in calls)  # the temporary file is beside it
    assert path.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no temporary left behind
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    assert all(torch.equal(state[k], saved[k]) for k in saved)  # the earlier weights, not the half-written ones


def test_replaced_checkpoint_stays_as_prev_and_resume_skips_a_torn_file(tmp_path):
    path = tmp_path / "last.ckpt"
    for step in (1, 2):
        buf = io.BytesIO()
        torch.save({"state_dict": {"w": torch.full((2,), float(step))}, "global_step": step}, buf)
        atomic_write_bytes(path, buf.getbuffer())
    prev = tmp_path / "last.ckpt.prev"
    assert torch.load(prev, weights_only=True)["global_step"] == 1
    assert torch.load(path, weights_only=True)["global_step"] == 2
    path.write_bytes(path.read_bytes()[:100])  # torn
    found, skipped = readable_checkpoint([path, prev])
    assert found == prev and [p for p, _ in skipped] == [path]
