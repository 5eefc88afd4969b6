"""``fasvlm bench --data``: the data path against its limit, the decode rate of the same stored files (issue 20).

Everything runs in this process with one thread: a loader worker is one process on one core, so images/s here are
images/s per worker core. Three sets of files are measured, each for the train and the eval path:

- ``config``: the config's own data (its training records, and its first target for evaluation);
- ``full_size``: photographs rendered by the synthetic generator at 1280x960 (CelebA-Spoof-like: a face of about
  400 px, sensor noise, JPEG q95), written into a temporary directory;
- ``prepared``: face crops of those, stored as ``fasvlm prepare`` stores them (training size plus the jitter margin,
  ``--pad``, in prepare's default format).

For each: the bare decode time of the files (``Image.open`` + ``load``: the limit; for JPEGs also at the reduced scale
the loader decodes them), then the loader's images/s ``before`` (``device_transforms=False``: crop, resize, jitter,
flip and normalisation on the worker) and ``after`` (uint8 carriers, the rest per batch on the device), each with its
ratio to the decode rate and its stages in ms per image (``top_costs_ms``). ``device_ms_per_image`` is the device half
timed on this CPU (on a GPU it is a few batched kernels). ``eval_difference`` is the largest difference between the
eval-path model inputs of the two placements. ``formats`` compares crop formats on the prepared crops.
"""

from __future__ import annotations

import io
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["run_data", "render_full_size", "store_crops", "format_study"]


def run_data(args, built) -> dict[str, Any]:
    """The ``--data`` report (module docstring); ``built`` = (model, data module, config) of the bench's builder."""
    from fasvlm.data_modules.datamodule import FASDataModule, data_transforms
    from fasvlm.data_modules.prepare import PrepareOptions
    from fasvlm.data_modules.transforms import ImageSpec, carrier_size

    model, dm, _ = built
    if not isinstance(dm, FASDataModule):
        raise SystemExit("fasvlm bench --data: the config's data must be a FASDataModule")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        spec = getattr(model, "image_spec", None) or ImageSpec(size=dm.image_size or 224)
        if args.image_size:
            spec = ImageSpec(size=args.image_size, mean=spec.mean, std=spec.std)
        common = {"margin": dm.margin, "augment": dm.augment, "color_jitter": dm.color_jitter}
        placements = {"before": data_transforms(spec, device_transforms=False, **common),
                      "after": data_transforms(spec, device_transforms=True, **common)}
        batch = min(dm.batch_size, 32)
        sets: dict[str, Any] = {}
        try:
            train = dm.records("train")[: args.data_images]
            evals = dm.records(dm.test_names[1])[: args.data_images]
            sets["config"] = measure_set(train, evals, placements, batch, args.data_min_items)
        except (FileNotFoundError, ValueError, OSError) as err:
            sets["config"] = {"unavailable": f"{type(err).__name__}: {str(err)[:300]}"}
        prep = PrepareOptions()
        formats = None
        if args.full_size_images > 0:
            width, height = (int(v) for v in args.full_size.lower().split("x"))
            with tempfile.TemporaryDirectory(prefix="fasvlm-bench-data-") as tmp:
                full = render_full_size(Path(tmp) / "full", args.full_size_images, width, height)
                sets["full_size"] = measure_set(full, full, placements, batch, args.data_min_items)
                crops = store_crops(full, Path(tmp) / "prepared", spec.size, dm.margin, prep.pad, prep.image_format)
                sets["prepared"] = measure_set(crops, crops, placements, batch, args.data_min_items)
                sets["prepared"]["stored"] = {"size": carrier_size(spec.size), "format": prep.image_format,
                                              "pad": prep.pad}
                formats = format_study([r.path for r in crops])
        return {
            "mode": "data",
            "config": args.config,
            "threads": 1,
            "image_size": spec.size,
            "carrier_size": carrier_size(spec.size),
            "margin": dm.margin,
            "color_jitter": dm.color_jitter,
            "batch_size": batch,
            "sets": sets,
            "formats": formats,
            "summary": {name: {path: {"ratio_before": r[path]["before"]["ratio_to_decode"],
                                      "ratio_after": r[path]["after"]["ratio_to_decode"]}
                               for path in ("train", "eval")}
                        for name, r in sets.items() if "train" in r},
        }
    finally:
        torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------------------------------
# one set of files


