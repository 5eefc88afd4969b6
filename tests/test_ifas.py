"""I-FAS model and system on tiny presets (CPU, random init, no network)."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from fasvlm.callbacks.predictions import PredictionsWriter
from fasvlm.losses import lopsided_lm_loss
from fasvlm.models.ifas import IFAS
from fasvlm.systems.common import build_optimizer
from fasvlm.systems.ifas import IFASSystem, write_explanations
from fasvlm.text.prompts import YES

TINY = dict(vision="tiny", llm="tiny", llm_mode="full", num_queries=4, lr=1e-3, scheduler="constant",
            caption_source="templates")  # as conf/ifas/tiny.yaml


def make_batch(n: int = 4, seed: int = 0) -> dict:
    """A batch following the FASDataModule contract (tiny preset: 64 px)."""
    g = torch.Generator().manual_seed(seed)
    label = torch.tensor([i % 2 for i in range(n)])
    attacks = ["live" if y == 0 else ("pc", "photo", "mask_3d")[i % 3] for i, y in enumerate(label.tolist())]
    pixel = torch.randn(n, 3, 64, 64, generator=g)
    pixel[label == 1] += 0.5  # attacks are brighter: something to learn
    unknown = torch.full((n,), -1)
    return {
        "pixel_values": pixel, "label": label, "content": torch.zeros(n, dtype=torch.long), "illumination": unknown,
        "environment": unknown, "camera_quality": unknown, "attack": attacks, "domain": ["celeba_spoof"] * n,
        "video": [f"v{seed}_{i}" for i in range(n)], "sample_id": [f"s{seed}_{i}" for i in range(n)],
        "illumination_name": [("normal", None)[i % 2] for i in range(n)], "environment_name": [None] * n,
        "camera_quality_name": [None] * n,
    }


def system(**kwargs) -> IFASSystem:
    torch.manual_seed(0)
    return IFASSystem(**{**TINY, **kwargs})


def loader(batches: list[dict]) -> DataLoader:
    return DataLoader(batches, batch_size=None)


def trainer(tmp_path, **kwargs) -> L.Trainer:
    return L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, default_root_dir=tmp_path, **kwargs)


def test_sequence_layout_and_labels():
    s = system()
    model = s.model
    batch = make_batch(4)
    answers = s.answers(batch)
    visual = model.encode_image(batch["pixel_values"])
    assert visual.shape == (4, 4 + 2, 32)  # M + L tokens (tiny CLIP: 2 layers), LLM width 32
    embeds, attention, labels, judgment = model.build_inputs(visual, answers)
    p = model.prompt_length
    assert p == len(model.prompt.prefix_ids) + 6 + len(model.prompt.suffix_ids)
    assert embeds.shape[:2] == labels.shape == (4, p + answers.ids.shape[1])
    assert (labels[:, :p] == -100).all()  # prompt and image positions carry no loss
    assert (labels[:, p:][~answers.mask] == -100).all() and (attention[:, p:] == answers.mask.long()).all()  # padding
    assert (labels[:, p:][answers.mask] == answers.ids[answers.mask]).all()
    # the judgment mask marks exactly one token per row here (byte-level BPE " Yes"/" No"), right after the prompt
    assert judgment.sum(1).tolist() == [1, 1, 1, 1] and judgment[:, p].all()
    expected = [model.prompt.yes_id if y == 0 else model.prompt.no_id for y in batch["label"].tolist()]
    assert labels[:, p].tolist() == expected
    # the visual tokens sit right after the prefix
    n = len(model.prompt.prefix_ids)
    assert torch.allclose(embeds[:, n:n + 6], visual)


def test_prompt_image_padding_positions_carry_no_loss():
    """The gradient of the loss w.r.t. full-length logits is zero wherever the next token is not an answer token."""
    s = system().eval()
    model = s.model
    batch = make_batch(4)
    embeds, attention, labels, judgment = model.build_inputs(model.encode_image(batch["pixel_values"]),
                                                             s.answers(batch))
    logits = model.llm(inputs_embeds=embeds, attention_mask=attention).logits.detach().requires_grad_(True)
    loss = lopsided_lm_loss(logits, labels, judgment, 0.7)
    loss.backward()
    predicts_answer = torch.zeros_like(labels, dtype=torch.bool)
    predicts_answer[:, :-1] = labels[:, 1:] != -100
    assert (logits.grad[~predicts_answer] == 0).all() and (logits.grad[predicts_answer] != 0).any(-1).all()
    # the answer-only logits of lm_forward give the same loss
    out = model.lm_forward(batch["pixel_values"], s.answers(batch))
    assert lopsided_lm_loss(out.logits, out.labels, out.judgment_mask).item() == pytest.approx(loss.item(), rel=1e-5)


@pytest.mark.parametrize("score", ["yes_prob", "yes_no_softmax"])
@pytest.mark.parametrize("llm_mode", ["full", "lora"])
def test_one_pass_score_equals_first_generation_step(score, llm_mode):
    s = system(score=score, llm_mode=llm_mode).eval()
    model = s.model
    pixel = make_batch(3)["pixel_values"]
    p_attack = model(pixel)
    gen = model.generate(pixel, max_new_tokens=2, output_logits=True, return_dict_in_generate=True)
    first = gen.logits[0].float()  # (B, V) logits of the first generated token
    if score == "yes_prob":
        p_yes = first.softmax(-1)[:, model.prompt.yes_id]
    else:
        p_yes = first[:, [model.prompt.yes_id, model.prompt.no_id]].softmax(-1)[:, 0]
    torch.testing.assert_close(p_attack, 1 - p_yes, atol=1e-5, rtol=1e-5)
    # and the teacher-forced forward gives the same score at the first answer position
    out = model.lm_forward(pixel, s.answers(make_batch(3)))
    torch.testing.assert_close(model.attack_score(out.logits[:, 0]), p_attack, atol=1e-5, rtol=1e-5)
    # the score token is the token the "Yes" training answers start with
    assert model.prompt.encode_answers([YES], ["."]).ids[0, 0].item() == model.prompt.yes_id


def test_vision_frozen_no_grad_and_not_in_checkpoint(tmp_path):
    s = system(llm_mode="frozen")
    s.train()
    assert not s.model.vision.training and not s.model.llm.training  # frozen parts stay in eval mode
    terms, _ = s._shared_step(make_batch(4))
    terms["loss"].backward()
    assert all(not p.requires_grad and p.grad is None for p in s.model.vision.parameters())
    assert all(p.grad is None for p in s.model.llm.parameters())
    assert all(p.grad is not None for p in s.model.gac.parameters())
    keys = set(s.state_dict())
    assert keys == {"model.gac." + k for k in s.model.gac.state_dict()}

    # through Lightning: fit 2 steps, save, reload by hyper-parameters; the score is reproduced
    t = trainer(tmp_path, max_steps=2, limit_val_batches=0)
    t.fit(s, loader([make_batch(4, 1), make_batch(4, 2)]))
    ckpt = tmp_path / "ifas.ckpt"
    t.save_checkpoint(ckpt)
    state = torch.load(ckpt, weights_only=False)["state_dict"]
    assert not any(k.startswith(("model.vision.", "model.llm.")) for k in state)
    torch.manual_seed(0)  # presets are random: the same seed rebuilds the same frozen backbones (real ones: from disk)
    reloaded = IFASSystem.load_from_checkpoint(ckpt).eval()
    pixel = make_batch(2, 5)["pixel_values"]
    torch.testing.assert_close(reloaded(pixel), s.eval()(pixel))


def test_lora_trains_only_adapters_and_connector():
    s = system(llm_mode="lora", lora_r=4)
    trainable = [n for n, p in s.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or n.startswith("model.gac.") for n in trainable)
    assert any("lora_A" in n for n in trainable) and any(n.startswith("model.gac.") for n in trainable)
    assert set(s.state_dict()) == set(trainable)  # adapters + GAC only
    frozen_before = {n: p.detach().clone() for n, p in s.named_parameters() if not p.requires_grad}
    lora_b = {n: p.detach().clone() for n, p in s.named_parameters() if "lora_B" in n}
    opt = build_optimizer(s, lr=1e-2, weight_decay=0.0)
    s.train()
    for seed in range(2):
        opt.zero_grad()
        s._shared_step(make_batch(4, seed))[0]["loss"].backward()
        opt.step()
    params = dict(s.named_parameters())
    assert all(torch.equal(params[n], v) for n, v in frozen_before.items())
    assert all(not torch.equal(params[n], v) for n, v in lora_b.items())


def test_lora_on_bfloat16_base():
    """Real configs: bf16 base weights, float32 adapters; trains with and without autocast."""
    s = system(llm_mode="lora", llm_dtype="bfloat16")
    assert {p.dtype for n, p in s.named_parameters() if p.requires_grad} == {torch.float32}
    assert {p.dtype for n, p in s.model.llm.named_parameters() if "lora_" not in n} == {torch.bfloat16}
    s.train()
    terms, scores = s._shared_step(make_batch(2))
    terms["loss"].backward()
    assert torch.isfinite(terms["loss"]) and scores.dtype == torch.float32
    assert all(p.grad is not None for p in s.parameters() if p.requires_grad)


def test_full_mode_checkpoint_holds_llm():
    s = system(llm_mode="full")
    keys = set(s.state_dict())
    assert not any(k.startswith("model.vision.") for k in keys)
    assert "model.llm.model.decoder.layers.0.self_attn.q_proj.weight" in keys


def test_ablations():
    s = system(use_gac=False, use_scf=False, loss="standard")
    gac = s.model.gac
    assert gac.global_proj is None and gac.queries.shape == (1, 4 + 2, 32)
    batch = make_batch(4)
    assert s.interpretations(batch) == ["."] * 4  # judgment-only answers "Yes." / "No."
    assert s.model.encode_image(batch["pixel_values"]).shape == (4, 6, 32)
    terms, scores = s._shared_step(batch)
    assert terms["loss"].item() == pytest.approx(terms["all"].item()) and scores.shape == (4,)
    s = system()
    assert s.interpretations(batch)[0] == ". This is a real face of a person, captured under normal light"
    assert s.interpretations(batch)[1].startswith(". This is a face printed on a photo")  # attack "photo"


def test_captions_table(tmp_path):
    path = tmp_path / "captions.jsonl"
    path.write_text(json.dumps({"sample_id": "s0_0", "caption": "a smiling young man"}) + "\n")
    s = system(captions=str(path), caption_source="scf")
    batch = make_batch(2)
    with pytest.warns(UserWarning, match="1 of 2 samples"):
        texts = s.interpretations(batch)
    assert texts == [". This is a smiling young man",
                     ". This is a face printed on a photo, with flat paper texture and visible photo edges"]


def test_vision_dtype_bfloat16():
    model = IFAS(vision="tiny", llm="tiny", num_queries=2, vision_dtype="bfloat16").eval()
    scores = model(make_batch(2)["pixel_values"])
    assert model.vision.embeddings.patch_embedding.weight.dtype == torch.bfloat16
    assert model.gac.proj.weight.dtype == torch.float32 and torch.isfinite(scores).all()


def test_validate_predict_and_explanations(tmp_path):
    s = system(max_new_tokens=5)
    t = trainer(tmp_path, max_steps=1, limit_val_batches=1, num_sanity_val_steps=0)
    val = [loader([make_batch(4, 7)]), loader([make_batch(4, 8)])]
    t.fit(s, loader([make_batch(4, 1)]), val)
    assert {"train/loss", "train/judgment", "train/interpretation", "val/loss"} <= set(t.callback_metrics)
    out = s.validation_step(make_batch(4, 7), 0, dataloader_idx=1)
    assert set(out) == {"scores", "labels"} and out["scores"].shape == (4,)
    assert ((out["scores"] >= 0) & (out["scores"] <= 1)).all()

    path = tmp_path / "out" / "explanations.jsonl"
    t = trainer(tmp_path, callbacks=[PredictionsWriter(str(path))])
    preds = t.predict(s, loader([make_batch(3, 9), make_batch(2, 10)]))
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["sample_id"] for r in rows] == [f"s9_{i}" for i in range(3)] + [f"s10_{i}" for i in range(2)]
    for r in rows:
        assert set(r) == {"sample_id", "domain", "score", "judgment", "explanation"}
        assert r["judgment"] in ("Yes", "No") and 0.0 <= r["score"] <= 1.0 and isinstance(r["explanation"], str)
    copy = write_explanations([r for batch in preds for r in batch], tmp_path / "copy.jsonl")
    assert copy.read_text() == path.read_text()


def test_explanation_follows_forced_judgment():
    s = system().eval()
    pixel = make_batch(2)["pixel_values"]
    rows = s.model.explain(pixel, max_new_tokens=3)
    p_yes, p_no = s.model.judgment_probs(s.model.first_answer_logits(pixel))
    assert [r["judgment"] for r in rows] == ["Yes" if y >= n else "No" for y, n in zip(p_yes, p_no)]
    # judgment spans of different lengths (e.g. "▁N" "o" in SentencePiece vocabularies): the shorter row is
    # left-padded, and batched generation matches generation row by row
    prompt = s.model.prompt
    prompt.judgment_ids["No"] = [prompt.no_id, prompt.yes_id]
    both = s.model.generate(pixel, judgments=["Yes", "No"], max_new_tokens=4, output_logits=True,
                            return_dict_in_generate=True)
    for i, j in enumerate(["Yes", "No"]):
        one = s.model.generate(pixel[i:i + 1], judgments=[j], max_new_tokens=4, output_logits=True,
                               return_dict_in_generate=True)
        torch.testing.assert_close(both.logits[0][i], one.logits[0][0], atol=1e-4, rtol=1e-4)
        assert both.sequences[i, : one.sequences.shape[1]].tolist() == one.sequences[0].tolist()


# Golden numbers: 3 AdamW steps (lr 1e-3, wd 1e-2) of the tiny full-LLM system, seed 0, fixed batches.
GOLDEN_LOSSES = [6.417070388793945, 6.224797248840332, 6.130218505859375]


def test_golden_three_steps():
    s = system(llm_mode="full")
    s.train()
    opt = build_optimizer(s, lr=1e-3, weight_decay=1e-2)
    losses = []
    torch.manual_seed(1)
    for step in range(3):
        opt.zero_grad()
        loss = s._shared_step(make_batch(8, step))[0]["loss"]
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses == pytest.approx(GOLDEN_LOSSES, rel=1e-4), losses


def test_vision_feature_cache_gives_the_same_tokens_and_skips_the_encoder():
    from fasvlm.models.ifas import IFAS

    torch.manual_seed(0)
    plain = IFAS(vision="tiny", llm="tiny", llm_mode="full", num_queries=4)
    cached = IFAS(vision="tiny", llm="tiny", llm_mode="full", num_queries=4, cache_vision_features=3)
    cached.load_state_dict(plain.state_dict())
    x = torch.randn(4, 3, 64, 64)
    calls = []
    cached.vision.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]) if i else None)
    first = cached.encode_image(x)
    torch.testing.assert_close(first, plain.encode_image(x))
    assert len(cached._feature_cache) == 3  # bounded
    again = cached.encode_image(x)
    torch.testing.assert_close(again, first)
    assert calls == [4, 1]  # second pass: only the image beyond the cache bound went through the encoder


@pytest.mark.parametrize("llm_mode", ["frozen", "lora"])
def test_scoring_with_the_shared_prefix_cache_equals_the_full_forward(llm_mode):
    """Issue 20: the constant prompt prefix is encoded once per batch and reused through the KV cache."""
    from fasvlm.models.ifas import IFAS

    torch.manual_seed(0)
    model = IFAS(vision="tiny", llm="tiny", llm_mode=llm_mode).eval()
    size = model.vision.config.image_size
    x = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model.first_answer_logits(x, reuse_prefix=False)
        cached = model.first_answer_logits(x)
        torch.testing.assert_close(model.attack_score(cached), model.attack_score(full), atol=1e-5, rtol=0)
        torch.testing.assert_close(cached, full, atol=1e-5, rtol=0)
        torch.testing.assert_close(model(x), model.attack_score(full), atol=1e-5, rtol=0)
    flops = model.prompt_flops()
    assert flops["tokens_per_image_reused_prefix"] == flops["tokens_per_image_full"] - flops["prefix_tokens"] > 0
