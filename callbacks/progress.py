"""Progress for non-terminal output (SLURM logs, pipes): one plain line every N optimizer steps.

Rich/TQDM bars redraw themselves with carriage returns: in a log file that is either nothing until the end or
thousands of partial lines. The CLI uses :class:`LineProgress` instead whenever stdout is not a terminal
(``every_n_steps`` = ``trainer.log_every_n_steps``).
"""

from __future__ import annotations

import sys
import time

import lightning as L
from lightning.pytorch.callbacks import ProgressBar

__all__ = ["LineProgress"]


class LineProgress(ProgressBar):
    """Print ``epoch E step S/T  <metrics>  <s/step>`` every ``every_n_steps`` steps and at each epoch end (rank 0)."""

    def __init__(self, every_n_steps: int = 50):
        super().__init__()
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1 (got {every_n_steps})")
        self.every_n_steps = every_n_steps
        self._enabled = True
        self._last_step = -1
        self._t0 = time.perf_counter()

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def _line(self, trainer: L.Trainer, pl_module: L.LightningModule, what: str) -> None:
        metrics = self.get_metrics(trainer, pl_module)
        shown = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()
                          if k != "v_num")
        total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else int(
            trainer.estimated_stepping_batches)
        print(f"[{what}] epoch {trainer.current_epoch} step {trainer.global_step}/{total}  {shown}", flush=True,
              file=sys.stdout)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if self._enabled and trainer.is_global_zero and step != self._last_step and step % self.every_n_steps == 0:
            self._last_step = step
            self._line(trainer, pl_module, "train")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._enabled and trainer.is_global_zero:
            self._line(trainer, pl_module, f"epoch end, {time.perf_counter() - self._t0:.0f} s")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._enabled and trainer.is_global_zero:
            print(f"[test] done: {int(sum(trainer.num_test_batches))} batches", flush=True)
