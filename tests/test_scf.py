"""SCF (spoof-aware captioning and filtering) and `fasvlm caption scf`: tiny BLIP-2 on the synthetic data, CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO
from lightning.pytorch.callbacks import Callback

from fasvlm.captioning.hf import ImageTextModel, build_tiny_blip2
from fasvlm.captioning.scf import (
    DEFAULT_KEYWORDS,
    CaptionerSettings,
    FinetuneSettings,
    KeywordFilter,
    finetune_captioner,
    run_scf,
    teach_captioner,
)
from fasvlm.captioning.stages import DataSettings, ImageItems, TrainerSettings, run_predict_stage
from fasvlm.cli import main
from fasvlm.data_modules.datamodule import DomainSpec, select_records

CPU = TrainerSettings(accelerator="cpu", devices=1, precision="32-true")


def _domains(synthetic_root: Path) -> list[DomainSpec]:
    return [DomainSpec(name="celeba_spoof", dataset="celeba_spoof", root=str(synthetic_root / "celeba_spoof"),
                       split="train")]


@pytest.fixture(scope="module")
def tiny_blip2(tmp_path_factory) -> Path:
    """A random tiny BLIP-2 + processor written with save_pretrained."""
    return build_tiny_blip2(tmp_path_factory.mktemp("models") / "blip2")


@pytest.fixture(scope="module")
def taught_blip2(tmp_path_factory, tiny_blip2, synthetic_root) -> Path:
    """The tiny BLIP-2 after 60 steps on the template captions: it writes words the keyword filter can match."""
    records = select_records(_domains(synthetic_root))
    return teach_captioner(tiny_blip2, records, tmp_path_factory.mktemp("models") / "taught", CPU, steps=60)


# ---------------------------------------------------------------------------------------------------------------------
# keyword filter


def test_keyword_filter_keeps_exactly_the_matching_captions():
    kf = KeywordFilter.from_dict({
        "families": {"print": ["print*", "paper", "piece of paper"], "replay": ["screen*", "moire"],
                     "mask": ["mask*", "3d"], "mannequin": ["mannequin"]},
        "attacks": {"makeup": ["makeup"]},
    })
    rows = [
        ("a", "a woman's face printed on a sheet", "photo", True),        # prefix: printed
        ("b", "A man holding a PAPER", "a4", True),                       # case-insensitive
        ("c", "a paperweight on a desk", "poster", False),                # exact word: paperweight is not paper
        ("d", "a face on a piece of paper", "poster", True),              # phrase
        ("e", "a piece of the paper puzzle", "photo", True),              # "paper" alone matches
        ("f", "a face on a screen", "photo", False),                      # replay word, print family
        ("g", "a face on a computer screen with moire", "pc", True),
        ("h", "a face on a screensaver", "phone", False),                 # word boundary: "saver" is no inflection
        ("h2", "a face on two screens", "phone", True),                   # screen* inflection: screens
        ("i", "a printed photo of a face", "pc", False),                  # print word, replay family
        ("j", "a man wearing a 3D mask", "mask_3d", True),                # "3D" -> "3d"; mask*
        ("k", "a man wearing a white mask", "silicone_mask", True),       # family of silicone_mask is mask
        ("l", "a woman with heavy makeup", "makeup", True),               # attack-level keyword
        ("m", "a woman with heavy makeup", "tattoo", False),              # not tattoo's keyword (mask family)
        ("n", "a plastic mannequin head", "mannequin", True),
        ("o", "a paper mask with holes", "region_mask", False),           # paper_mask family has no keywords here
        ("p", None, "photo", False),                                      # no caption
        ("q", "   ", "poster", False),
    ]
    table = pd.DataFrame(rows, columns=["sample_id", "caption", "attack", "expected"])
    kept, dropped, stats = kf.apply(table)
    assert sorted(kept["sample_id"]) == sorted(r[0] for r in rows if r[3])
    assert sorted(dropped["sample_id"]) == sorted(r[0] for r in rows if not r[3])
    assert kept.set_index("sample_id").loc["g", "keywords"] == "screen*, moire"
    assert stats["kept"] + stats["dropped"] == len(rows) and stats["no_caption"] == 2
    assert stats["per_family"]["print"] == {"kept": 4, "dropped": 4}
    assert stats["per_family"]["paper_mask"] == {"kept": 0, "dropped": 1}
    assert stats["per_attack"]["makeup"] == {"kept": 1, "dropped": 0}


def test_keyword_yaml_is_the_builtin_default_and_errors_name_the_fix():
    data = yaml.safe_load((REPO / "conf" / "caption" / "keywords.yaml").read_text())
    assert data == DEFAULT_KEYWORDS
    assert KeywordFilter.load(None).families == KeywordFilter.load(str(REPO / "conf/caption/keywords.yaml")).families
    for fam in ("print", "paper_mask", "replay", "mask", "mannequin"):
        assert DEFAULT_KEYWORDS["families"][fam]
    with pytest.raises(ValueError, match="valid: mannequin, mask, paper_mask, print, replay"):
        KeywordFilter.from_dict({"families": {"screen": ["screen"]}})
    with pytest.raises(ValueError, match="unknown attack type 'tv'"):
        KeywordFilter.from_dict({"families": {}, "attacks": {"tv": ["tv"]}})
    with pytest.raises(FileNotFoundError, match="keywords.yaml"):
        KeywordFilter.load("missing/keywords.yaml")


# ---------------------------------------------------------------------------------------------------------------------
# captioner: labels, generation, unreadable images


def test_train_collate_supervises_exactly_the_caption_tokens(tiny_blip2, synthetic_root):
    module = ImageTextModel(str(tiny_blip2))
    tok = module.processor.tokenizer
    records = select_records(_domains(synthetic_root))[:3]
    captions = ["a face printed on paper", "a face replayed on a PC screen", "a mask"]
    items = [{"key": r.sample_id, "path": r.path, "caption": c} for r, c in zip(records, captions)]
    data = ImageItems(items, records)
    batch = module.collate("a photo of", mode="train")([data[i] for i in range(3)])
    ids, labels = batch["inputs"]["input_ids"], batch["inputs"]["labels"]
    q = module.model.config.num_query_tokens
    assert (ids[:, :q] == module.image_token_id).all() and (labels[:, :q] == -100).all()  # image placeholders
    for i, caption in enumerate(captions):
        supervised = labels[i][labels[i] != -100].tolist()
        # the caption's own tokens after "a photo of" + EOS, nothing of the prompt
        full = tok("a photo of " + caption + tok.eos_token)["input_ids"]
        prompt = tok("a photo of")["input_ids"]
        assert supervised == full[len(prompt):]
        assert supervised[-1] == tok.eos_token_id
    loss = module.training_step(batch, 0)
    assert torch.isfinite(loss) and loss.requires_grad


def test_unreadable_image_is_counted_not_fatal(tiny_blip2, synthetic_root, tmp_path):
    records = select_records(_domains(synthetic_root))[:4]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    items = [{"key": r.sample_id, "path": r.path} for r in records]
    items[1]["path"] = str(broken)
    frame = run_predict_stage(tmp_path / "stage", items, lambda: ImageTextModel(str(tiny_blip2), max_new_tokens=4),
                              lambda m: m.collate(""), CPU, records=records, batch_size=4, num_workers=0)
    assert list(frame["key"]) == [it["key"] for it in items]
    assert frame["caption"].isna().tolist() == [False, True, False, False]
    assert "cannot identify image" in frame.loc[1, "error"] or "Error" in frame.loc[1, "error"]


def test_vision_encoder_decoder_captioner_trains_and_captions(tmp_path, synthetic_root):
    """Any image-to-text model works, e.g. a VisionEncoderDecoder (tiny ViT + GPT-2, no processor file)."""
    from transformers import GPT2Config, VisionEncoderDecoderConfig, VisionEncoderDecoderModel, ViTConfig

    try:
        from transformers import ViTImageProcessorPil as ImageProcessor
    except ImportError:
        from transformers import ViTImageProcessor as ImageProcessor

    from fasvlm.backbones import load_tokenizer

    tok = load_tokenizer("tiny", "causal_lm")
    enc = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32,
                    patch_size=8)
    dec = GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=2, n_positions=64, add_cross_attention=True,
                     is_decoder=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                     pad_token_id=tok.pad_token_id)
    cfg = VisionEncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)
    cfg.decoder_start_token_id, cfg.pad_token_id, cfg.eos_token_id = tok.bos_token_id, tok.pad_token_id, tok.eos_token_id
    torch.manual_seed(0)
    model = VisionEncoderDecoderModel(config=cfg)
    gen = model.generation_config
    gen.decoder_start_token_id, gen.eos_token_id, gen.pad_token_id = tok.bos_token_id, tok.eos_token_id, tok.pad_token_id
    path = tmp_path / "ved"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    ImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)

    records = select_records(_domains(synthetic_root))[:6]
    items = [{"key": r.sample_id, "sample_id": r.sample_id, "path": r.path, "caption": "a face printed on paper"}
             for r in records]
    out = finetune_captioner(tmp_path / "ft", items, records, CaptionerSettings(model=str(path)),
                             FinetuneSettings(trainable=None, lr=1e-2, max_steps=30, max_epochs=100, batch_size=6),
                             CPU, DataSettings(num_workers=0))
    frame = run_predict_stage(tmp_path / "pred", [{"key": it["key"], "path": it["path"]} for it in items],
                              lambda: ImageTextModel(str(out), max_new_tokens=8), lambda m: m.collate(""), CPU,
                              records=records, num_workers=0)
    assert frame["caption"].tolist() == ["a face printed on paper"] * 6


# ---------------------------------------------------------------------------------------------------------------------
# the pipeline


def _scf_args(out: Path, model: Path, synthetic_root: Path, *extra: str) -> list[str]:
    domains = json.dumps([{"name": "celeba_spoof", "dataset": "celeba_spoof",
                           "root": str(synthetic_root / "celeba_spoof"), "split": "train"}])
    return ["caption", "scf", "--config", str(REPO / "conf/caption/scf.yaml"),
            "--config", str(REPO / "conf/caption/scf_tiny.yaml"), "--out", str(out), "--captioner.model", str(model),
            "--data.domains", domains, "--keywords", str(REPO / "conf/caption/keywords.yaml"), *extra]


def test_scf_end_to_end_then_ifas_trains_on_the_captions(taught_blip2, synthetic_root, tmp_path):
    """All four stages through `fasvlm caption scf`, then I-FAS tiny trains on captions.parquet."""
    import lightning as L

    from fasvlm.data_modules import FASDataModule
    from fasvlm.systems.ifas import IFASSystem

    out = tmp_path / "scf"
    assert main(_scf_args(out, taught_blip2, synthetic_root)) == 0
    records = select_records(_domains(synthetic_root))
    attacks = {r.sample_id for r in records if r.label == 1}
    stats = json.loads((out / "stats.json").read_text())

    # stage 1: every attack image captioned, once
    stage1 = pd.read_parquet(out / "1_caption" / "data.parquet")
    assert sorted(stage1["sample_id"]) == sorted(attacks) and stage1["caption"].str.len().gt(0).all()
    # stage 2: kept = exactly the stage-1 captions that match their family's keywords
    kept = pd.read_parquet(out / "2_filter" / "kept.parquet")
    dropped = pd.read_parquet(out / "2_filter" / "dropped.parquet")
    kf = KeywordFilter.load(str(REPO / "conf/caption/keywords.yaml"))
    expected = {s for s, c, a in zip(stage1["sample_id"], stage1["caption"], stage1["attack"]) if kf.matches(c, a)}
    assert set(kept["sample_id"]) == expected and 0 < len(expected) < len(attacks)
    assert set(dropped["sample_id"]) == attacks - expected
    per_family = stats["2_filter"]["per_family"]
    assert sum(v["kept"] for v in per_family.values()) == len(kept)
    # stage 3: the spoof-aware captioner is a save_pretrained directory
    captioner = out / "3_finetune" / "captioner"
    assert (captioner / "config.json").is_file() and (captioner / "processor_config.json").is_file()
    assert stats["3_finetune"]["samples"] == len(kept) and stats["3_finetune"]["steps"] > 0
    # stage 4: every image once, live by the general captioner, attacks by the spoof-aware one
    table = pd.read_parquet(out / "captions.parquet")
    assert sorted(table["sample_id"]) == sorted(r.sample_id for r in records)
    assert table["sample_id"].is_unique
    by = dict(zip(table["sample_id"], table["captioner"]))
    assert all(by[r.sample_id] == ("spoof_aware" if r.label else "general") for r in records)
    # datasets reads the stage tables; captions.hf is the same table, typed, with the filter's decisions
    import datasets

    from fasvlm.data_modules.hf_datasets import caption_features, read_captions

    assert datasets.Dataset.from_parquet(str(out / "1_caption" / "data.parquet")).num_rows == len(attacks)
    typed = datasets.load_from_disk(str(out / "captions.hf"))
    assert typed.features == caption_features() and typed["sample_id"] == list(table["sample_id"])
    assert read_captions(out / "captions.hf") == dict(zip(table["sample_id"], table["caption"]))
    decided = dict(zip(typed["sample_id"], typed["filter_kept"]))
    assert {s for s, k in decided.items() if k} == set(kept["sample_id"]) & set(decided)
    assert {s for s, k in decided.items() if k is None} == {r.sample_id for r in records if not r.label}

    # rerun: every stage is done, nothing recomputed, same table
    assert main(_scf_args(out, taught_blip2, synthetic_root)) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(out / "captions.parquet"), table)

    # I-FAS tiny trains a few steps on these captions (no sample falls back to the templates)
    torch.manual_seed(0)
    system = IFASSystem(vision="tiny", llm="tiny", llm_mode="full", num_queries=4, lr=1e-3, scheduler="constant",
                        captions=str(out / "captions.parquet"))
    dm = FASDataModule(sources=_domains(synthetic_root),
                       targets=[DomainSpec(name="target", dataset="celeba_spoof",
                                           root=str(synthetic_root / "celeba_spoof"), split="test")],
                       batch_size=8, num_workers=0, seed=0)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=3, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        default_root_dir=tmp_path)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="captions table")
        trainer.fit(system, datamodule=dm)
    assert trainer.global_step == 3
    loss = trainer.callback_metrics["train/loss"]
    assert torch.isfinite(loss)
    batch = next(iter(dm.train_dataloader()))
    captions = dict(zip(table["sample_id"], table["caption"]))
    assert system.interpretations(batch) == [f". This is {captions[s]}" for s in batch["sample_id"]]


class _Interrupt(Callback):
    """Raises after ``after`` predict batches (a crash midway through a stage)."""

    def __init__(self, after: int):
        self.after, self.seen = after, 0

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.seen += 1
        if self.seen >= self.after:
            raise RuntimeError("simulated interruption")


def test_interrupted_stage_resumes_without_duplicates(tiny_blip2, synthetic_root, tmp_path):
    data = DataSettings(domains=_domains(synthetic_root), batch_size=2, num_workers=0)
    captioner = CaptionerSettings(model=str(tiny_blip2), max_new_tokens=6, dtype="float32")
    args = dict(data=data, trainer=CPU, captioner=captioner, keywords=None, finetune=FinetuneSettings(),
                stages=["caption"], shard_size=2)
    stage = tmp_path / "run" / "1_caption"
    with pytest.raises(RuntimeError, match="simulated interruption"):
        run_scf(tmp_path / "run", callbacks=[_Interrupt(after=3)], **args)
    first = sorted((stage / "shards").glob("*.parquet"))
    assert [p.name for p in first] == [f"part-a001-r000-{i:05d}.parquet" for i in range(3)]
    assert not (stage / "DONE.json").exists() and not (stage / "data.parquet").exists()
    done_before = set(pd.concat([pd.read_parquet(p) for p in first])["key"])
    assert len(done_before) == 6

    run_scf(tmp_path / "run", **args)  # resume
    shards = sorted((stage / "shards").glob("*.parquet"))
    rows = pd.concat([pd.read_parquet(p) for p in shards])
    assert rows["key"].is_unique  # no sample captioned twice
    second = pd.concat([pd.read_parquet(p) for p in shards if "-a002-" in p.name])
    assert set(second["key"]).isdisjoint(done_before) and len(second) == 16 - 6
    resumed = pd.read_parquet(stage / "data.parquet")
    assert json.loads((stage / "DONE.json").read_text())["duplicates_dropped"] == 0

    run_scf(tmp_path / "clean", **args)  # an uninterrupted run gives the same table
    pd.testing.assert_frame_equal(resumed, pd.read_parquet(tmp_path / "clean" / "1_caption" / "data.parquet"))
    assert resumed["sample_id"].is_unique and len(resumed) == 16


def test_stage_order_errors_are_actionable(synthetic_root, tmp_path, tiny_blip2):
    data = DataSettings(domains=_domains(synthetic_root), num_workers=0)
    with pytest.raises(FileNotFoundError, match="needs the spoof-aware captioner"):
        run_scf(tmp_path, data, CPU, CaptionerSettings(model=str(tiny_blip2)), None, FinetuneSettings(),
                stages=["final"])
    with pytest.raises(ValueError, match="unknown SCF stage"):
        run_scf(tmp_path, data, CPU, CaptionerSettings(model=str(tiny_blip2)), None, FinetuneSettings(),
                stages=["captions"])
    with pytest.raises(ValueError, match="no domains"):
        select_records([])


def test_nothing_kept_is_an_actionable_error(tiny_blip2, synthetic_root, tmp_path):
    """A random captioner writes noise that matches no keyword: stage 3 refuses and names the file to look at."""
    data = DataSettings(domains=_domains(synthetic_root), batch_size=8, num_workers=0)
    with pytest.raises(ValueError, match="2_filter/dropped.parquet"):
        run_scf(tmp_path, data, CPU, CaptionerSettings(model=str(tiny_blip2), max_new_tokens=6), None,
                FinetuneSettings(min_kept=1), stages=["caption", "filter", "finetune"])
    assert json.loads((tmp_path / "stats.json").read_text())["2_filter"]["kept"] == 0


@pytest.mark.parametrize("configs", [["scf.yaml"], ["scf.yaml", "scf_tiny.yaml"]] + [
    ["scf.yaml", f"scf_{p}.yaml"] for p in ("mcio_c", "mcio_i", "mcio_m", "mcio_o", "one_to_eleven")], ids="+".join)
def test_caption_scf_configs_print(configs, capsys):
    args = [a for c in configs for a in ("--config", str(REPO / "conf/caption" / c))]
    with pytest.raises(SystemExit) as exc:
        main(["caption", "scf", *args, "--out", "runs/x", "--print_config"])
    assert exc.value.code in (0, None)
    out = capsys.readouterr().out
    printed = yaml.safe_load(out[out.index("out:"):])
    assert printed["stages"] == ["caption", "filter", "finetune", "final"]
    if len(configs) == 2 and configs[1] != "scf_tiny.yaml":  # a protocol's SCF run: the data config's source names
        proto = configs[1][len("scf_"):-len(".yaml")]
        data = yaml.safe_load((REPO / "conf/data" / f"{proto}.yaml").read_text())["data"]["init_args"]
        assert [d["name"] for d in printed["data"]["domains"]] == [d["name"] for d in data["sources"]]
        assert data["captions"] == f"runs/scf/{proto}/captions.parquet"
    else:
        assert printed["data"]["domains"][0]["dataset"] == "celeba_spoof"


def test_ddp_predict_writes_per_rank_shards_merged_on_rank_zero(taught_blip2, synthetic_root, tmp_path):
    """Two CPU processes (gloo): each rank writes its own shards; rank 0 merges them into the same table as one
    process does."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    extra = ["--stages", "[caption]", "--data.batch_size", "2", "--shard_size", "2"]
    # DDP re-launches the command line, so it runs as a subprocess; the one-process reference runs in-process
    cmd = [sys.executable, "-m", "fasvlm.cli", *_scf_args(tmp_path / "ddp", taught_blip2, synthetic_root), *extra,
           "--trainer.strategy", "ddp", "--trainer.devices", "2"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert main([*_scf_args(tmp_path / "one", taught_blip2, synthetic_root), *extra]) == 0
    shards = sorted(p.name for p in (tmp_path / "ddp" / "1_caption" / "shards").glob("*.parquet"))
    assert {n.split("-")[2] for n in shards} == {"r000", "r001"}
    ddp = pd.read_parquet(tmp_path / "ddp" / "1_caption" / "data.parquet")
    one = pd.read_parquet(tmp_path / "one" / "1_caption" / "data.parquet")
    assert ddp["key"].is_unique
    pd.testing.assert_frame_equal(ddp, one)
