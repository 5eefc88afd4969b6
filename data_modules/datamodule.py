"""FASDataModule: train sources, a source validation set and named target domains (one dataloader each).

Data flow: adapter index or prepared manifest -> :class:`SampleRecord` list -> :class:`FASDataset` (face crop,
transform from the model's image spec) -> batches following the batch contract below.

Batch contract (every system reads this, after ``on_after_batch_transfer``)::

    pixel_values  float (B, 3, S, S)  normalised with the model's image spec
    label         long (B,)           1 = attack, 0 = live
    content       long (B,)           InstructFLIP content option 0..10 (taxonomy.content_index)
    illumination, environment, camera_quality   long (B,) option index, -1 unknown
    attack, domain, video, sample_id            list[str]
    illumination_name, environment_name, camera_quality_name   list[str | None]
    skipped       list[str]           paths of corrupt images skipped while building this batch (counted)

What the loaders yield (``device_transforms=True``, the default; issue 20): the worker half of the transform
(:class:`~fasvlm.data_modules.transforms.FaceCarrier`) decodes and cuts, the device half
(:class:`~fasvlm.data_modules.transforms.DeviceTransform`, run by :meth:`FASDataModule.on_after_batch_transfer` on
the batch already on the device) resamples the face window, flips, colour-jitters and normalises::

    pixel_values  uint8 (B, C, C, 3)  carrier images, C = carrier_size(S) (pinned memory on CUDA)
    pixel_params  float (B, 10)       per-sample window and augmentation (transforms.PARAMS), drawn from the
                                      sampler's per-sample seed on the worker (exact resume)

With ``device_transforms=False`` the loaders yield the contract above directly (the whole transform on the workers).

Evaluation loaders: ``val_names`` / ``test_names`` list one name per dataloader index; the first is ``source_name``
("source"), the held-out source data used to choose the honest threshold; the others are the target domains.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .adapters import index_dataset
from .hf_datasets import read_sample_records, record_exists, record_image
from .record import SampleRecord, read_manifest, resolve_bbox
from .taxonomy import content_index, style_index
from .transforms import DeviceTransform, FaceCarrier, FaceTransform, ImageSpec, estimate_camera_quality

__all__ = ["DomainSpec", "FASDataModule", "FASDataset", "FASSampler", "EvalSampler", "fas_collate", "sampler_resume_state",
           "model_image_spec", "make_loader", "eval_loaders", "domain_records", "select_domain", "select_records",
           "EmptySplitError", "require_files", "data_transforms", "apply_device_transform"]

log = logging.getLogger(__name__)


class EmptySplitError(FileNotFoundError):
    """Not one file of a split exists (a moved manifest, an unmounted disk): stop before training on nothing."""


def require_files(records: dict[str, list[SampleRecord]]) -> None:
    """Raise :class:`EmptySplitError` for the first split none of whose files exists (stops at the first file found,
    so a healthy split costs one ``stat``)."""
    for name, recs in records.items():
        if recs and not any(record_exists(r) for r in recs):
            first = ", ".join(r.path for r in recs[:3])
            raise EmptySplitError(
                f"split {name!r}: none of its {len(recs)} files exists (first: {first}). Likely cause: the data or its "
                "manifest moved, or its disk is not mounted (manifest paths are relative to the manifest's "
                "directory; `root:` entries to the directory fasvlm runs in)")

SOURCE_NAME = "source"


@dataclass
class DomainSpec:
    """One domain of a protocol: where its records come from and which of them to take.

    Give either ``manifest`` (a prepared ``manifest.parquet``, or the ``datasets`` folder that ``fasvlm prepare --hf``
    writes beside it, ``manifest.hf``) or ``dataset`` + ``root`` (an adapter name and the raw release, indexed on the
    fly; image datasets only). ``split`` selects the official split(s); with ``protocol`` the
    split membership comes from ``record.extra["protocols"][protocol]`` instead.
    """

    name: str
    manifest: str | None = None
    dataset: str | None = None
    root: str | None = None
    split: str | list[str] = "train"
    protocol: str | None = None
    attacks: list[str] | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def splits(self) -> set[str]:
        return {self.split} if isinstance(self.split, str) else set(self.split)


# ---------------------------------------------------------------------------------------------------------------------
# dataset


class FASDataset(Dataset):
    """Records -> transformed samples. Corrupt or missing images are skipped, logged and counted, never fatal.

    Items are ``int`` indices or ``(index, seed)`` pairs from :class:`FASSampler` (the seed drives augmentation).
    ``transform`` is a :class:`FaceTransform` (float pixels) or a :class:`FaceCarrier` (uint8 carrier + parameters).
    In training a failed item is replaced by the next index (so batch size stays fixed); in evaluation it is dropped
    (a substitute would be scored twice). Either way the path is reported in the batch's ``skipped`` list.
    """

    def __init__(self, records: Sequence[SampleRecord], transform: FaceTransform | FaceCarrier, *, train: bool = False,
                 infer_camera_quality: bool = False):
        self.records, self.transform, self.train = list(records), transform, train
        self.infer_camera_quality = infer_camera_quality

    def __len__(self) -> int:
        return len(self.records)

    def load(self, index: int, seed: int | None) -> dict[str, Any]:
        rec = self.records[index]
        rng = np.random.default_rng(seed) if seed is not None else None
        quality = rec.camera_quality
        infer_quality = quality is None and self.infer_camera_quality and rec.label is not None
        with record_image(rec) as img:  # the file, or the crop embedded in a `datasets` folder (not yet decoded)
            box = resolve_bbox(rec, img.width, img.height)
            # the quality rule reads the full image: no reduced-scale decoding then
            pixels = self.transform.pixels(img, box, rng, draft=not infer_quality)
            if infer_quality:
                quality = estimate_camera_quality(img, box)
        return {
            **pixels,
            "label": rec.label,
            "content": content_index(rec.attack),
            "illumination": style_index("illumination", rec.illumination),
            "environment": style_index("environment", rec.environment),
            "camera_quality": style_index("camera_quality", quality),
            "attack": rec.attack,
            "domain": rec.domain,
            "video": f"{rec.domain}/{rec.video}",
            "sample_id": rec.sample_id,
            "illumination_name": rec.illumination,
            "environment_name": rec.environment,
            "camera_quality_name": quality,
        }

    def __getitem__(self, item) -> dict[str, Any] | None:
        index, seed = item if isinstance(item, tuple) else (item, None)
        skipped: list[str] = []
        for attempt in range(10 if self.train else 1):
            i = (index + attempt) % len(self.records)
            try:
                sample = self.load(i, seed)
            except (OSError, ValueError, SyntaxError) as err:  # PIL raises all three on broken files
                path = self.records[i].path
                log.warning("skipping unreadable image %s (%s: %s)", path, type(err).__name__, err)
                skipped.append(path)
                continue
            sample["skipped"] = skipped
            return sample
        return {"skipped": skipped}


_TENSOR_KEYS = ("label", "content", "illumination", "environment", "camera_quality")
_LIST_KEYS = ("attack", "domain", "video", "sample_id", "illumination_name", "environment_name", "camera_quality_name")


def fas_collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack samples into the batch contract; failed items are dropped and their paths kept in ``skipped``."""
    skipped = [p for it in items for p in it.get("skipped", [])]
    items = [it for it in items if "pixel_values" in it]
    batch: dict[str, Any] = {"skipped": skipped}
    if not items:
        batch["pixel_values"] = torch.zeros(0, 3, 1, 1)
        batch.update({k: torch.zeros(0, dtype=torch.long) for k in _TENSOR_KEYS})
        batch.update({k: [] for k in _LIST_KEYS})
        return batch
    batch["pixel_values"] = torch.stack([it["pixel_values"] for it in items])
    if "pixel_params" in items[0]:  # FaceCarrier items: uint8 carriers + augmentation parameters
        batch["pixel_params"] = torch.stack([it["pixel_params"] for it in items])
    batch.update({k: torch.tensor([it[k] for it in items], dtype=torch.long) for k in _TENSOR_KEYS})
    batch.update({k: [it[k] for it in items] for k in _LIST_KEYS})
    return batch


