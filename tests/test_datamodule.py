"""Sample record, CelebA-Spoof adapter, transforms, sampler and FASDataModule behaviour."""

from __future__ import annotations

import json

import pytest
import torch

from fasvlm.data_modules import DomainSpec, FASDataModule, SampleRecord
from fasvlm.data_modules.adapters import LayoutError, get_adapter, index_dataset
from fasvlm.data_modules.adapters.celeba_spoof import read_bb
from fasvlm.data_modules.datamodule import EvalSampler, FASSampler, balance_weights, fas_collate
from fasvlm.data_modules.record import read_manifest, resolve_bbox, write_manifest
from fasvlm.data_modules.taxonomy import content_index


def test_record_rejects_inconsistent_label():
    with pytest.raises(ValueError, match="disagree"):
        SampleRecord(path="x.jpg", label=1, attack="live", domain="d", subject="s", video="v", split="train")
    with pytest.raises(ValueError, match="0 \\(live\\) or 1"):
        SampleRecord(path="x.jpg", label=2, attack="pc", domain="d", subject="s", video="v", split="train")


def test_manifest_roundtrip(tmp_path):
    recs = [SampleRecord(path="crops/a.png", label=1, attack="pc", domain="d", subject="7", video="v1", split="test",
                         frame=6, illumination="dark", bbox=(1.0, 2.0, 30.0, 40.0), extra={"protocols": {"1": "test"}}),
            SampleRecord(path="/abs/b.png", label=0, attack="live", domain="d", subject="8", video="v2", split="train")]
    write_manifest(recs, tmp_path / "manifest.parquet")
    back = read_manifest(tmp_path / "manifest.parquet")
    assert back[0].path == str(tmp_path / "crops/a.png") and back[1].path == "/abs/b.png"
    assert back[0].bbox == (1.0, 2.0, 30.0, 40.0) and back[1].bbox is None
    assert back[0].extra == {"protocols": {"1": "test"}} and back[0].illumination == "dark"
    assert back[1].illumination is None and back[0].frame == 6


def test_manifest_missing_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="fasvlm prepare"):
        read_manifest(tmp_path / "nope.parquet")


def test_bb_parsing_scaling_clamping(tmp_path):
    p = tmp_path / "x_BB.txt"
    p.write_text("61 45 61 112 0.9970805\n")
    assert read_bb(p) == (61.0, 45.0, 61.0, 112.0)
    p.write_text("")
    assert read_bb(p) is None
    p.write_text("12.7 -3 50.2 60\n")
    assert read_bb(p) == (12.7, -3.0, 50.2, 60.0)
    assert read_bb(tmp_path / "missing_BB.txt") is None

    rec = SampleRecord(path="x", label=0, attack="live", domain="d", subject="s", video="v", split="train",
                       bbox=(61, 45, 61, 112), extra={"bbox_space": [224, 224]})
    # official scaling: int(v * W / 224)
    assert resolve_bbox(rec, 448, 448) == (122, 90, 122, 224)
    rec.bbox = (-10, -20, 100, 300)  # negative and past the border: clamped
    assert resolve_bbox(rec, 224, 224) == (0, 0, 90, 224)
    rec.bbox = (222, 222, 50, 50)  # a 2x2 sliver after clamping: dropped (w or h < 3)
    assert resolve_bbox(rec, 224, 224) is None


def test_celeba_adapter_counts_labels_types_protocols(celeba_root):
    result = index_dataset("celeba_spoof", celeba_root)
    labels = {s: json.loads((celeba_root / f"metas/intra_test/{s}_label.json").read_text()) for s in ("train", "test")}
    assert len(result.records) == sum(len(v) for v in labels.values())
    assert not result.unknown
    by_path = {r.path: r for r in result.records}
    for split, content in labels.items():
        for key, vec in content.items():
            rec = by_path[str(celeba_root / key)]
            assert rec.split == split and rec.label == vec[43]
            assert content_index(rec.attack) == vec[40]
            assert rec.extra["protocols"]["intra_test"] == split
            assert rec.bbox == (40.0, 30.0, 150.0, 170.0)
    spoof = next(r for r in result.records if r.label == 1)
    assert spoof.illumination is not None and spoof.environment is not None