def measure_set(train: Sequence, evals: Sequence, placements: dict, batch_size: int,
                min_items: int = 256) -> dict[str, Any]:
    """Decode limit, loader rates and stage costs of both placements, eval-input difference, for one set of files."""
    paths = sorted({r.path for r in (*train, *evals)})
    out: dict[str, Any] = {
        "files": len(paths),
        "file_size": _file_sizes(paths),
        "mean_bytes": float(np.mean([Path(p).stat().st_size for p in paths])),
    }
    for path, records, train_mode in (("train", train, True), ("eval", evals, False)):
        res: dict[str, Any] = _decode_limit(records, placements["after"][1])
        limit_ms = res["decode_limit_ms"]
        for when, (train_tf, eval_tf, device_tf) in placements.items():
            tf = train_tf if train_mode else eval_tf
            ips, batches = _loader_rate(records, tf, train_mode, batch_size, min_items)
            res[when] = {"images_per_s": ips, "ratio_to_decode": ips * limit_ms / 1000.0,
                         "top_costs_ms": stage_costs(records, tf, train_mode)}
            if device_tf is not None:
                res[when]["device_ms_per_image"] = _device_ms(batches, device_tf)
        out[path] = res
    out["eval_difference"] = eval_difference(evals, placements["before"][1], placements["after"][1],
                                             placements["after"][2])
    return out


def _decode_limit(records: Sequence, carrier) -> dict[str, float]:
    """The bare decode time of these records' files (``Image.open`` + ``load``), and for JPEGs also at the reduced
    scale the loader decodes them; the limit is the faster of the two."""
    from PIL import Image

    paths = sorted({r.path for r in records})
    out = {"decode_ms": _mean_ms(paths, _decode)}
    if any(Image.open(p).format == "JPEG" for p in paths):
        out["decode_draft_ms"] = _mean_ms(list(records), lambda r: _draft_decode(carrier, r))
    out["decode_limit_ms"] = min(out.values())
    out["decode_limit_images_per_s"] = 1000.0 / out["decode_limit_ms"]
    return out


def _decode(path: str) -> None:
    from PIL import Image

    with Image.open(path) as img:
        img.load()


def _draft_decode(carrier, record) -> None:
    from PIL import Image

    from fasvlm.data_modules.record import resolve_bbox
    from fasvlm.data_modules.transforms import AugmentParams

    with Image.open(record.path) as img:
        carrier.decode(img, resolve_bbox(record, img.width, img.height), AugmentParams())


# Timed passes per measurement; the fastest is reported (on a shared machine the slower ones measure the neighbours)
PASSES = 3


def _mean_ms(items: Sequence, fn: Callable) -> float:
    """ms per item of ``fn(item)``: the fastest of ``PASSES`` passes after one warm-up pass (files in the page
    cache)."""
    for it in items:
        fn(it)
    best = math.inf
    for _ in range(PASSES):
        t0 = time.perf_counter()
        for it in items:
            fn(it)
        best = min(best, time.perf_counter() - t0)
    return best * 1000.0 / len(items)


def _file_sizes(paths: Sequence[str]) -> str:
    from PIL import Image

    sizes = sorted({Image.open(p).size for p in paths})
    return ", ".join(f"{w}x{h}" for w, h in sizes[:4]) + (" ..." if len(sizes) > 4 else "")


def _seeds(n: int) -> list[int]:
    return [int(s) for s in np.random.default_rng(0).integers(0, 2**31 - 1, n)]


def _loader_rate(records: Sequence, transform, train: bool, batch_size: int, min_items: int = 256):
    """Images/s of the project's DataLoader in this process (one worker's work: load, transform, collate)."""
    from fasvlm.data_modules.datamodule import EvalSampler, FASDataset, FASSampler, fas_collate, make_loader

    dataset = FASDataset(records, transform, train=train)
    sampler = FASSampler(len(records), seed=0, rank=0, world_size=1) if train else EvalSampler(len(records))
    loader = make_loader(dataset, batch_size, sampler, collate=fas_collate, num_workers=0, seed=0, pin_memory=False,
                         persistent_workers=False)
    batches = list(loader)  # warm-up pass (page cache, first-call costs); kept for the device timing
    passes = max(1, math.ceil(min_items / len(records)))
    best = 0.0
    for _ in range(PASSES):
        n, t0 = 0, time.perf_counter()
        for _ in range(passes):
            for b in loader:
                n += len(b["label"])
        best = max(best, n / (time.perf_counter() - t0))
    return best, batches


