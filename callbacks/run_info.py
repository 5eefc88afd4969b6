"""``run_info.json``: what a results table needs to know about a run, written by rank 0 when ``fit`` starts.

Schema ``fasvlm.run_info/1``::

    git        {commit, dirty, root}       the checkout the fasvlm package was imported from (null outside git)
    packages   {name: version}             fasvlm, torch, lightning, transformers, peft, torchmetrics, numpy, ...
    seed       int | null                  the seed Lightning's seed_everything set (PL_GLOBAL_SEED)
    data       [{role, name, manifest, sha256, root, split}]  every domain of the DataModule; sha256 of the manifest
               file when the domain reads one (a domain indexed from a raw release has no manifest: sha256 null)
    device     {accelerator, gpu, gpu_count, cuda, hostname, platform}
    world_size int
    sessions   [{start, end, wall_s, global_step_start, global_step_end}]   one per fit launch: a resumed or
               requeued run appends a session; ``wall_s`` is their sum (time spent in fit, all launches)

The callback imports nothing of fasvlm (callbacks rest on metrics/perf only): it reads the DataModule's ``sources``,
``val_sources`` and ``targets`` by duck typing. Files are written atomically (temporary file + rename).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback

__all__ = ["RunInfoCallback", "RUN_INFO_SCHEMA", "RUN_INFO_FILE"]

RUN_INFO_SCHEMA = "fasvlm.run_info/1"
RUN_INFO_FILE = "run_info.json"
_PACKAGES = ("fasvlm", "torch", "lightning", "transformers", "peft", "torchmetrics", "numpy", "deepspeed",
             "jsonargparse", "scikit-learn")


def _git(repo: Path) -> dict[str, Any] | None:
    """Commit and dirty flag of the checkout holding ``repo``; None when git or the checkout is missing."""
    try:
        top = subprocess.run(["git", "-C", str(repo), "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                             timeout=20, check=True).stdout.strip()
        commit = subprocess.run(["git", "-C", top, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=20,
                                check=True).stdout.strip()
        status = subprocess.run(["git", "-C", top, "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(status.strip()), "root": top}


def _packages() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _data(datamodule: Any) -> list[dict[str, Any]]:
    rows = []
    for role, attr in (("source", "sources"), ("val_source", "val_sources"), ("target", "targets")):
        for spec in getattr(datamodule, attr, None) or []:
            manifest = getattr(spec, "manifest", None)
            path = Path(manifest) if manifest else None
            rows.append({
                "role": role,
                "name": getattr(spec, "name", None),
                "manifest": str(path) if path else None,
                "sha256": _sha256(path) if path is not None and path.is_file() else None,
                "root": getattr(spec, "root", None),
                "split": getattr(spec, "split", None),
            })
    return rows


def _device(trainer: Any) -> dict[str, Any]:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "accelerator": type(trainer.accelerator).__name__ if trainer is not None else None,
        "gpu": gpu,
        "gpu_count": torch.cuda.device_count() if gpu else 0,
        "cuda": torch.version.cuda,
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
    }


def _write_atomic(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RunInfoCallback(Callback):
    """Writes ``<run dir>/run_info.json`` at fit start and adds the session's wall time at fit end (rank 0).

    Args:
        filename: file name inside the run directory (``trainer.log_dir`` or ``default_root_dir``).
    """

    def __init__(self, filename: str = RUN_INFO_FILE):
        self.filename = filename
        self._t0: float | None = None

    def _path(self, trainer) -> Path:
        return Path(trainer.log_dir or trainer.default_root_dir) / self.filename

    def on_fit_start(self, trainer, pl_module) -> None:
        path = self._path(trainer)  # log_dir broadcasts under DDP: every rank asks
        self._t0 = time.monotonic()
        if not trainer.is_global_zero:
            return
        previous: dict[str, Any] = {}
        if path.is_file():
            try:
                previous = json.loads(path.read_text())
            except (OSError, ValueError):
                previous = {}  # unreadable leftovers of a killed write are replaced, not trusted
        seed = os.environ.get("PL_GLOBAL_SEED")
        info = {
            "schema": RUN_INFO_SCHEMA,
            "git": _git(Path(__file__).resolve().parent),
            "packages": _packages(),
            "seed": int(seed) if seed is not None else None,
            "data": _data(trainer.datamodule),
            "device": _device(trainer),
            "world_size": trainer.world_size,
            "precision": str(trainer.precision),
            "sessions": [*previous.get("sessions", []),
                         {"start": _now(), "end": None, "wall_s": None, "global_step_start": trainer.global_step,
                          "global_step_end": None}],
        }
        info["wall_s"] = sum(s.get("wall_s") or 0.0 for s in info["sessions"])
        _write_atomic(path, info)

    def on_train_start(self, trainer, pl_module) -> None:
        # a resumed fit restores its checkpoint after on_fit_start: the session's first step is known only now
        self._update_session(trainer, global_step_start=trainer.global_step)

    def on_fit_end(self, trainer, pl_module) -> None:
        if self._t0 is not None:
            self._update_session(trainer, end=_now(), wall_s=round(time.monotonic() - self._t0, 3),
                                 global_step_end=trainer.global_step)

    def _update_session(self, trainer, **fields: Any) -> None:
        """Set ``fields`` on this launch's session (rank 0) and the run's total wall time."""
        path = self._path(trainer)  # every rank asks (log_dir broadcasts under DDP)
        if not trainer.is_global_zero or self._t0 is None or not path.is_file():
            return
        info = json.loads(path.read_text())
        info["sessions"][-1].update(fields)
        info["wall_s"] = round(sum(s.get("wall_s") or 0.0 for s in info["sessions"]), 3)
        _write_atomic(path, info)
