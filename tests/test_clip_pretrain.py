"""Tiny CLIP pretraining (fasvlm.systems.clip_pretrain): the loss, the tokenizer's pooled token, zero-shot scoring, and
the `fasvlm fit --config conf/clip/tiny_pretrain.yaml` -> export -> frozen I-FAS encoder path."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO

from fasvlm.backbones import (
    BackboneNotFoundError,
    image_spec,
    load_clip,
    load_tokenizer,
    load_vision_encoder,
    save_clip,
)
from fasvlm.systems.clip_pretrain import CLIPPretrainSystem, multi_positive_clip_loss


def test_loss_with_unique_captions_is_clips_loss():
    torch.manual_seed(0)
    model, tok = load_clip("tiny")
    captions = ["a real face", "a face on a phone screen", "a face printed on paper", "a 3D mask", "a poster"]
    out = model(pixel_values=torch.randn(5, 3, 64, 64), return_loss=True,
                **tok(captions, padding=True, return_tensors="pt"))
    ours = multi_positive_clip_loss(out.logits_per_image, captions)
    assert torch.allclose(ours, out.loss, atol=1e-6)  # transformers' own CLIP loss


def test_loss_with_repeated_captions_by_hand():
    # images/texts 0 and 2 share a caption: rows 0 and 2 put half their target mass on columns 0 and 2 each
    logits = torch.tensor([[2.0, 0.0, 1.0], [0.5, 1.5, -1.0], [0.0, 1.0, 3.0]])
    captions = ["live", "print", "live"]

    def row_ce(row, targets):
        lse = math.log(sum(math.exp(x) for x in row))
        return -sum(t * (x - lse) for x, t in zip(row, targets))

    T = [[0.5, 0, 0.5], [0, 1, 0], [0.5, 0, 0.5]]
    rows = logits.tolist()
    cols = logits.t().tolist()
    image_side = sum(row_ce(rows[i], T[i]) for i in range(3)) / 3
    text_side = sum(row_ce(cols[j], T[j]) for j in range(3)) / 3
    expected = 0.5 * (image_side + text_side)
    assert multi_positive_clip_loss(logits, captions).item() == pytest.approx(expected, abs=1e-6)


def test_clip_tokenizer_ends_every_caption_with_the_pooled_token():
    tok = load_tokenizer("tiny", "clip")
    assert tok.eos_token_id != 2  # 2 selects transformers' legacy argmax pooling
    model, _ = load_clip("tiny")
    assert model.config.text_config.eos_token_id == tok.eos_token_id
    texts = ["a real face of a person", "a face replayed on a phone screen, with a visible moire pattern"]
    enc = tok(texts, padding=True, return_tensors="pt")
    lengths = enc["attention_mask"].sum(1)
    for ids, n in zip(enc["input_ids"], lengths):
        assert ids[n - 1] == tok.eos_token_id and (ids[:n] == tok.eos_token_id).sum() == 1
    out = model.text_model(**enc)
    eos_states = out.last_hidden_state[torch.arange(2), lengths - 1]
    assert torch.allclose(out.pooler_output, eos_states)


def test_truncated_captions_keep_the_pooled_token():
    system = CLIPPretrainSystem(clip="tiny", max_text_tokens=6)
    enc = system._tokens(["a face printed on A4 paper, with paper texture and visible paper edges", "a real face"])
    assert enc["input_ids"].shape[1] == 6
    for ids, mask in zip(enc["input_ids"], enc["attention_mask"]):
        n = int(mask.sum())
        assert ids[n - 1] == system.tokenizer.eos_token_id


def test_zero_shot_score_is_one_minus_the_live_prompt_probability():
    torch.manual_seed(0)
    system = CLIPPretrainSystem(clip="tiny").eval()
    pixels = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        scores = system(pixels)
        tok = system._tokens(system.class_prompts)
        out = system.model(pixel_values=pixels, **tok)
    assert len(system.class_prompts) == 11 and system.class_prompts[0].startswith("a real face")
    assert torch.allclose(scores, 1 - out.logits_per_image.softmax(-1)[:, 0], atol=1e-5)


def test_contrastive_training_fits_a_batch():
    torch.manual_seed(0)
    system = CLIPPretrainSystem(clip="tiny")
    batch = {"pixel_values": torch.randn(6, 3, 64, 64), "sample_id": [str(i) for i in range(6)],
             "attack": ["live", "photo", "pc", "mask_3d", "live", "poster"],
             "illumination_name": ["normal", "dark", "back", "strong", "dark", None],
             "environment_name": ["indoor"] * 3 + ["outdoor"] * 3, "camera_quality_name": [None] * 6}
    opt = torch.optim.AdamW(system.parameters(), lr=3e-3)
    first = system.contrastive_loss(batch).item()
    for _ in range(40):
        loss = system.contrastive_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


def test_save_clip_replaces_the_directory(tmp_path):
    model, tok = load_clip("tiny")
    out = tmp_path / "tiny_clip"
    out.mkdir()
    (out / "stale.txt").write_text("from an older export")
    save_clip(model, tok, 64, out)
    assert not (out / "stale.txt").exists()
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "tokenizer.json"} <= {
        p.name for p in out.iterdir()}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny_clip"]  # no temporary left behind
    assert image_spec(str(out)).size == 64


def test_missing_tiny_clip_says_how_to_build_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BackboneNotFoundError, match="make tiny-clip"):
        load_vision_encoder("data/tiny_clip")


def test_fit_exports_a_clip_that_ifas_loads_frozen(synthetic_root, tmp_path):
    """conf/clip/tiny_pretrain.yaml through the CLI (on the tiny synthetic release), then I-FAS on the export."""
    run, export = tmp_path / "run", tmp_path / "tiny_clip"
    root = synthetic_root / "celeba_spoof"

    def domain(split: str) -> str:
        return f"{{name: synth, dataset: celeba_spoof, root: {root}, split: {split}}}"

    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "fasvlm.cli", "fit", "--config", str(REPO / "conf/clip/tiny_pretrain.yaml"),
         "--trainer.default_root_dir", str(run), "--trainer.max_steps", "4", "--trainer.enable_progress_bar", "false",
         "--model.init_args.export_dir", str(export), "--data.init_args.batch_size", "8",
         "--data.init_args.num_workers", "0", "--data.init_args.sources", f"[{domain('train')}]",
         "--data.init_args.targets", f"[{domain('test')}]"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (run / "val_metrics.json").is_file()  # zero-shot scores went through the metrics callback

    trained = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    vision = load_vision_encoder(str(export))
    for key, value in vision.state_dict().items():
        assert torch.equal(value, trained[f"model.vision_model.{key}"]), key  # the export is the trained image tower
    initial = load_clip("tiny")[0].vision_model.state_dict()
    assert any(not torch.equal(v, trained[f"model.vision_model.{k}"]) for k, v in initial.items())

    from fasvlm.systems.ifas import IFASSystem

    ifas = IFASSystem(vision=str(export), llm="tiny", llm_mode="full", num_queries=4, caption_source="templates")
    assert ifas.image_spec.size == 96  # conf/clip/tiny_pretrain.yaml: image_size 96
    assert not any(p.requires_grad for p in ifas.model.vision.parameters())
    assert not any(k.startswith("model.vision.") for k in ifas.state_dict())
    for key, value in vision.state_dict().items():
        assert torch.equal(ifas.model.vision.state_dict()[key], value)
