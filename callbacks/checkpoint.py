"""Checkpoints that never lose work: atomic writes, end-of-training and SIGTERM saves, resume-horizon checks.

* :class:`AtomicCheckpointIO` writes ``<name>.ckpt`` through a temporary file in the *same directory* (fsync, then
  ``os.replace``, then fsync of the directory), so a crash or a full disk never leaves a truncated checkpoint where a
  good one was. Lightning's own ``TorchCheckpointIO`` writes inside an fsspec transaction whose temporary file lives in
  the system temp directory and is *moved* (a copy across filesystems: not atomic, truncated on a full disk).
  The previous good file is kept as ``<name>.ckpt.prev`` (a hard link: no extra space) for the resume fallback.
* :class:`LastCheckpoint` is the ``last_checkpoint:`` ModelCheckpoint: it also writes the end-of-epoch state when
  ``every_n_train_steps`` is set (Lightning's ModelCheckpoint then skips epoch ends, so the final state of a run
  whose step count is not a multiple of N never reached ``last.ckpt``).
* :class:`SigtermCheckpoint` writes a resumable ``last.ckpt`` when Lightning stops ``fit`` on SIGTERM (scancel,
  preemption); the CLI then exits with 143 (128 + SIGTERM) instead of Lightning's exit code 0.
* :class:`ScheduleHorizonCheck` refuses a resume whose longer ``max_epochs``/``max_steps`` exceeds the horizon the
  LR schedule was built for (OneCycleLR would crash with "Tried to step N times"; cosine would silently rise again).
* :func:`readable_checkpoint` picks the newest checkpoint that loads, for ``--ckpt_path last``.

Hand-written where Lightning has no equivalent (no same-directory atomic CheckpointIO, no SIGTERM checkpoint).
"""

from __future__ import annotations

import errno
import io
import os
import sys
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

__all__ = ["AtomicCheckpointIO", "LastCheckpoint", "SigtermCheckpoint", "ScheduleHorizonCheck", "atomic_write_bytes",
           "readable_checkpoint", "checkpoint_candidates", "remove_stale_temporaries", "SIGTERM_EXIT_CODE"]

SIGTERM_EXIT_CODE = 143  # 128 + SIGTERM: what a shell reports for a process ended by SIGTERM
_CHUNK = 1 << 20


def atomic_write_bytes(path: str | Path, data: bytes | memoryview, *, keep_previous: bool = True) -> Path:
    """Write ``data`` to ``path`` so that ``path`` is always either the old complete file or the new complete one.

    Temporary file ``.<name>.tmp-<pid>`` beside ``path`` (same filesystem: the rename is atomic), written in chunks,
    fsync'ed, renamed over ``path``; the directory is fsync'ed so the rename survives a power loss. With
    ``keep_previous`` the file being replaced stays reachable as ``<name>.prev`` (hard link; skipped where the
    filesystem has none). On any error the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    view = memoryview(data).cast("B")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for start in range(0, len(view), _CHUNK):
                chunk = view[start:start + _CHUNK]
                while chunk:
                    written = os.write(fd, chunk)
                    chunk = chunk[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        if keep_previous and path.is_file():
            prev, prev_tmp = path.with_name(path.name + ".prev"), path.with_name(f".{path.name}.prev-{os.getpid()}")
            try:
                prev_tmp.unlink(missing_ok=True)
                os.link(path, prev_tmp)
                os.replace(prev_tmp, prev)
            except OSError:  # no hard links here (some network filesystems): keep no .prev rather than copy
                prev_tmp.unlink(missing_ok=True)
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            hint = " (the filesystem is full)" if err.errno == errno.ENOSPC else ""
            raise OSError(err.errno, f"could not write checkpoint {path}{hint}: {err.strerror or err}; the previous "
                                     f"checkpoint there is unchanged") from err
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems do not fsync directories
        pass
    finally:
        os.close(fd)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning CheckpointIO: ``torch.save`` to memory, then :func:`atomic_write_bytes` on the destination."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options (got {storage_options!r})")
        import torch

        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write_bytes(path, buffer.getbuffer())


class LastCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` for ``last.ckpt`` whose end-of-epoch save also happens with ``every_n_train_steps``.

    Training always ends at an epoch end (``max_epochs``, or an epoch cut short by ``max_steps``), so the final state
    reaches ``last.ckpt`` whatever N is.
    """

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if (self._every_n_train_steps >= 1 and self._should_save_on_train_epoch_end(trainer)
                and not self._should_skip_saving_checkpoint(trainer)):
            self._save_topk_checkpoint(trainer, self._monitor_candidates(trainer))