def test_celeba_adapter_camera_quality_from_protocol2(tmp_path):
    from conftest import write_celeba_layout

    root = tmp_path / "c"
    labels = write_celeba_layout(root, n_train_subjects=3, n_test_subjects=2)
    keys = list(labels["train"]) + list(labels["test"])
    groups = {"low": keys[0::3], "middle": keys[1::3], "high": keys[2::3]}
    for q, members in groups.items():
        d = root / "metas" / "protocol2" / f"test_on_{q}_quality_device"
        d.mkdir(parents=True)
        (d / "test_label.json").write_text(json.dumps({k: [0] * 44 for k in members}))
        (d / "train_label.json").write_text(json.dumps({k: [0] * 44 for k in keys if k not in members}))
    recs = {r.path: r for r in index_dataset("celeba_spoof", root).records}
    assert recs[str(root / keys[0])].camera_quality == "low"
    assert recs[str(root / keys[1])].camera_quality == "medium"
    assert recs[str(root / keys[2])].camera_quality == "high"
    assert recs[str(root / keys[0])].extra["protocols"]["protocol2_low"] == "test"
    assert recs[str(root / keys[0])].extra["protocols"]["protocol2_high"] == "train"


def test_celeba_adapter_layout_errors_name_the_path(tmp_path):
    with pytest.raises(LayoutError, match="Data/"):
        index_dataset("celeba_spoof", tmp_path)
    (tmp_path / "Data").mkdir()
    with pytest.raises(LayoutError, match="intra_test"):
        index_dataset("celeba_spoof", tmp_path)
    with pytest.raises(KeyError, match="valid names: celeba_spoof"):
        get_adapter("celeba")


def test_celeba_adapter_reports_inconsistent_entries(tmp_path):
    from conftest import write_celeba_layout

    root = tmp_path / "c"
    labels = write_celeba_layout(root, n_train_subjects=2, n_test_subjects=1)
    key = next(k for k in labels["train"] if "/live/" in k)
    labels["train"][key] = [0] * 40 + [7, 1, 1, 1]  # a "live" folder with a spoof label
    (root / "metas/intra_test/train_label.json").write_text(json.dumps(labels["train"]))
    result = index_dataset("celeba_spoof", root)
    assert any(key in u for u in result.unknown)
    assert str(root / key) not in {r.path for r in result.records}


def test_sampler_is_deterministic_resumable_and_shards():
    s = FASSampler(50, seed=3, rank=0, world_size=1)
    first = list(s)
    assert sorted(i for i, _ in first) == list(range(50))
    assert list(FASSampler(50, seed=3, rank=0, world_size=1)) == first
    # resume after 17 items: the rest is identical, seeds included
    r = FASSampler(50, seed=3, rank=0, world_size=1)
    r.load_state_dict({"epoch": 0, "consumed": 17})
    assert list(r) == first[17:]
    # next epoch differs
    s.set_epoch(1)
    assert list(s) != first
    # two ranks: disjoint shares of equal length covering everything
    a = [i for i, _ in FASSampler(51, seed=1, rank=0, world_size=2)]
    b = [i for i, _ in FASSampler(51, seed=1, rank=1, world_size=2)]
    assert len(a) == len(b) == 26 and set(a) | set(b) == set(range(51))


def test_eval_sampler_covers_every_item_once():
    assert list(EvalSampler(7)) == list(range(7))


def test_balanced_sampling_draws_groups_equally():
    recs = [SampleRecord(path=str(i), label=int(i < 10), attack="pc" if i < 10 else "live", domain="d", subject="s",
                         video=str(i), split="train", camera_quality=("low", "high")[i % 2]) for i in range(100)]
    w = balance_weights(recs, ["label", "camera_quality"])
    draws = [recs[i] for i, _ in FASSampler(100, weights=w, seed=0, rank=0, world_size=1) for _ in [0]]
    many = []
    for epoch in range(20):
        s = FASSampler(100, weights=w, seed=0, rank=0, world_size=1)
        s.set_epoch(epoch)
        many += [recs[i] for i, _ in s]
    frac_attack = sum(r.label for r in many) / len(many)
    assert 0.45 < frac_attack < 0.55  # 10% of the data, half of the draws
    frac_low = sum(r.camera_quality == "low" for r in many) / len(many)
    assert 0.45 < frac_low < 0.55
    assert len(draws) == 100


def _dm(root, **kw):
    return FASDataModule(
        sources=[DomainSpec("celeba_spoof", dataset="celeba_spoof", root=str(root), split="train")],
        targets=[DomainSpec("celeba_spoof", dataset="celeba_spoof", root=str(root), split="test"),
                 DomainSpec("shifted", dataset="celeba_spoof", root=str(root), split="test")],
        batch_size=8, num_workers=0, image_size=32, val_fraction=0.25, **kw)