def _device_ms(batches: list[dict], device_tf) -> float:
    """ms per image of the device half on this CPU (one thread), over the batches of one pass."""
    from fasvlm.data_modules.datamodule import apply_device_transform

    def run() -> int:
        n = 0
        for b in batches:
            out = apply_device_transform(dict(b), device_tf)
            n += out["pixel_values"].shape[0]
        return n

    run()
    best = math.inf
    for _ in range(PASSES):
        t0 = time.perf_counter()
        n = run()
        best = min(best, (time.perf_counter() - t0) * 1000.0 / max(1, n))
    return best


def stage_costs(records: Sequence, transform, train: bool) -> dict[str, float]:
    """Mean ms per image of each stage of ``transform`` (the methods the dataset calls), largest first.

    ``FaceTransform`` (before): decode, resize (crop + shift/scale jitter + bicubic resize), colour_jitter,
    to_tensor_normalise (flip, float conversion, normalisation). ``FaceCarrier`` (after): decode (at reduced scale
    where used), cut (the stored crop as is, or bicubic resize + paste), to_tensor (uint8, no copy).
    """
    from PIL import Image

    from fasvlm.data_modules.record import resolve_bbox
    from fasvlm.data_modules.transforms import FaceCarrier

    seeds = _seeds(len(records))
    carrier = isinstance(transform, FaceCarrier)
    names = ("decode", "cut", "to_tensor") if carrier else ("decode", "resize", "colour_jitter", "to_tensor_normalise")
    best = dict.fromkeys(names, math.inf)
    for attempt in range(1 + PASSES):  # the first pass warms up; the fastest of the others counts, per stage
        totals = dict.fromkeys(names, 0.0)
        for rec, seed in zip(records, seeds, strict=True):
            rng = np.random.default_rng(seed) if train else None
            t = [time.perf_counter()]
            with Image.open(rec.path) as img:
                box = resolve_bbox(rec, img.width, img.height)
                if carrier:
                    aug = transform.augment(rng)
                    image, window = transform.decode(img, box, aug)
                    t.append(time.perf_counter())
                    arr, _ = transform.cut(image, window, aug)
                    t.append(time.perf_counter())
                    torch.from_numpy(arr)
                    t.append(time.perf_counter())
                else:
                    img.load()
                    t.append(time.perf_counter())
                    crop = transform.crop(img, box, rng)
                    t.append(time.perf_counter())
                    crop = transform.colour(crop, rng)
                    t.append(time.perf_counter())
                    transform.to_tensor(crop, rng)
                    t.append(time.perf_counter())
            for name, a, b in zip(names, t[:-1], t[1:], strict=True):
                totals[name] += b - a
        if attempt:
            best = {k: min(best[k], totals[k]) for k in names}
    costs = {k: v * 1000.0 / len(records) for k, v in best.items()}
    return dict(sorted(costs.items(), key=lambda kv: -kv[1]))


def eval_difference(records: Sequence, before_tf, after_tf, device_tf) -> dict[str, float]:
    """Largest and mean |difference| of the eval-path model inputs of the two placements, normalised and in
    [0, 1] pixel units (the normalised difference times the channel's std)."""
    from fasvlm.data_modules.datamodule import FASDataset, apply_device_transform, fas_collate

    before_ds, after_ds = FASDataset(records, before_tf), FASDataset(records, after_tf)
    std = device_tf.std.view(1, 3, 1, 1)
    worst = worst_pixels = total = 0.0
    count = 0
    for start in range(0, len(records), 16):
        idx = range(start, min(len(records), start + 16))
        a = fas_collate([before_ds[i] for i in idx])["pixel_values"]
        b = apply_device_transform(fas_collate([after_ds[i] for i in idx]), device_tf)["pixel_values"]
        diff = (a - b).abs()
        worst = max(worst, float(diff.max()))
        total += float((diff * std).sum())
        count += diff.numel()
        worst_pixels = max(worst_pixels, float((diff * std).max()))
    return {"max_abs_normalised": worst, "max_abs_pixels": worst_pixels, "mean_abs_pixels": total / max(1, count)}


# ---------------------------------------------------------------------------------------------------------------------
# files the bench writes