# ---------------------------------------------------------------------------------------------------------------------
# samplers


def _dist() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class FASSampler(Sampler):
    """Seeded, resumable, distributed-aware training sampler yielding ``(index, augmentation_seed)``.

    Each epoch draws a permutation (or, with ``weights``, a weighted draw with replacement for balanced sampling) from
    a generator seeded by ``(seed, epoch)``, takes this rank's strided share, and pairs every index with a seed for
    its augmentation. ``state_dict`` records the epoch and how many items were consumed, so a resumed run continues
    with exactly the items and augmentations the interrupted one would have seen.
    """

    def __init__(self, num_items: int, *, weights: torch.Tensor | None = None, seed: int = 0, shuffle: bool = True,
                 rank: int | None = None, world_size: int | None = None):
        if num_items <= 0:
            raise ValueError("FASSampler: the training set is empty; check the sources' split/protocol selection")
        r, w = _dist()
        self.num_items, self.weights, self.seed, self.shuffle = num_items, weights, seed, shuffle
        self.rank, self.world_size = (r if rank is None else rank), (w if world_size is None else world_size)
        self.epoch, self.consumed = 0, 0

    def __len__(self) -> int:
        return math.ceil(self.num_items / self.world_size)

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.consumed = epoch, 0

    def _draw(self) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        if self.weights is not None:
            order = torch.multinomial(self.weights, self.num_items, replacement=True, generator=g)
        elif self.shuffle:
            order = torch.randperm(self.num_items, generator=g)
        else:
            order = torch.arange(self.num_items)
        seeds = torch.randint(0, 2**31 - 1, (self.num_items,), generator=g)
        total = len(self) * self.world_size  # pad by wrapping so every rank gets the same count
        order, seeds = torch.cat([order, order])[:total], torch.cat([seeds, seeds])[:total]
        return order[self.rank::self.world_size], seeds[self.rank::self.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order, seeds = self._draw()
        start = self.consumed
        for i in range(start, len(order)):
            self.consumed = i + 1
            yield int(order[i]), int(seeds[i])
        self.epoch, self.consumed = self.epoch + 1, 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "consumed": self.consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.consumed = int(state["epoch"]), int(state["consumed"])


class EvalSampler(Sampler):
    """Contiguous, unpadded shard per rank: every item is scored exactly once across ranks (metrics sync after)."""

    def __init__(self, num_items: int):
        rank, world = _dist()
        per = math.ceil(num_items / world)
        self.indices = range(rank * per, min(num_items, (rank + 1) * per))

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)


