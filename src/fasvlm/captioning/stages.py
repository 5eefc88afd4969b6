"""Shared machinery of the ``fasvlm caption`` pipelines: settings, rank helpers, atomic files, image items and the
resumable, sharded Lightning predict stage.

Every inference stage of SCF (:mod:`fasvlm.captioning.scf`) and of the instruction-data builder
(:mod:`fasvlm.captioning.instruct`) is a Lightning predict loop run by :func:`run_predict_stage`: each rank writes its
rows as parquet shards as batches finish (``<stage>/shards/part-a<attempt>-r<rank>-<seq>.parquet``); at the end rank 0
merges all shards into ``<stage>/data.parquet`` and writes ``<stage>/DONE.json`` last. An interrupted stage, rerun
with the same command, skips the keys its shards already hold and runs the rest under a new attempt number.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader, Dataset

from fasvlm.data_modules.datamodule import DomainSpec, EvalSampler
from fasvlm.data_modules.hf_datasets import record_image
from fasvlm.data_modules.record import SampleRecord, resolve_bbox
from fasvlm.data_modules.transforms import square_box

__all__ = [
    "DONE",
    "DATA",
    "TrainerSettings",
    "DataSettings",
    "rank",
    "barrier",
    "say",
    "write_atomic",
    "write_json",
    "write_parquet",
    "make_trainer",
    "load_face",
    "ImageItems",
    "ShardWriter",
    "read_stage",
    "run_predict_stage",
    "resolve_dtype",
]

log = logging.getLogger(__name__)

DONE = "DONE.json"
DATA = "data.parquet"
_SHARD = re.compile(r"part-a(\d+)-r(\d+)-(\d+)\.parquet$")


@dataclass
class TrainerSettings:
    """The Lightning Trainer settings every stage uses (same keys as the ``trainer:`` block of conf/strategy/*.yaml,
    so ``--config conf/strategy/ddp.yaml`` works here too)."""

    accelerator: str = "auto"
    devices: int | str | list[int] = "auto"
    num_nodes: int = 1
    precision: str = "32-true"
    strategy: str | dict[str, Any] = "auto"


@dataclass
class DataSettings:
    """Which images, selected as in training (FASDataModule's DomainSpec), and how they are loaded."""

    domains: list[DomainSpec] = field(default_factory=list)
    margin: float = 0.2  # face-box margin of the crop (FASDataModule's default)
    batch_size: int = 16
    num_workers: int = 2


# ---------------------------------------------------------------------------------------------------------------------
# distributed helpers


def rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return int(getattr(rank_zero_only, "rank", 0) or 0)


def barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def say(message: str) -> None:
    """Log on every rank, print on rank 0."""
    log.info(message)
    if rank() == 0:
        print(message, flush=True)


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: Path, obj: Any) -> None:
    write_atomic(Path(path), lambda p: p.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"))


def write_parquet(path: Path, frame) -> None:
    write_atomic(Path(path), lambda p: frame.to_parquet(p, index=False))


def make_trainer(settings: TrainerSettings, **kwargs) -> L.Trainer:
    """A Trainer with the settings' accelerator/devices/precision/strategy (a ``class_path`` strategy is built)."""
    strategy = settings.strategy
    if isinstance(strategy, dict):
        import importlib

        module, _, name = strategy["class_path"].rpartition(".")
        strategy = getattr(importlib.import_module(module), name)(**(strategy.get("init_args") or {}))
    return L.Trainer(accelerator=settings.accelerator, devices=settings.devices, num_nodes=settings.num_nodes,
                     precision=settings.precision, strategy=strategy, **kwargs)


def load_face(path: str, record: SampleRecord | None = None, margin: float | None = 0.2):
    """The RGB image at ``path`` (the record's crop embedded in a ``datasets`` folder when ``path`` is the record's
    own); with a record, the square face crop (box + margin) that FASDataset's transform takes (outside the image:
    black padding); without one, the whole image."""
    from PIL import Image

    embedded = record is not None and path == record.path  # the record's own image: its file or embedded crop
    with (record_image(record) if embedded else Image.open(path)) as img:
        img.load()
        img = img.convert("RGB")
    if record is None or margin is None:
        return img
    box = resolve_bbox(record, img.width, img.height)
    x1, y1, x2, y2 = square_box(box, img.width, img.height, margin)
    return img.crop(tuple(round(v) for v in (x1, y1, x2, y2)))


class ImageItems(Dataset):
    """Items (plain dicts with ``key`` and ``path``) -> ``{"item", "image"}`` with the face crop (when records are
    given) or the whole image. An unreadable image gives ``image=None`` and an ``error``: it is logged and counted,
    never fatal."""

    def __init__(self, items: Sequence[dict], records: Sequence[SampleRecord] | None = None,
                 margin: float | None = 0.2):
        self.items = list(items)
        self.records = list(records) if records is not None else None
        self.margin = margin

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        item = self.items[index]
        record = self.records[index] if self.records is not None else None
        try:
            image = load_face(item["path"], record, self.margin)
        except (OSError, ValueError, SyntaxError) as err:  # PIL raises all three on broken files
            log.warning("skipping unreadable image %s (%s: %s)", item["path"], type(err).__name__, err)
            return {"item": item, "image": None, "error": f"{type(err).__name__}: {err}"}
        return {"item": item, "image": image}


# ---------------------------------------------------------------------------------------------------------------------
# resumable, sharded predict stages


class ShardWriter(Callback):
    """Writes ``predict_step`` rows as parquet shards (every ``shard_size`` rows, and at the end), one file per rank
    and flush: ``part-a<attempt>-r<rank>-<seq>.parquet``, each written atomically."""

    def __init__(self, directory: str | Path, attempt: int, shard_size: int = 256):
        self.directory, self.attempt, self.shard_size = Path(directory), attempt, max(1, shard_size)
        self._rows: list[dict] = []
        self._seq = 0

    def on_predict_epoch_start(self, trainer, pl_module) -> None:
        self._rows, self._seq = [], 0
        # every rank has read the existing shards (its resume snapshot) before any rank writes a new one
        trainer.strategy.barrier("shard_writer_start")

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._rows.extend(outputs or [])
        if len(self._rows) >= self.shard_size:
            self._flush(trainer)

    def on_predict_epoch_end(self, trainer, pl_module) -> None:
        self._flush(trainer)
        trainer.strategy.barrier("shard_writer_end")

    def _flush(self, trainer) -> None:
        if not self._rows:
            return
        import pandas as pd

        name = f"part-a{self.attempt:03d}-r{trainer.global_rank:03d}-{self._seq:05d}.parquet"
        write_parquet(self.directory / name, pd.DataFrame(self._rows))
        self._rows, self._seq = [], self._seq + 1


def _shards(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("part-a*.parquet") if _SHARD.search(p.name)) if directory.is_dir() else []


def _read_shards(directory: Path):
    import pandas as pd

    frames = [pd.read_parquet(p) for p in _shards(directory)]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def read_stage(directory: str | Path):
    """The merged table of a finished stage (``<stage>/data.parquet``), or None when the stage is not done."""
    import pandas as pd

    directory = Path(directory)
    if not (directory / DONE).is_file():
        return None
    return pd.read_parquet(directory / DATA)


class _PredictData(L.LightningDataModule):
    """The remaining items of a stage; the sampler is built on each rank after the process group exists."""

    def __init__(self, dataset: Dataset, batch_size: int, num_workers: int, collate):
        super().__init__()
        self.dataset, self.batch_size, self.num_workers, self.collate = dataset, batch_size, num_workers, collate

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=self.batch_size, sampler=EvalSampler(len(self.dataset)),
                          num_workers=self.num_workers, collate_fn=self.collate,
                          persistent_workers=False, pin_memory=torch.cuda.is_available())


def run_predict_stage(directory: str | Path, items: Sequence[dict], module_factory: Callable[[], L.LightningModule],
                      collate_factory: Callable[[L.LightningModule], Callable], trainer: TrainerSettings, *,
                      records: Sequence[SampleRecord] | None = None, margin: float | None = 0.2,
                      batch_size: int = 16, num_workers: int = 2, shard_size: int = 256,
                      callbacks: Iterable[Callback] = (), dataset_factory: Callable | None = None):
    """Run one resumable predict stage over ``items`` (dicts with a unique ``key``) and return the merged table.

    A stage with ``DONE.json`` is read back. Otherwise the keys already in ``<directory>/shards`` are skipped, the rest
    run through ``trainer.predict`` (rows written as shards by :class:`ShardWriter`), and rank 0 merges every shard
    into ``data.parquet`` (each key once, in ``items`` order), then writes ``DONE.json``.
    """
    import pandas as pd

    directory = Path(directory)
    done = read_stage(directory)
    if done is not None:
        return done
    keys = [it["key"] for it in items]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{directory.name}: item keys must be unique")
    shard_dir = directory / "shards"
    existing = _read_shards(shard_dir)
    seen = set(existing["key"]) if len(existing) else set()
    todo = [i for i, k in enumerate(keys) if k not in seen]
    attempt = 1 + max((int(_SHARD.search(p.name).group(1)) for p in _shards(shard_dir)), default=0)
    started = time.perf_counter()
    if todo:
        say(f"{directory.name}: {len(todo)} of {len(items)} items to run"
             + (f" (resuming: {len(seen)} already done, attempt {attempt})" if seen else ""))
        module = module_factory()
        remaining = [items[i] for i in todo]
        recs = [records[i] for i in todo] if records is not None else None
        dataset = dataset_factory(remaining, recs) if dataset_factory else ImageItems(remaining, recs, margin)
        writer = ShardWriter(shard_dir, attempt, shard_size)
        t = make_trainer(trainer, logger=False, enable_checkpointing=False, use_distributed_sampler=False,
                         enable_model_summary=False, default_root_dir=str(directory),
                         callbacks=[writer, *callbacks])
        t.predict(module, datamodule=_PredictData(dataset, batch_size, num_workers, collate_factory(module)),
                  return_predictions=False)
    if rank() == 0:
        rows = _read_shards(shard_dir)
        n_shard_rows = len(rows)
        if len(rows):
            rows = rows.drop_duplicates("key", keep="first")
            order = {k: i for i, k in enumerate(keys)}
            rows = rows[rows["key"].isin(order)]
            rows = rows.iloc[rows["key"].map(order).argsort()].reset_index(drop=True)
        missing = len(keys) - len(rows)
        if missing:
            raise RuntimeError(f"{directory}: {missing} of {len(keys)} items have no row after the predict loop; "
                               "rerun the same command to resume")
        write_parquet(directory / DATA, rows)
        write_json(directory / DONE, {"rows": len(rows), "duplicates_dropped": n_shard_rows - len(rows),
                                      "seconds_this_attempt": round(time.perf_counter() - started, 3),
                                      "attempts": attempt if todo else attempt - 1})
    barrier()
    out = pd.read_parquet(directory / DATA)
    return out


def resolve_dtype(name: str) -> str:
    """"auto" -> bfloat16 on CUDA, float32 on CPU; any other dtype name unchanged."""
    if name == "auto":
        return "bfloat16" if torch.cuda.is_available() else "float32"
    return name
