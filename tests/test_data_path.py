"""Issue 20: the transform split between loader workers (uint8 carriers + per-sample parameters) and the device.

What the new placement must keep: the eval inputs of the worker-side path (bit for bit where the worker still
resizes; within Pillow's 8-bit rounding where the device resamples a crop stored at training scale), the train
augmentation drawn from each sample's seed (so exact resume holds), and the crops ``fasvlm prepare`` stores being
carriers the workers only decode.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fasvlm.data_modules.datamodule import FASDataset, apply_device_transform, fas_collate
from fasvlm.data_modules.faces import crop_box, padded_size
from fasvlm.data_modules.record import SampleRecord
from fasvlm.data_modules.transforms import (
    CLIP_MEAN,
    CLIP_STD,
    DeviceTransform,
    FaceCarrier,
    FaceTransform,
    carrier_size,
    color_jitter,
)

STD = torch.tensor(CLIP_STD).view(1, 3, 1, 1)


def _photo(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Photograph-like content: smooth structure from upscaled noise plus pixel noise (sharp detail everywhere)."""
    small = Image.fromarray(rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8))
    smooth = np.asarray(small.resize((width, height), Image.BICUBIC), dtype=np.float64)
    return np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype(np.uint8)


def _records(tmp_path, images: list[np.ndarray], boxes, suffix: str = "png", **save) -> list[SampleRecord]:
    out = []
    for i, (img, box) in enumerate(zip(images, boxes, strict=True)):
        path = tmp_path / f"{i:03d}.{suffix}"
        Image.fromarray(img).save(path, **save)
        out.append(SampleRecord(path=str(path), label=i % 2, attack="a4" if i % 2 else "live", domain="d",
                                subject=f"s{i}", video=f"v{i}", split="train", bbox=box))
    return out


def _inputs(records, worker_tf, device_tf=None, *, train=False, seeds=None) -> torch.Tensor:
    ds = FASDataset(records, worker_tf, train=train)
    items = [ds[(i, seeds[i]) if seeds else i] for i in range(len(records))]
    batch = fas_collate(items)
    return apply_device_transform(batch, device_tf)["pixel_values"]


