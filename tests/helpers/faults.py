"""Test-only fault injection for tests/test_runs_faults.py and tests/test_runs.py (loaded with --trainer.callbacks+=).

* ``SignalAtStep(step, signal="SIGTERM")``: this process sends itself a signal right after a training step (scancel,
  preemption).
* ``FaultOnCheckpointWrite(mode, after_saves)``: arms a fault for the checkpoint write that follows ``after_saves``
  complete writes of ``<name>.ckpt`` files: ``kill`` SIGKILLs the process with half of the temporary file written
  (a crash during the write); ``enospc`` makes the write fail as on a full disk. The fault is injected in ``os.write``
  for file descriptors of the checkpoint's temporary file (``.<name>.ckpt.tmp-<pid>``), the same call
  ``fasvlm.callbacks.checkpoint.atomic_write_bytes`` makes.
"""

from __future__ import annotations

import errno
import os
import signal

import lightning as L


class SignalAtStep(L.Callback):
    def __init__(self, step: int, signal_name: str = "SIGTERM"):
        self.step, self.signum, self.sent = step, getattr(signal, signal_name), False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if not self.sent and trainer.global_step >= self.step:
            self.sent = True
            os.kill(os.getpid(), self.signum)


class FaultOnCheckpointWrite(L.Callback):
    def __init__(self, mode: str, after_saves: int = 1):
        if mode not in ("kill", "enospc"):
            raise ValueError(mode)
        self.mode, self.after_saves = mode, after_saves
        self._saves = 0
        real_write = os.write

        def write(fd, data):
            target = os.readlink(f"/proc/self/fd/{fd}") if os.path.exists(f"/proc/self/fd/{fd}") else ""
            name = os.path.basename(target)
            if name.startswith(".") and ".ckpt.tmp-" in name and self._saves > self.after_saves:
                if self.mode == "kill":
                    real_write(fd, bytes(data)[: max(1, len(data) // 2)])
                    os.kill(os.getpid(), signal.SIGKILL)
                raise OSError(errno.ENOSPC, "No space left on device (injected)")
            return real_write(fd, data)

        os.write = write

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        self._saves += 1  # called while the checkpoint dict is built, before its file is written
