"""SLURM requeue on SIGUSR1 that works across nodes: the ranks agree on a step, then checkpoint and requeue.

Lightning's own SLURM handler (``_SignalConnector._slurm_sigusr_handler_fn``) saves ``hpc_ckpt_N.ckpt`` *inside the
signal handler*. ``trainer.save_checkpoint`` begins with a barrier, and each rank runs its handler wherever the signal
found it: on one node in the backward pass, on another in the optimizer step. The ranks then wait in different
collectives (barrier vs. the gradient all-reduce) until the process-group timeout (30 min by default), and the job
neither checkpoints nor requeues. On one node SLURM delivers the signal to every task at the same instant and this
rarely shows; across nodes it is the rule (seen with tests/slurm/multinode: rank 1 in backward, rank 0 in
``optimizer.step``, both in ``barrier``; Lightning issue #21406 reports the hang).

:class:`SlurmRequeue` replaces that handler when Lightning would install it (SLURM manages the tasks and the cluster
environment has ``auto_requeue``): its handler only records the signal. At the end of every training batch the ranks
reduce the flag (one boolean all-reduce; any rank's signal counts), so all of them act on the same step: they save
``<default_root_dir>/hpc_ckpt_<N>.ckpt`` (Lightning's name and place, found by ``fasvlm fit --ckpt_path last``) at the
batch end, the point where ``ModelCheckpoint(every_n_train_steps)`` saves, so the resume is exact mid-epoch; rank 0 then
runs ``scontrol requeue <job>`` as Lightning does. Training goes on until SLURM stops the job (as with Lightning's
handler), and the requeued job resumes from the newest checkpoint.

Lightning registers its SIGUSR1 handler only when none is installed (``_SignalConnector.register_signal_handlers``),
so installing ours in ``setup`` is enough; ``teardown`` restores the previous handler. Hand-written: Lightning has no
deferred (step-synchronised) requeue.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import Callback

__all__ = ["SlurmRequeue"]


class SlurmRequeue(Callback):
    """Step-synchronised SIGUSR1 → ``hpc_ckpt_<N>.ckpt`` → ``scontrol requeue`` under SLURM (see the module docstring).

    Inactive (no handler, no per-step collective) unless SLURM manages the tasks with ``auto_requeue`` on.
    """

    def __init__(self) -> None:
        self._requested = False
        self._active = False
        self._previous: Any = None
        self._signum: int | None = None
        self.saved: list[Path] = []  # hpc checkpoints written by this process (tests, logs)

    @staticmethod
    def _environment(trainer: pl.Trainer) -> SLURMEnvironment | None:
        env = getattr(trainer.strategy, "cluster_environment", None)
        if isinstance(env, SLURMEnvironment) and env.auto_requeue and env.requeue_signal is not None:
            return env
        return None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        env = self._environment(trainer)
        if stage != "fit" or env is None or sys.platform == "win32":
            return
        self._signum = int(env.requeue_signal)
        self._previous = signal.getsignal(self._signum)
        signal.signal(self._signum, self._on_signal)
        self._active = True

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._requested = True  # nothing else here: the work happens at the next batch end, on every rank together

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not self._active:
            return
        # the same collective on every rank at every step; True when any rank got the signal
        if not trainer.strategy.reduce_boolean_decision(self._requested, all=False):
            return
        self._requested = False
        path = self._next_path(Path(trainer.default_root_dir))
        for logger in trainer.loggers:
            logger.save()  # flush what was logged up to here
        trainer.save_checkpoint(path)  # every rank (barrier inside); rank 0 writes
        self.saved.append(path)
        if trainer.is_global_zero:
            print(f"fasvlm: SIGUSR1: saved {path} at step {trainer.global_step}; requeueing", file=sys.stderr,
                  flush=True)
            self._requeue()

    @staticmethod
    def _next_path(root: Path) -> Path:
        numbers = [int(m.group(1)) for p in root.glob("hpc_ckpt_*.ckpt")
                   if (m := re.fullmatch(r"hpc_ckpt_(\d+)\.ckpt", p.name))]
        return root / f"hpc_ckpt_{max(numbers, default=0) + 1}.ckpt"

    @staticmethod
    def _requeue() -> None:
        array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
        job = f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array_job else os.environ["SLURM_JOB_ID"]
        if not re.fullmatch(r"[0-9_]+", job):
            print(f"fasvlm: SIGUSR1: not requeueing: unexpected SLURM job id {job!r}", file=sys.stderr, flush=True)
            return
        scontrol = shutil.which("scontrol")
        if scontrol is None:
            print("fasvlm: SIGUSR1: `scontrol` not on PATH; the job is not requeued (resubmit it with the same job "
                  "name to resume)", file=sys.stderr, flush=True)
            return
        result = subprocess.run([scontrol, "requeue", job], check=False)
        status = "requeued" if result.returncode == 0 else f"`scontrol requeue` failed (exit code {result.returncode})"
        print(f"fasvlm: SLURM job {job} {status}", file=sys.stderr, flush=True)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._active and self._signum is not None:
            signal.signal(self._signum, self._previous if self._previous is not None else signal.SIG_DFL)
        self._active = False