def _pixel_diff(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a - b| of normalised inputs in [0, 1] pixel units."""
    return (a - b).abs() * STD


@pytest.fixture(scope="module")
def raw_images(tmp_path_factory):
    """Raw photos of varied sizes with face boxes, some running off the border (padded black by both paths)."""
    rng = np.random.default_rng(0)
    tmp = tmp_path_factory.mktemp("raw")
    images, boxes = [], []
    for i in range(8):
        w, h = int(rng.integers(90, 140)), int(rng.integers(90, 140))
        images.append(_photo(rng, w, h))
        side = rng.uniform(30, 60)
        x = -5.0 if i == 3 else rng.uniform(0, w - side)
        boxes.append((x, rng.uniform(0, h - side), side, side * rng.uniform(0.9, 1.2)))
    return _records(tmp, images, boxes)


def test_worker_resized_images_give_identical_inputs_in_both_placements(raw_images):
    """Raw images (any size): the worker resizes exactly as before; eval and train (shift/scale jitter, flip) inputs
    are bit-identical to the worker-side transform's."""
    size = 32
    seeds = [11 * i + 3 for i in range(len(raw_images))]
    for train in (False, True):
        before = _inputs(raw_images, FaceTransform(size, CLIP_MEAN, CLIP_STD, train=train), train=train, seeds=seeds)
        after = _inputs(raw_images, FaceCarrier(size, train=train), DeviceTransform(size, CLIP_MEAN, CLIP_STD),
                        train=train, seeds=seeds)
        assert after.shape == before.shape == (len(raw_images), 3, size, size)
        assert torch.equal(after, before), f"train={train}"


def test_carrier_parameters_are_a_function_of_the_seed(raw_images):
    """Exact resume: the same (index, seed) gives the same carrier and parameters; other seeds other parameters."""
    tf = FaceCarrier(32, train=True, color_jitter=(0.2, 0.2, 0.2))
    ds = FASDataset(raw_images, tf, train=True)
    a, b, c = ds[(2, 7)], ds[(2, 7)], ds[(2, 8)]
    assert torch.equal(a["pixel_values"], b["pixel_values"]) and torch.equal(a["pixel_params"], b["pixel_params"])
    assert not torch.equal(a["pixel_params"], c["pixel_params"])
    assert a["pixel_values"].dtype == torch.uint8 and a["pixel_values"].shape == (40, 40, 3)  # carrier_size(32)
    assert FaceCarrier(32).augment(np.random.default_rng(1)).flip is False  # eval: no augmentation


@pytest.fixture(scope="module")
def stored_crops(tmp_path_factory):
    """Face crops stored as `fasvlm prepare` stores them: training size + jitter margin (--pad 0.12), PNG."""
    rng = np.random.default_rng(1)
    tmp = tmp_path_factory.mktemp("stored")
    size, images, boxes = 56, [], []
    for _ in range(8):
        raw = _photo(rng, 320, 240)
        box = (rng.uniform(90, 130), rng.uniform(50, 80), rng.uniform(80, 110), rng.uniform(90, 120))
        crop, crop_bbox = crop_box(raw, box, size, 0.2, pad=0.12)
        images.append(crop)
        boxes.append(tuple(round(float(v), 2) for v in crop_bbox))  # as the manifest stores it
    return size, _records(tmp, images, boxes)


def test_stored_crops_are_carriers_and_eval_inputs_differ_only_by_pillow_rounding(stored_crops):
    """A crop stored at training scale is handed over as decoded (no worker resampling); the device resamples its
    face window with Pillow's filter, so the eval inputs differ from Pillow's resize only by Pillow's 8-bit rounding
    after each of its two passes (at most about one grey level)."""
    size, records = stored_crops
    assert carrier_size(size) == padded_size(size, 0.12) == 70
    carrier = FaceCarrier(size)
    for rec in records:
        item = FASDataset([rec], carrier)[0]
        with Image.open(rec.path) as img:
            assert torch.equal(item["pixel_values"], torch.from_numpy(np.array(img.convert("RGB"))))
        cx, cy, side = item["pixel_params"][:3].tolist()
        assert abs(side - size) <= 2 and abs(cx - 35) <= 1 and abs(cy - 35) <= 1  # the face window, at scale ~1
    before = _inputs(records, FaceTransform(size, CLIP_MEAN, CLIP_STD))
    after = _inputs(records, carrier, DeviceTransform(size, CLIP_MEAN, CLIP_STD))
    diff = _pixel_diff(before, after)
    assert float(diff.max()) <= 1.5 / 255
    assert float(diff.mean()) <= 0.5 / 255


def test_device_flip_and_jitter_follow_the_parameters(stored_crops):
    """Train on stored crops: flipping the parameters' flag mirrors the input; the drawn windows move it."""
    size, records = stored_crops
    tf, dev = FaceCarrier(size, train=True), DeviceTransform(size, CLIP_MEAN, CLIP_STD)
    item = FASDataset(records, tf, train=True)[(0, 5)]
    pixels, params = item["pixel_values"][None], item["pixel_params"][None].clone()
    params[0, 3] = 0.0
    plain = dev(pixels, params)
    assert torch.equal(dev(pixels, params), plain)  # deterministic: a resumed run recomputes the same inputs
    params[0, 3] = 1.0
    assert torch.allclose(dev(pixels, params), plain.flip(-1))
    centred = FASDataset(records, FaceCarrier(size), train=False)[0]
    assert not torch.allclose(plain, dev(centred["pixel_values"][None], centred["pixel_params"][None]))


def test_device_colour_jitter_matches_the_pil_definition():
    """Brightness / contrast / saturation with the factors and order drawn on the worker equal PIL's ImageEnhance
    up to its 8-bit rounding (torchvision's definitions; PIL rounds after each operation and its contrast uses the
    integer mean grey level)."""
    rng = np.random.default_rng(3)
    size = 24
    img = Image.fromarray(_photo(rng, size, size))
    dev = DeviceTransform(size, (0.0,) * 3, (1.0,) * 3)
    tf = FaceCarrier(size, train=True, jitter=0.0, flip=False, color_jitter=(0.4, 0.4, 0.4))
    carrier = carrier_size(size, 0.0)
    assert carrier == size
    for seed in range(6):
        pixels, params = tf.sample(img.copy(), None, np.random.default_rng(seed))
        got = dev(torch.from_numpy(pixels)[None], torch.from_numpy(params)[None])[0]
        want = np.asarray(color_jitter(img, 0.4, 0.4, 0.4, np.random.default_rng(seed)), dtype=np.float32) / 255
        assert float((got.permute(1, 2, 0) - torch.from_numpy(want)).abs().max()) <= 3.5 / 255


def test_large_jpegs_decode_at_reduced_scale_close_to_the_full_decode(tmp_path):
    """A JPEG whose face window is over 4x the input size is decoded at reduced scale (libjpeg DCT scaling, keeping
    at least 2x the input size across the window); the inputs stay close to the full decode's."""
    rng = np.random.default_rng(4)
    size = 32
    images = [_photo(rng, 640, 480) for _ in range(3)]
    boxes = [(200.0, 120.0, 180.0, 200.0)] * 3
    records = _records(tmp_path, images, boxes, suffix="jpg", quality=95)
    tf = FaceCarrier(size)
    from fasvlm.data_modules.transforms import AugmentParams

    with Image.open(records[0].path) as img:
        decoded, window = tf.decode(img, boxes[0], AugmentParams())
        # 1/2 scale: the 240 px window keeps 120 px (1/4 would keep 60 < 2 x 32)
        assert decoded.size == (320, 240) and window[2] - window[0] == pytest.approx(120)
    before = _inputs(records, FaceTransform(size, CLIP_MEAN, CLIP_STD))
    after = _inputs(records, tf, DeviceTransform(size, CLIP_MEAN, CLIP_STD))
    diff = _pixel_diff(before, after)
    # measured: max 0.027, mean 0.004 (7 and 1 grey levels: the DCT's box prefilter against the bicubic antialiasing)
    assert float(diff.mean()) <= 0.01 and float(diff.max()) <= 0.06
    full = _inputs(records, FaceCarrier(size, draft=False), DeviceTransform(size, CLIP_MEAN, CLIP_STD))
    assert torch.equal(full, before)


def test_resuming_a_run_from_before_the_device_transform_asks_for_the_worker_placement():
    """A run whose config predates ``device_transforms`` ran the whole transform on the workers: resuming it with the
    new default is a different experiment (the diff says so); with ``device_transforms: false`` it resumes."""
    from fasvlm.cli import config_diff

    old = {"data": {"class_path": "fasvlm.data_modules.FASDataModule", "init_args": {"batch_size": 8}}}
    new = {"data": {"class_path": "fasvlm.data_modules.FASDataModule",
                    "init_args": {"batch_size": 8, "device_transforms": True}}}
    assert config_diff(old, new) == ["data.init_args.device_transforms: False -> True"]
    new["data"]["init_args"]["device_transforms"] = False
    assert config_diff(old, new) == []
