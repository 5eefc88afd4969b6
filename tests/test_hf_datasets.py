"""Hugging Face `datasets` folders (issue 23): one schema per table, `fasvlm prepare --hf`, the dataset card's counts,
FASDataModule reading a folder where a manifest goes (same batches: ids, labels, pixels), caption and instruction
tables with their features, the quickstart from folders (slow)."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path

import datasets
import pandas as pd
import pytest
import torch
from conftest import REPO

from fasvlm.data_modules.datamodule import DomainSpec, FASDataModule, select_records
from fasvlm.data_modules.hf_datasets import (
    CARD,
    MARKER,
    SYNTHETIC_LICENCE,
    caption_features,
    card_counts,
    dataset_licence,
    instruction_features,
    instructions_dataset,
    load_folder,
    read_captions,
    read_instruction_entries,
    read_sample_records,
    sample_features,
    samples_dataset,
    write_captions,
    write_folder,
    write_instructions,
)
from fasvlm.data_modules.prepare import main as prepare_main
from fasvlm.data_modules.record import read_manifest
from fasvlm.data_modules.taxonomy import ATTACK_NAMES

PROTOCOLS = ["intra_test", "protocol1", "protocol2_high", "protocol2_low", "protocol2_middle"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, synthetic_root) -> Path:
    """`fasvlm prepare --hf` of the tiny synthetic CelebA-Spoof release (40 images, shipped boxes, protocol lists)."""
    out = tmp_path_factory.mktemp("prepared") / "celeba_spoof"
    assert prepare_main(_argv(synthetic_root, out)) == 0
    return out


def _argv(synthetic_root: Path, out: Path) -> list[str]:
    return ["--dataset", "celeba_spoof", "--root", str(synthetic_root / "celeba_spoof"), "--out", str(out),
            "--workers", "0", "--no-progress", "--hf"]


def _protocols(records) -> list[str]:
    return sorted({p for r in records for p in r.extra.get("protocols", {})})


def test_prepare_hf_writes_a_typed_folder_whose_card_states_its_counts(prepared, synthetic_root):
    folder = prepared / "manifest.hf"
    ds = datasets.load_from_disk(str(folder))
    manifest = read_manifest(prepared / "manifest.parquet")
    assert _protocols(manifest) == PROTOCOLS
    assert ds.features == sample_features(PROTOCOLS, "embed")
    assert ds.features["label"].names == ["live", "attack"] and ds.features["attack"].names == list(ATTACK_NAMES)
    assert ds.num_rows == len(manifest) == 40
    assert ds["sample_id"] == [r.sample_id for r in manifest]  # the manifest's order
    # label 1 = attack, attack types by taxonomy name
    assert [ds.features["label"].int2str(v) for v in ds["label"]] == ["attack" if r.label else "live" for r in manifest]
    assert [ds.features["attack"].int2str(v) for v in ds["attack"]] == [r.attack for r in manifest]
    # the crop bytes are the crop files'
    first = ds.cast_column("image", datasets.Image(decode=False))[0]["image"]["bytes"]
    assert first == (prepared / manifest[0].path).read_bytes()

    card = (folder / CARD).read_text()
    counts = Counter((s, ds.features["label"].int2str(v)) for s, v in zip(ds["split"], ds["label"]))
    expected = {s: {"live": counts[s, "live"], "attack": counts[s, "attack"],
                    "total": counts[s, "live"] + counts[s, "attack"]} for s in {s for s, _ in counts}}
    expected["all"] = {k: sum(v[k] for v in expected.values()) for k in ("live", "attack", "total")}
    assert card_counts(card) == expected and expected["all"]["total"] == 40
    protocol_rows = re.findall(r"^\| (\w+) \| (\w+) \| (\d+) \|$", card.split("## Protocol splits")[1], re.M)
    held = Counter((p, s) for m in ds["protocols"] for p, s in m.items() if s is not None)
    assert {(p, s): int(n) for p, s, n in protocol_rows} == dict(held)
    assert "- Made by: `fasvlm prepare " + " ".join(_argv(synthetic_root, prepared)) + "`" in card
    assert "- Licence: " + SYNTHETIC_LICENCE in card  # a `fasvlm synth` output, not the CelebA terms
    assert "| size | 224 |" in card and "| margin | 0.2 |" in card
    assert json.loads((folder / MARKER).read_text())["kind"] == "samples"


def _dm(source: Path, **kw) -> FASDataModule:
    return FASDataModule(
        sources=[DomainSpec("celeba_spoof", manifest=str(source), split="train")],
        targets=[DomainSpec("celeba_spoof", manifest=str(source), split="test"),
                 DomainSpec("p1", manifest=str(source), split="test", protocol="protocol1")],
        batch_size=8, num_workers=0, image_size=32, val_fraction=0.25, seed=3, **kw)


def _assert_same_batches(loader_a, loader_b) -> int:
    n = 0
    for a, b in zip(loader_a, loader_b, strict=True):
        assert a["sample_id"] == b["sample_id"] and a["attack"] == b["attack"] and a["domain"] == b["domain"]
        for key in ("label", "content", "illumination", "environment", "camera_quality"):
            assert torch.equal(a[key], b[key]), key
        assert torch.equal(a["pixel_values"], b["pixel_values"])
        n += len(a["label"])
    return n


def test_datamodule_gives_the_same_batches_from_the_folder_as_from_the_manifest(prepared, tmp_path):
    # the folder alone, moved away from the crops it was made from: crops are decoded from its Arrow files
    moved = tmp_path / "elsewhere" / "manifest.hf"
    shutil.copytree(prepared / "manifest.hf", moved)
    dms = [_dm(prepared / "manifest.parquet"), _dm(moved)]
    for dm in dms:
        dm.setup("fit")
    for name in ("train", "source", "celeba_spoof", "p1"):
        assert [r.sample_id for r in dms[0].records(name)] == [r.sample_id for r in dms[1].records(name)], name
    assert not (moved.parent / "crops").exists()
    for _epoch in range(2):  # augmented training batches, two epochs of the seeded sampler
        assert _assert_same_batches(dms[0].train_dataloader(), dms[1].train_dataloader()) == len(dms[0].records("train"))
    for a, b in zip(dms[0].test_dataloader(), dms[1].test_dataloader(), strict=True):
        assert _assert_same_batches(a, b) == len(a.dataset)


def test_path_mode_records_equal_the_manifest_records(prepared):
    manifest = read_manifest(prepared / "manifest.parquet")
    ds = samples_dataset(manifest, prepared, "path")
    assert "image" not in ds.column_names and ds.features == sample_features(PROTOCOLS, "path")
    folder = write_folder(ds, prepared / "paths.hf", kind="samples", card="# paths\n")
    assert read_sample_records(folder) == manifest  # every field, extra and protocol memberships included
    embedded = read_sample_records(prepared / "manifest.hf")
    assert [{**r.extra, "hf_source": None} for r in embedded] == [{**r.extra, "hf_source": None} for r in manifest]
    assert [r.path for r in embedded] == [r.path for r in manifest]


def test_protocol_selection_matches_the_manifest(prepared):
    for protocol, split in (("protocol1", "train"), ("protocol2_low", "test")):
        ids = [[r.sample_id for r in select_records([DomainSpec("c", manifest=str(prepared / f), split=split,
                                                                protocol=protocol)])]
               for f in ("manifest.parquet", "manifest.hf")]
        assert ids[0] == ids[1] and ids[0]


def test_folders_are_written_atomically_and_foreign_ones_are_refused(prepared, tmp_path, capsys):
    ds = samples_dataset(read_manifest(prepared / "manifest.parquet")[:4], prepared, "path")
    target = tmp_path / "mine.hf"
    write_folder(ds, target, kind="samples", card="one\n")
    write_folder(ds.select(range(2)), target, kind="samples", card="two\n")  # our own folder: replaced
    assert load_folder(target, "samples").num_rows == 2 and (target / CARD).read_text() == "two\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.hf"]  # no temporary or old copy left
    foreign = tmp_path / "foreign.hf"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match=f"{foreign}.*not written by fasvlm"):
        write_folder(ds, foreign, kind="samples", card="")
    assert (foreign / "notes.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="holds 'samples' data, expected 'captions'"):
        load_folder(target, "captions")
    with pytest.raises(ValueError, match="not a `datasets` folder"):
        select_records([DomainSpec("x", manifest=str(foreign), split="train")])
    # the CLI: exit code 2 and the folder named, when the manifest.hf there is not the project's
    out = tmp_path / "out"
    (out / "manifest.hf").mkdir(parents=True)
    root = json.loads((prepared / "summary.json").read_text())["root"]
    assert prepare_main(["--dataset", "celeba_spoof", "--root", root, "--out", str(out), "--workers", "0",
                         "--no-progress", "--hf", "--limit", "2"]) == 2
    assert "manifest.hf exists and was not written by fasvlm" in capsys.readouterr().err


def test_card_licence_lines_are_the_dataset_docs():
    from fasvlm.data_modules.adapters import adapter_names

    docs = (REPO / "docs/datasets.md").read_text()
    for name in adapter_names():
        section = docs.split(f"### {name.replace('_', '-')}\n", 1)[1].split("\n### ", 1)[0]
        line = re.search(r"^- Licence: (.*)$", section, re.M).group(1)
        assert dataset_licence(name) == line, name


@pytest.mark.parametrize("reader, kind", [(read_sample_records, "samples"), (read_captions, "captions"),
                                          (read_instruction_entries, "instructions")])
def test_a_folder_without_its_kinds_columns_is_refused_by_name(tmp_path, reader, kind):
    folder = tmp_path / f"{kind}.hf"
    datasets.Dataset.from_dict({"other": ["a"]}).save_to_disk(str(folder))  # a foreign folder: no marker
    with pytest.raises(ValueError, match=rf"{re.escape(str(folder))}: not a fasvlm {kind} folder, missing column"):
        reader(folder)


def test_caption_table_loads_with_its_features(prepared, tmp_path):
    from fasvlm.text.prompts import load_captions

    recs = read_manifest(prepared / "manifest.parquet")[:6]
    final = pd.DataFrame([{"sample_id": r.sample_id, "caption": f"caption {i}",
                           "captioner": "spoof_aware" if r.label else "general", "label": r.label, "attack": r.attack,
                           "family": "print" if r.label else "live", "domain": r.domain, "split": r.split}
                          for i, r in enumerate(recs)])
    attacks = [r for r in recs if r.label]
    kept = pd.DataFrame([{"sample_id": attacks[0].sample_id, "caption": "a printed photo", "keywords": "print*"}])
    dropped = pd.DataFrame([{"sample_id": r.sample_id, "caption": "a face", "keywords": ""} for r in attacks[1:]])
    final.to_parquet(tmp_path / "captions.parquet", index=False)
    folder = write_captions(tmp_path, final, kept, dropped)
    assert folder == tmp_path / "captions.hf"
    ds = datasets.load_from_disk(str(folder))
    assert ds.features == caption_features()
    assert ds["sample_id"] == list(final["sample_id"]) and ds["caption"] == list(final["caption"])
    assert [ds.features["captioner"].int2str(v) for v in ds["captioner"]] == list(final["captioner"])
    decided = {s: (k, w) for s, k, w in zip(ds["sample_id"], ds["filter_kept"], ds["filter_keywords"])}
    assert decided[attacks[0].sample_id] == (True, ["print*"])
    assert all(decided[r.sample_id] == (False, []) for r in attacks[1:])
    assert all(decided[r.sample_id] == (None, None) for r in recs if not r.label)  # live images are not filtered
    assert load_captions(folder) == load_captions(tmp_path / "captions.parquet") == read_captions(folder)
    card = (folder / CARD).read_text()
    assert f"| captions | {len(final)} |" in card and "| filter kept | 1 |" in card


def test_instruction_table_loads_with_its_features(prepared, tmp_path):
    from fasvlm.data_modules.llava import load_llava, to_llava

    recs = read_manifest(prepared / "manifest.parquet")[:3]
    shutil.copytree(prepared / "crops", tmp_path / "crops")
    rows = [{"key": f"{r.sample_id}#{task}#0", "image": r.path, "question": "Where is the spoof?",
             "answer": "[1, 2, 30, 40]" if task == "localisation" else "Yes. A real face.", "task": task,
             "sample_id": r.sample_id, "label": r.label, "attack": r.attack, "width": 224, "height": 224,
             "box_from": "face" if task == "localisation" else None,
             "box_verified": verified if task == "localisation" else None}
            for r, (task, verified) in zip(recs, [("coarse", None), ("localisation", False), ("localisation", True)])]
    entries = to_llava(rows)
    boxes = {rows[1]["key"]: [1, 2, 30, 40], rows[2]["key"]: [1, 2, 30, 40]}
    folder = write_instructions(tmp_path, entries, boxes)
    ds = datasets.load_from_disk(str(folder))
    assert ds.features == instruction_features("embed")
    assert ds["id"] == [e["id"] for e in entries] and ds["task"] == ["coarse", "localisation", "localisation"]
    assert ds["conversations"] == [e["conversations"] for e in entries]
    assert ds["box"] == [None, [1.0, 2.0, 30.0, 40.0], [1.0, 2.0, 30.0, 40.0]]
    assert ds["box_verified"] == [None, False, True]
    back = load_llava(folder)  # the LLaVA reader takes the folder too
    assert back == read_instruction_entries(folder)
    for e, b in zip(entries, back):
        assert {k: b[k] for k in ("id", "image", "conversations", "task", "sample_id", "label", "attack")} == \
            {k: e[k] for k in ("id", "image", "conversations", "task", "sample_id", "label", "attack")}
    from PIL import Image

    with Image.open(tmp_path / recs[0].path) as crop:  # the crop as prepare stores it: 224 px + the jitter margin
        assert ds["image"][0].size == crop.size == (278, 278)
    path_mode = instructions_dataset(entries, tmp_path, boxes, image="path")
    assert "image" not in path_mode.column_names and path_mode.features == instruction_features("path")
    assert "| localisation | 2 |" in (folder / CARD).read_text()


def test_quickstart_from_datasets_folders_gives_the_manifest_routes_metrics(synthetic_root, tmp_path, monkeypatch):
    """conf/quickstart.yaml with conf/data/quickstart_hf.yaml and with conf/data/quickstart_manifest.yaml (paths
    pointed at the tiny synthetic preset, 2 epochs): identical test metrics (~20 s on 2 idle cores, ~2 min loaded)."""
    import yaml

    from fasvlm.cli import main

    for domain in ("celeba_spoof", "synth_lowlight", "synth_phonecam"):
        assert prepare_main(["--dataset", "celeba_spoof", "--root", str(synthetic_root / domain), "--out",
                             str(tmp_path / "prepared" / domain), "--workers", "0", "--no-progress", "--hf"]) == 0
    metrics = {}
    for route in ("manifest", "hf"):
        text = (REPO / f"conf/data/quickstart_{route}.yaml").read_text()
        conf = tmp_path / f"quickstart_{route}.yaml"
        conf.write_text(text.replace("data/prepared/synthetic", str(tmp_path / "prepared")))
        run = tmp_path / "runs" / route
        monkeypatch.setenv("FASVLM_RUN_DIR", str(run))
        common = ["--config", str(REPO / "conf/quickstart.yaml"), "--config", str(conf), "--trainer.max_epochs", "2",
                  "--data.init_args.num_workers", "0"]
        assert main(["fit", *common]) in (0, None)
        assert main(["test", *common, "--ckpt_path", "best"]) in (0, None)
        metrics[route] = json.loads((run / "test_metrics.json").read_text())
        assert yaml.safe_load((run / "config.yaml").read_text())["data"]["init_args"]["sources"][0]["manifest"] \
            .endswith("manifest.hf" if route == "hf" else "manifest.parquet")
    for key in ("domains", "mean_over_targets", "threshold", "epoch", "global_step"):
        assert metrics["hf"][key] == metrics["manifest"][key], key
    selection = [{k: v for k, v in metrics[r]["selection"].items() if k != "best_model_path"} for r in metrics]
    assert selection[0] == selection[1]  # the same best epoch and score; only the run directory differs
    assert set(metrics["hf"]["domains"]) >= {"celeba_spoof", "synth_lowlight", "synth_phonecam"}