def render_full_size(out: Path, n: int, width: int, height: int, *, scenes: int = 4) -> list:
    """``n`` full-size JPEG q95 photographs of synthetic faces (live and three attacks) with their face boxes.

    ``scenes`` images are rendered by the synthetic generator at half size (rendering at full size takes seconds
    each), upscaled 2x and given per-file sensor noise (sigma 2 grey levels) and a horizontal flip on odd files, so
    every file has a photograph's JPEG entropy and none is a copy of another.
    """
    import cv2

    from fasvlm.data_modules.record import SampleRecord
    from fasvlm.data_modules.synthetic.attacks import Conditions, render_still
    from fasvlm.data_modules.synthetic.faces import sample_identity

    out.mkdir(parents=True, exist_ok=True)
    kinds = ("live", "photo", "pc", "phone")
    rendered = []
    for i in range(min(scenes, n)):
        rng = np.random.default_rng(1000 + i)
        subject, attacker = sample_identity(np.random.default_rng(i)), sample_identity(rng)
        cond = Conditions(height // 2, width // 2, "normal", "indoor", "high")
        img, box, _ = render_still(kinds[i % len(kinds)], subject, attacker, cond, rng)
        big = cv2.resize(img, (width, height), interpolation=cv2.INTER_CUBIC)
        rendered.append((kinds[i % len(kinds)], big, tuple(2.0 * v for v in box)))
    records = []
    for i in range(n):
        kind, img, (x, y, w, h) = rendered[i % len(rendered)]
        noise = np.random.default_rng(i).normal(0.0, 2.0, img.shape)
        img = np.clip(img + noise, 0, 255).astype(np.uint8)
        if i % 2:
            img, x = img[:, ::-1], width - x - w
        path = out / f"{i:04d}.jpg"
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 95])
        if not ok:
            raise OSError(f"cannot encode {path}")
        path.write_bytes(buf.tobytes())
        records.append(SampleRecord(path=str(path), label=int(kind != "live"),
                                    attack="live" if kind == "live" else kind, domain="bench_full_size",
                                    subject=f"s{i % len(rendered)}", video=f"{i:04d}", split="test",
                                    bbox=(x, y, w, h)))
    return records


def store_crops(records: Sequence, out: Path, size: int, margin: float, pad: float, image_format: str) -> list:
    """Face crops of ``records`` as ``fasvlm prepare`` stores them (:func:`faces.crop_box` with ``pad``, prepare's
    encoder), with their boxes in crop pixels."""
    import dataclasses

    from fasvlm.data_modules.faces import crop_box
    from fasvlm.data_modules.prepare import encode_image, read_image

    out.mkdir(parents=True, exist_ok=True)
    stored = []
    for i, rec in enumerate(records):
        crop, box = crop_box(read_image(rec.path), rec.bbox, size, margin, pad)
        path = out / f"{i:04d}.{image_format}"
        path.write_bytes(encode_image(crop, image_format))
        stored.append(dataclasses.replace(rec, path=str(path), bbox=tuple(round(float(v), 2) for v in box)))
    return stored


def format_study(paths: Sequence[str]) -> dict[str, dict[str, float]]:
    """PNG (prepare's compression level 3), JPEG q95, WebP q95 and lossless WebP of the same crops: mean decode ms
    (Pillow, one thread), mean bytes, and the largest and mean |error| in grey levels against the crop."""
    import cv2
    from PIL import Image

    from fasvlm.data_modules.prepare import encode_image, read_image

    def lossy_webp(a: np.ndarray) -> bytes:  # not a prepare format (see docs/data_path.md): encoded here
        return cv2.imencode(".webp", np.ascontiguousarray(a[:, :, ::-1]), [cv2.IMWRITE_WEBP_QUALITY, 95])[1].tobytes()

    originals = [read_image(p) for p in paths]
    encoders = {"png": lambda a: encode_image(a, "png"), "jpeg_q95": lambda a: encode_image(a, "jpg", 95),
                "webp_q95": lossy_webp, "webp_lossless": lambda a: encode_image(a, "webp")}
    out = {}
    for name, encode in encoders.items():
        blobs = [encode(a) for a in originals]

        def decode(blob: bytes) -> np.ndarray:
            with Image.open(io.BytesIO(blob)) as img:
                img.load()
                return img

        ms = _mean_ms(blobs, decode)
        errors = [np.abs(np.asarray(decode(b).convert("RGB"), dtype=np.int16) - a.astype(np.int16))
                  for b, a in zip(blobs, originals, strict=True)]
        out[name] = {"decode_ms": ms, "mean_bytes": float(np.mean([len(b) for b in blobs])),
                     "max_abs_error": float(max(e.max() for e in errors)),
                     "mean_abs_error": float(np.mean([e.mean() for e in errors]))}
    return out
