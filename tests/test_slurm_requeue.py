"""callbacks/requeue.py: SIGUSR1 under SLURM -> hpc checkpoint at a batch end on every rank -> `scontrol requeue`.

The cross-node case (ranks signalled at different points) runs in `make test-slurm-multinode`; here one DDP process
(gloo, loopback) under a SLURM environment, in a subprocess (torch.distributed state stays out of pytest), with a fake
`scontrol` on PATH that records its arguments.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import lightning.pytorch as pl
    from lightning.fabric.plugins.environments import SLURMEnvironment
    from lightning.pytorch.demos.boring_classes import BoringModel
    from lightning.pytorch.strategies import DDPStrategy
    from fasvlm.callbacks.requeue import SlurmRequeue

    class SignalAt(pl.Callback):  # SIGUSR1 to this process in the middle of training step 2 (0-based)
        def on_before_backward(self, trainer, pl_module, loss):
            if trainer.global_step == 2:
                os.kill(os.getpid(), signal.SIGUSR1)

    def previous(signum, frame):
        pass

    signal.signal(signal.SIGUSR1, previous)
    requeue = SlurmRequeue()
    trainer = pl.Trainer(default_root_dir=sys.argv[1], accelerator="cpu", devices=1, max_steps=5,
                         strategy=DDPStrategy(process_group_backend="gloo", cluster_environment=SLURMEnvironment()),
                         callbacks=[requeue, SignalAt()], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(BoringModel())
    print("SAVED", *[p.name for p in requeue.saved])
    print("RESTORED", signal.getsignal(signal.SIGUSR1) is previous)
    """
)


def test_sigusr1_checkpoints_at_batch_end_and_requeues(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "scontrol.calls"
    fake = bin_dir / "scontrol"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    fake.chmod(0o755)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
               SLURM_JOB_ID="4242", SLURM_JOB_NAME="requeue-test", SLURM_NTASKS="1", SLURM_NTASKS_PER_NODE="1",
               SLURM_PROCID="0", SLURM_LOCALID="0", SLURM_NODEID="0", SLURM_JOB_NUM_NODES="1",
               SLURM_NODELIST="127.0.0.1", OMP_NUM_THREADS="1")
    run = tmp_path / "run"
    out = subprocess.run([sys.executable, "-c", _SCRIPT, str(run)], env=env, capture_output=True, text=True,
                         timeout=300)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-3000:]
    assert "SAVED hpc_ckpt_1.ckpt" in out.stdout, log[-3000:]
    # the signal came during step index 2; the checkpoint is taken at that batch's end: 3 optimizer steps done
    ckpt = torch.load(run / "hpc_ckpt_1.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 3
    assert calls.read_text().split() == ["requeue", "4242"]
    assert "Handling auto-requeue signal" not in log  # Lightning's in-handler save did not run
    assert "RESTORED True" in out.stdout  # the previous SIGUSR1 handler is back after fit