def test_datamodule_named_loaders_and_batch_contract(celeba_root):
    dm = _dm(celeba_root)
    dm.setup("fit")
    assert dm.val_names == ["source", "celeba_spoof", "shifted"] and dm.source_name == "source"
    train_subjects = {r.subject for r in dm.records("train")}
    val_subjects = {r.subject for r in dm.records("source")}
    assert train_subjects and val_subjects and not train_subjects & val_subjects  # held out by subject
    loaders = dm.val_dataloader()
    assert len(loaders) == 3
    batch = next(iter(loaders[2]))
    # the workers hand over uint8 carriers (32 px + the jitter margin) and augmentation parameters; the device half
    # (on_after_batch_transfer) makes the model inputs
    assert batch["pixel_values"].dtype == torch.uint8 and batch["pixel_values"].shape == (8, 40, 40, 3)
    assert batch["pixel_params"].shape == (8, 10)
    batch = dm.on_after_batch_transfer(batch, 2)
    assert batch["pixel_values"].shape == (8, 3, 32, 32) and batch["pixel_values"].dtype == torch.float32
    assert "pixel_params" not in batch
    assert set(batch["domain"]) == {"shifted"}  # reported under the configured name
    assert batch["label"].dtype == torch.long and len(batch["sample_id"]) == 8
    train_batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert train_batch["pixel_values"].shape == (8, 3, 32, 32)


def test_corrupt_images_are_skipped_and_counted(tmp_path):
    from conftest import write_celeba_layout

    root = tmp_path / "c"
    labels = write_celeba_layout(root, n_train_subjects=4, n_test_subjects=2)
    bad = [k for k in labels["test"]][:2]
    (root / bad[0]).write_bytes(b"\x89PNG broken")
    (root / bad[1]).unlink()
    dm = _dm(root)
    dm.setup("test")
    loader = dm.test_dataloader()[1]
    seen, skipped = 0, []
    for batch in loader:
        seen += len(batch["label"])
        skipped += batch["skipped"]
    assert seen == len(labels["test"]) - 2
    # the corrupt image is skipped at load time; the missing one is never indexed (issue 15: counted by the adapter)
    assert skipped == [str(root / bad[0])]
    assert str(root / bad[1]) not in {r.path for r in dm.records("celeba_spoof")}
    # in training a failed item is replaced, so batches keep their size
    (root / next(iter(labels["train"]))).write_bytes(b"junk")
    dm2 = _dm(root, balance=None)
    dm2.setup("fit")
    sizes = [len(b["label"]) for b in dm2.train_dataloader()]
    assert sum(sizes) == len(dm2.records("train"))


def test_collate_of_only_failures_is_an_empty_batch():
    batch = fas_collate([{"skipped": ["a"]}, {"skipped": ["b"]}])
    assert batch["pixel_values"].shape[0] == 0 and batch["skipped"] == ["a", "b"]


def test_whole_video_records_ask_for_prepare(tmp_path):
    rec = SampleRecord(path="v.avi", label=0, attack="live", domain="oulu", subject="1", video="v", split="test",
                       frame=-1)
    write_manifest([rec], tmp_path / "manifest.parquet")
    dm = FASDataModule(sources=[DomainSpec("o", manifest=str(tmp_path / "manifest.parquet"), split="test")],
                       targets=[DomainSpec("t", manifest=str(tmp_path / "manifest.parquet"), split="test")])
    with pytest.raises(ValueError, match="fasvlm prepare"):
        dm.setup("fit")


def test_model_image_spec_drives_the_transform(celeba_root):
    import lightning as L

    from fasvlm.backbones import ImageSpec

    class M(L.LightningModule):
        image_spec = ImageSpec(size=48, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))

    dm = _dm(celeba_root)
    trainer = L.Trainer(accelerator="cpu", logger=False)
    trainer.strategy.connect(M())
    dm.trainer = trainer
    dm.setup("fit")
    batch = dm.on_after_batch_transfer(next(iter(dm.val_dataloader()[0])), 0)
    assert batch["pixel_values"].shape[-1] == 48


def test_camera_quality_fallback_rule_orders_sharpness():
    import numpy as np
    from PIL import Image, ImageFilter

    from fasvlm.data_modules.transforms import estimate_camera_quality

    rng = np.random.default_rng(0)
    sharp = Image.fromarray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8))
    assert estimate_camera_quality(sharp) == "high"
    assert estimate_camera_quality(sharp.filter(ImageFilter.GaussianBlur(4))) == "low"
    assert estimate_camera_quality(Image.new("RGB", (128, 128), (120, 100, 90))) == "low"