class SigtermCheckpoint(L.Callback):
    """SIGTERM (scancel, preemption) during ``fit``: save a resumable ``<dirpath>/last.ckpt``, then stop.

    Lightning's own handling ends ``fit`` with ``SystemExit()`` (exit code 0, no checkpoint), and under DDP its handler
    runs a collective inside the signal handler. Here the handler only sets a flag (replacing Lightning's SIGTERM
    handler from ``on_train_start`` on; SIGUSR1 and its requeue stay Lightning's). At the end of each training batch
    the flag is reduced over the ranks (one rank's signal stops all, same step), the checkpoint is written where
    ``ModelCheckpoint(every_n_train_steps)`` writes it (so a resume continues step for step) and ``SIGTERMException``
    is raised; the CLI turns it into exit code 143. A signal during validation takes effect at the next batch end.
    """

    def __init__(self, dirpath: str | Path, filename: str = "last"):
        self.path = Path(dirpath) / f"{filename}.ckpt"
        self.saved_step: int | None = None
        self.received = False

    def _on_sigterm(self, signum, frame) -> None:
        self.received = True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_sigterm)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        stop = self.received or bool(trainer.received_sigterm)
        if trainer.world_size > 1:  # every rank calls this once per batch: the collectives pair up
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if stop and self.saved_step is None:
            trainer.save_checkpoint(self.path)
            self.saved_step = trainer.global_step
            if trainer.is_global_zero:
                print(f"fasvlm: SIGTERM: saved {self.path} at step {trainer.global_step}; exit code "
                      f"{SIGTERM_EXIT_CODE}. Resume with the same command and --ckpt_path last.", file=sys.stderr,
                      flush=True)
            raise SIGTERMException()


def _horizon(scheduler) -> int | None:
    """Number of steps a fixed-horizon schedule was built for, else None."""
    import torch

    sched = torch.optim.lr_scheduler
    if isinstance(scheduler, sched.OneCycleLR):
        return int(scheduler.total_steps)
    if isinstance(scheduler, sched.CosineAnnealingLR):
        return int(scheduler.T_max)
    if isinstance(scheduler, sched.SequentialLR):
        tails = [_horizon(s) for s in scheduler._schedulers]  # noqa: SLF001 (torch has no public accessor)
        if tails and tails[-1] is not None:
            return int(scheduler._milestones[-1]) + tails[-1]  # noqa: SLF001
    return None


class ScheduleHorizonCheck(L.Callback):
    """After a resume, the restored LR schedule must cover the run's length; otherwise stop with how to proceed."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step == 0:
            return
        total = trainer.estimated_stepping_batches
        for config in trainer.lr_scheduler_configs:
            horizon = _horizon(config.scheduler)
            if horizon is None or config.interval != "step" or total <= horizon:
                continue
            raise RuntimeError(
                f"fasvlm: the resumed {type(config.scheduler).__name__} schedule was built for {horizon} steps (the "
                f"first launch's max_epochs/max_steps) but this run asks for {int(total)}. A fixed-horizon LR "
                "schedule cannot be extended without changing the steps already taken. Resume with the original "
                "--trainer.max_epochs/--trainer.max_steps, or start a new run with the longer schedule (a new "
                "run directory, or fit --overwrite).")


def remove_stale_temporaries(ckpt_dir: Path) -> list[Path]:
    """Remove the temporary files a killed :func:`atomic_write_bytes` left in ``ckpt_dir`` (call only while no other
    process writes there: the CLI holds the run directory's lock)."""
    stale = [p for p in Path(ckpt_dir).glob(".*.ckpt.tmp-*") if p.is_file()] if Path(ckpt_dir).is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def checkpoint_candidates(run_dir: Path, ckpt_dir: Path) -> list[Path]:
    """Resume candidates, newest first: ``last.ckpt``, Lightning's ``hpc_ckpt_*.ckpt`` and ``last.ckpt.prev``."""
    paths = [ckpt_dir / "last.ckpt", *run_dir.glob("hpc_ckpt_*.ckpt"), ckpt_dir / "last.ckpt.prev"]
    return sorted((p for p in paths if p.exists()), key=_mtime, reverse=True)


def _mtime(path: Path) -> float:
    """Modification time of a checkpoint file, or of the newest file inside a DeepSpeed/FSDP checkpoint directory."""
    if path.is_dir():
        return max((f.stat().st_mtime for f in path.rglob("*") if f.is_file()), default=path.stat().st_mtime)
    return path.stat().st_mtime


def readable_checkpoint(candidates: list[Path]) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The first of ``candidates`` that loads (``weights_only``, memory-mapped: cheap), and the ones skipped with
    why. Directories (DeepSpeed/FSDP checkpoints) are taken as they are."""
    import torch

    skipped: list[tuple[Path, str]] = []
    for path in candidates:
        if path.is_dir():
            return path, skipped
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            if not isinstance(state, dict) or "state_dict" not in state:
                raise ValueError("no state_dict")
        except Exception as err:  # noqa: BLE001 (a torn file raises zip, pickle or OS errors)
            skipped.append((path, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"))
            continue
        return path, skipped
    return None, skipped