def balance_weights(records: Sequence[SampleRecord], keys: Sequence[str]) -> torch.Tensor:
    """Per-record weights so that every group of ``keys`` (e.g. label, camera_quality) is drawn equally often."""
    groups = [tuple(getattr(r, k) for k in keys) for r in records]
    counts = Counter(groups)
    return torch.tensor([1.0 / counts[g] for g in groups], dtype=torch.double)


# ---------------------------------------------------------------------------------------------------------------------
# data module


def _val_subjects(subjects: set[str], fraction: float, seed: int) -> set[str]:
    """Subjects held out for source validation: a hash-chosen ``fraction`` of them, at least one, never all."""
    def key(subject: str) -> float:
        digest = hashlib.blake2b(f"{seed}:{subject}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "little") / 2**64

    if len(subjects) < 2:
        raise ValueError(f"cannot hold out source validation subjects from {len(subjects)} subject(s): give val_sources")
    held = {s for s in subjects if key(s) < fraction}
    if not held:
        held = {min(subjects, key=key)}
    if held == subjects:
        held.discard(max(subjects, key=key))
    return held


class FASDataModule(L.LightningDataModule):
    """Sources for training, a source validation set, and one named val/test dataloader per target domain.

    Args:
        sources: training domains (their ``split``/``protocol`` select the training records).
        targets: evaluation domains, one dataloader each, named by ``DomainSpec.name``.
        val_sources: held-out source data for model selection and the honest threshold. When None, a
            ``val_fraction`` of the source *subjects* is held out of training (deterministic by ``seed``).
        balance: training-sampler balancing: None, ``"label"``, or a list of record attributes
            (e.g. ``["label", "camera_quality"]``) whose groups are drawn equally often.
        image_size: only used when the model exposes no ``image_spec`` (the model's spec wins).
        infer_camera_quality: fill missing camera quality of source samples with the image-based rule
            (:func:`~fasvlm.data_modules.transforms.estimate_camera_quality`).
        color_jitter: (brightness, contrast, saturation) of a training ColorJitter (None: off; the published
            InstructFLIP uses (0.2, 0.2, 0.2)); see :class:`~fasvlm.data_modules.transforms.FaceTransform`.
        captions: the SCF captions table of these sources (``<out>/captions.parquet`` of ``fasvlm caption scf``,
            keyed by sample id); read by methods that train on captions (I-FAS), ignored by the others.
        device_transforms: True: workers decode and hand over uint8 carriers with per-sample augmentation
            parameters; window resampling, flip, colour jitter and normalisation run per batch on the device
            (:meth:`on_after_batch_transfer`). False: the whole transform runs on the workers (float32 batches).
            Evaluation inputs are the same either way except on crops stored at training scale (``fasvlm prepare
            --pad``), whose window the device resamples instead of PIL (docs/data_path.md).
    """

    def __init__(
        self,
        sources: list[DomainSpec],
        targets: list[DomainSpec],
        val_sources: list[DomainSpec] | None = None,
        val_fraction: float = 0.1,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        image_size: int | None = None,
        balance: str | list[str] | None = "label",
        margin: float = 0.2,
        augment: bool = True,
        infer_camera_quality: bool = False,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        prefetch_factor: int = 2,
        seed: int = 0,
        color_jitter: tuple[float, float, float] | None = None,
        captions: str | None = None,
        device_transforms: bool = True,
    ):
        super().__init__()
        self.device_transforms = device_transforms
        self._device_tf: DeviceTransform | None = None
        self.color_jitter, self.captions = color_jitter, captions
        if not targets:
            raise ValueError("FASDataModule needs at least one target domain")
        names = [t.name for t in targets]
        if len(set(names)) != len(names) or SOURCE_NAME in names:
            raise ValueError(f"target names must be unique and not {SOURCE_NAME!r}: {names}")
        self.sources, self.targets, self.val_sources = sources, targets, val_sources
        self.val_fraction, self.batch_size = val_fraction, batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers, self.image_size, self.margin, self.augment = num_workers, image_size, margin, augment
        self.balance = [balance] if isinstance(balance, str) else list(balance or [])
        self.infer_camera_quality = infer_camera_quality
        self.pin_memory, self.persistent_workers, self.prefetch_factor = pin_memory, persistent_workers, prefetch_factor
        self.seed = seed
        self.source_name = SOURCE_NAME
        self.val_names = [SOURCE_NAME, *names]
        self.test_names = [SOURCE_NAME, *names]
        self.predict_names = names
        self._index_cache: dict[tuple, list[SampleRecord]] = {}
        self._records: dict[str, list[SampleRecord]] | None = None
        self._train_sampler: FASSampler | None = None
        self._sampler_state: dict[str, int] | None = None

    # -- records ------------------------------------------------------------------------------------------------------

    def _select(self, spec: DomainSpec) -> list[SampleRecord]:
        return select_domain(spec, self._index_cache)

    def _build_records(self) -> dict[str, list[SampleRecord]]:
        train = [r for s in self.sources for r in self._select(s)]
        if self.val_sources:
            source_val = [r for s in self.val_sources for r in self._select(s)]
        else:
            held_subjects = _val_subjects({f"{r.domain}/{r.subject}" for r in train}, self.val_fraction, self.seed)
            held = [r for r in train if f"{r.domain}/{r.subject}" in held_subjects]
            held_ids = {id(r) for r in held}
            train = [r for r in train if id(r) not in held_ids]
            source_val = held
        if not source_val:
            raise ValueError("the source validation set is empty: raise val_fraction or give val_sources")
        records = {"train": train, SOURCE_NAME: source_val}
        for t in self.targets:
            records[t.name] = self._select(t)
        return records

    # -- Lightning hooks ----------------------------------------------------------------------------------------------

    def _image_spec(self) -> ImageSpec:
        return model_image_spec(self.trainer, self.image_size)

    def setup(self, stage: str | None = None) -> None:
        if self._records is None:
            self._records = self._build_records()
            self._log_counts()
        # the splits this stage reads: fit -> train + source val; validate -> source val; test/predict -> targets
        wanted = {"fit": ("train", SOURCE_NAME), "validate": (SOURCE_NAME,)}.get(stage or "")
        require_files({k: v for k, v in self._records.items()
                       if (k in wanted if wanted else k not in ("train", SOURCE_NAME))})
        self._train_tf, self._eval_tf, self._device_tf = data_transforms(
            self._image_spec(), margin=self.margin, augment=self.augment, color_jitter=self.color_jitter,
            device_transforms=self.device_transforms)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Device half of the transform on the batch already on the device (uint8 carriers -> normalised floats)."""
        return apply_device_transform(batch, self._device_tf)

    def _log_counts(self) -> None:
        lines = ["FAS data (items: live / attack):"]
        for name, recs in self._records.items():
            n_live = sum(r.label == 0 for r in recs)
            kind = "train" if name == "train" else "source val" if name == SOURCE_NAME else "target"
            lines.append(f"  {name:<24} {kind:<10} {len(recs):>7} ({n_live} / {len(recs) - n_live})")
        if self.trainer is None or self.trainer.is_global_zero:
            log.info("\n".join(lines))
            print("\n".join(lines), flush=True)

    def records(self, name: str) -> list[SampleRecord]:
        if self._records is None:
            self._records = self._build_records()
        return self._records[name]

    def _loader(self, dataset: Dataset, batch_size: int, sampler: Sampler) -> DataLoader:
        return make_loader(dataset, batch_size, sampler, collate=fas_collate, num_workers=self.num_workers,
                           seed=self.seed, pin_memory=self.pin_memory, persistent_workers=self.persistent_workers,
                           prefetch_factor=self.prefetch_factor)

    def train_dataloader(self) -> DataLoader:
        recs = self._records["train"]
        weights = balance_weights(recs, self.balance) if self.balance else None
        self._train_sampler = FASSampler(len(recs), weights=weights, seed=self.seed)
        if self._sampler_state is not None:
            self._train_sampler.load_state_dict(self._sampler_state)
            self._sampler_state = None
        dataset = FASDataset(recs, self._train_tf, train=True, infer_camera_quality=self.infer_camera_quality)
        return self._loader(dataset, self.batch_size, self._train_sampler)

    def _eval_loaders(self, names: Sequence[str]) -> list[DataLoader]:
        return eval_loaders(self._records, names, self._eval_tf, self.eval_batch_size, self._loader)

    def val_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders(self.val_names)

    def test_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders(self.test_names)

    def predict_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders(self.predict_names)

    # -- exact resume: the training sampler's position travels in the checkpoint --------------------------------------

    def state_dict(self) -> dict[str, Any]:
        # the crop margin travels with the checkpoint: `fasvlm predict` crops user images the same way
        return {**sampler_resume_state(self.trainer, self._train_sampler, self.batch_size), "margin": self.margin}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._sampler_state = state.get("train_sampler")


def data_transforms(spec: ImageSpec, *, margin: float, augment: bool,
                    color_jitter: tuple[float, float, float] | None, device_transforms: bool):
    """(train transform, eval transform, device transform or None) for ``spec``: :class:`FaceCarrier` x 2 +
    :class:`DeviceTransform` with ``device_transforms``, else :class:`FaceTransform` x 2 and None."""
    if device_transforms:
        return (FaceCarrier(spec.size, train=augment, margin=margin, color_jitter=color_jitter),
                FaceCarrier(spec.size, train=False, margin=margin),
                DeviceTransform(spec.size, spec.mean, spec.std))
    return (FaceTransform(spec.size, spec.mean, spec.std, train=augment, margin=margin, color_jitter=color_jitter),
            FaceTransform(spec.size, spec.mean, spec.std, train=False, margin=margin), None)


def apply_device_transform(batch: Any, transform: DeviceTransform | None) -> Any:
    """``batch`` with its uint8 carriers turned into normalised model inputs (the batch contract); batches without
    ``pixel_params`` (the worker-side transform, empty batches) pass unchanged."""
    if not isinstance(batch, dict) or "pixel_params" not in batch:
        return batch
    if transform is None:
        raise RuntimeError("a batch of uint8 carriers reached a data module without a device transform: call "
                           "setup() first")
    params = batch.pop("pixel_params")
    batch["pixel_values"] = transform(batch["pixel_values"], params)
    return batch


def model_image_spec(trainer, image_size: int | None) -> ImageSpec:
    """The model's ``image_spec`` (size and normalisation the transforms must use), else CLIP defaults at
    ``image_size`` (224 when None)."""
    model = trainer.lightning_module if trainer is not None else None
    spec = getattr(model, "image_spec", None)
    return spec if spec is not None else ImageSpec(size=image_size or 224)


def make_loader(dataset: Dataset, batch_size: int, sampler: Sampler, *, collate, num_workers: int, seed: int,
                pin_memory: bool, persistent_workers: bool, prefetch_factor: int = 2) -> DataLoader:
    """The project's DataLoader: its own seeded generator (creating an iterator must not draw from the global RNG,
    for exact resume), pinned memory on CUDA, persistent workers and prefetch when there are workers."""
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, collate_fn=collate,
        generator=torch.Generator().manual_seed(seed),
        pin_memory=pin_memory and torch.cuda.is_available(),
        persistent_workers=persistent_workers and num_workers > 0,
        prefetch_factor=prefetch_factor if num_workers > 0 else None,
    )


def eval_loaders(records: dict[str, list[SampleRecord]], names: Sequence[str], transform: FaceTransform | FaceCarrier,
                 batch_size: int, loader) -> list[DataLoader]:
    """One unshuffled, unpadded loader per named evaluation set (``loader(dataset, batch_size, sampler)``)."""
    out = []
    for name in names:
        ds = FASDataset(records[name], transform, train=False)
        out.append(loader(ds, batch_size, EvalSampler(len(ds))))
    return out


def sampler_resume_state(trainer, sampler: FASSampler | None, batch_size: int) -> dict[str, Any]:
    """A data module's checkpoint state for exact resume: where the training sampler stands.

    The sampler itself runs ahead of training (workers prefetch), so its position is taken from the loop's progress:
    items of the batches processed so far in this epoch, on this rank.
    """
    if sampler is None or trainer is None:
        return {}
    processed = trainer.fit_loop.epoch_loop.batch_progress.current.processed
    state = {"epoch": trainer.current_epoch, "consumed": processed * batch_size}
    if state["consumed"] >= len(sampler):
        state = {"epoch": trainer.current_epoch + 1, "consumed": 0}
    return {"train_sampler": state}


def _renamed(rec: SampleRecord, domain: str) -> SampleRecord:
    import dataclasses

    return dataclasses.replace(rec, domain=domain)


# ---------------------------------------------------------------------------------------------------------------------
# record selection (FASDataModule, the caption pipelines and any tool select records the same way)


def domain_records(spec: DomainSpec, cache: dict[tuple, list[SampleRecord]] | None = None) -> list[SampleRecord]:
    """Every record of a domain: its prepared manifest, or its raw release indexed by the adapter (``cache`` keeps
    what was read, keyed by source)."""
    if (spec.manifest is None) == (spec.dataset is None):
        raise ValueError(f"domain {spec.name!r}: give exactly one of `manifest` or `dataset` (+ `root`)")
    key = (spec.manifest, spec.dataset, spec.root, tuple(sorted(spec.options.items())))
    if cache is not None and key in cache:
        return cache[key]
    if spec.manifest is not None:
        recs = read_sample_records(spec.manifest) if os.path.isdir(spec.manifest) else read_manifest(spec.manifest)
    else:
        if spec.root is None:
            raise ValueError(f"domain {spec.name!r}: `dataset: {spec.dataset}` needs `root`")
        result = index_dataset(spec.dataset, spec.root, **spec.options)
        if result.unknown:
            log.warning("%s: %d files match no naming rule (first: %s)", spec.root, len(result.unknown),
                        result.unknown[0])
        recs = result.records
        missing = result.report.get("missing_images") or {}
        if not recs and missing.get("count"):  # every listed image is gone: say so in one line, not "no records"
            first = ", ".join(str(p) for p in (missing.get("examples") or [])[:3])
            raise EmptySplitError(
                f"split {spec.split!r}: none of its {missing['count']} files exists (domain {spec.name!r}, first: "
                f"{first}). Likely cause: the data moved, or its disk is not mounted (`root:` entries are relative "
                "to the directory fasvlm runs in)")
    videos = [r.path for r in recs if r.frame < 0]
    if videos:
        where = spec.manifest or spec.root
        raise ValueError(
            f"domain {spec.name!r} ({where}) lists whole videos (e.g. {videos[0]}); extract frames first: "
            f"fasvlm prepare --dataset <name> --root <raw> --out <dir> (without --index-only)"
        )
    if cache is not None:
        cache[key] = recs
    return recs


def select_domain(spec: DomainSpec, cache: dict[tuple, list[SampleRecord]] | None = None) -> list[SampleRecord]:
    """The records of one domain that its ``split``/``protocol``/``attacks`` select, reported under ``spec.name``."""
    splits = spec.splits()
    out = []
    for r in domain_records(spec, cache):
        split = r.extra.get("protocols", {}).get(spec.protocol) if spec.protocol else r.split
        if split in splits and (spec.attacks is None or r.attack in spec.attacks or r.attack == "live"):
            out.append(r)
    if not out:
        raise ValueError(f"domain {spec.name!r}: no records for split {sorted(splits)}"
                         + (f" of protocol {spec.protocol!r}" if spec.protocol else "")
                         + f" in {spec.manifest or spec.root}")
    if spec.name != out[0].domain:  # report under the configured name
        out = [_renamed(r, spec.name) for r in out]
    return out


def select_records(specs: Sequence[DomainSpec]) -> list[SampleRecord]:
    """The records of ``specs``, selected exactly as FASDataModule selects them (sample ids match a training run's);
    an error when a sample id occurs twice across the specs."""
    if not specs:
        raise ValueError("no domains given: e.g. [{name: celeba_spoof, dataset: celeba_spoof, root: "
                         "data/celeba_spoof, split: train}]")
    cache: dict[tuple, list[SampleRecord]] = {}
    records = [r for spec in specs for r in select_domain(spec, cache)]
    counts = Counter(r.sample_id for r in records)
    dupes = [k for k, n in counts.items() if n > 1]
    if dupes:
        raise ValueError(f"{len(dupes)} sample ids occur more than once across the domains (e.g. {dupes[0]}); "
                         "give each domain a distinct name or do not list a split twice")
    return records
