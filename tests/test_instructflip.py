"""InstructFLIP: model, Q-Former, system. Tiny presets, CPU, no network, no data files."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from fasvlm.models.instructflip import draw_style_questions, kind_id
from fasvlm.models.qformer import QFormer, map_qformer_state_dict, qformer_bert_config
from fasvlm.systems.common import build_optimizer, build_scheduler
from fasvlm.systems.instructflip import InstructFLIPSystem
from fasvlm.text.instructions import OPTIONS, answer, instruction

TINY = dict(vision="tiny", qformer="tiny", qformer_heads=2, t5="tiny", fusion_heads=2, fusion_dim_head=16,
            fusion_ffn_dim=64)


def make_batch(b: int = 4, size: int = 64, seed: int = 0) -> dict:
    """A batch following the FASDataModule contract (attacks carry illumination/environment, live faces do not)."""
    g = torch.Generator().manual_seed(seed)
    label = torch.arange(b) % 2
    attack = label.bool()
    content = torch.where(attack, torch.randint(1, 11, (b,), generator=g), 0)
    illumination = torch.where(attack, torch.randint(0, 4, (b,), generator=g), -1)
    environment = torch.where(attack, torch.randint(0, 2, (b,), generator=g), -1)
    camera_quality = torch.randint(-1, 3, (b,), generator=g)
    return {
        "pixel_values": torch.randn(b, 3, size, size, generator=g),
        "label": label, "content": content, "illumination": illumination, "environment": environment,
        "camera_quality": camera_quality,
        "attack": ["photo" if a else "live" for a in attack.tolist()], "domain": ["synthetic"] * b,
        "video": [f"v{i}" for i in range(b)], "sample_id": [f"s{seed}_{i}" for i in range(b)],
        "illumination_name": [None] * b, "environment_name": [None] * b, "camera_quality_name": [None] * b,
    }


def tiny_system(**kw) -> InstructFLIPSystem:
    torch.manual_seed(0)
    return InstructFLIPSystem(**(TINY | kw))


def _trainer(tmp_path, **kw) -> L.Trainer:
    return L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path, **kw)


# ---------------------------------------------------------------------------------------------------------------------
# instructions


def test_instructions_match_published_wording():
    assert instruction("content") == (
        "Choose the correct option to the following question: Which type of spoof type is in this image?\n"
        "(1) Real face (2) Photo (3) Poster (4) A4-paper (5) 2D face mask (6) 2D upper-body mask (7) 2D region mask "
        "(8) PC screen (9) Pad screen (10) Phone screen (11) 3D mask")
    assert instruction("camera_quality").endswith("What is the camera quality in this image?\n(1) Low (2) Medium (3) High")
    assert answer("content", 7) == "(8) PC screen"
    assert [len(OPTIONS[k]) for k in ("illumination", "environment", "camera_quality")] == [4, 2, 3]
    with pytest.raises(ValueError, match="valid"):
        instruction("weather")


def test_style_question_draw():
    label = torch.tensor([0, 1] * 50)
    kinds = ("illumination", "environment", "camera_quality")
    paper = draw_style_questions(label, "scene_or_quality", kinds, torch.Generator().manual_seed(1))
    assert set(paper[label == 1].tolist()) == {1, 2} and set(paper[label == 0].tolist()) == {3}
    published = draw_style_questions(label, "published", kinds, torch.Generator().manual_seed(1))
    assert set(published[label == 1].tolist()) == {1, 2, 3} and set(published[label == 0].tolist()) == {3}
    r1 = draw_style_questions(label, "random", kinds, torch.Generator().manual_seed(3))
    r2 = draw_style_questions(label, "random", kinds, torch.Generator().manual_seed(3))
    assert torch.equal(r1, r2) and set(r1[label == 0].tolist()) == {1, 2, 3}
    assert draw_style_questions(label, "environment", kinds).eq(kind_id("environment")).all()
    only_illum = draw_style_questions(label, "scene_or_quality", ("illumination",), torch.Generator().manual_seed(0))
    assert only_illum.eq(1).all()
    with pytest.raises(ValueError, match="not active"):
        draw_style_questions(label, "camera_quality", ("illumination",))


# ---------------------------------------------------------------------------------------------------------------------
# Q-Former


def test_qformer_weight_mapping_from_tiny_bert(tmp_path):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                                intermediate_size=64, max_position_embeddings=64))
    bert.save_pretrained(tmp_path / "bert")
    config = qformer_bert_config(str(tmp_path / "bert"), num_hidden_layers=2, encoder_width=24)
    assert (config.hidden_size, config.vocab_size, config.num_hidden_layers) == (32, 120, 2)
    qf = QFormer(config, num_query_tokens=4)
    report = qf.load_pretrained(str(tmp_path / "bert"))
    ref = bert.state_dict()
    own = qf.state_dict()
    for key in ("embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
                "embeddings.LayerNorm.weight", "encoder.layer.0.attention.self.query.weight",
                "encoder.layer.1.attention.self.value.bias", "encoder.layer.0.attention.output.LayerNorm.bias",
                "encoder.layer.0.intermediate.dense.weight", "encoder.layer.0.output.dense.weight"):
        assert torch.equal(own[key], ref[key]), key
    # not in BERT: cross-attention (layer 0 only: freq 2), query FFNs, query tokens; the last layer has no text FFN
    assert "encoder.layer.0.crossattention.self.key.weight" in report.missing
    assert "encoder.layer.1.crossattention.self.key.weight" not in own
    assert "encoder.layer.1.intermediate.dense.weight" not in own
    assert "query_tokens" in report.missing and "encoder.layer.1.output_query.dense.weight" in report.missing
    assert any("encoder.layer.2." in k for k in report.unexpected)  # BERT's 3rd layer has no place here
    assert not any("token_type" in k or "pooler" in k for k in report.loaded + report.unexpected)
    # BLIP-2 stage-1 style initialisation of the query FFN from the text FFN
    qf2 = QFormer(config, num_query_tokens=4)
    qf2.load_pretrained(str(tmp_path / "bert"), copy_text_ffn_to_query=True)
    assert torch.equal(qf2.state_dict()["encoder.layer.0.intermediate_query.dense.weight"],
                       ref["encoder.layer.0.intermediate.dense.weight"])
    # old-style BERT names and LAVIS prefixes map too
    legacy = {"bert.embeddings.LayerNorm.gamma": torch.ones(3), "Qformer.bert.encoder.layer.0.crossattention.self."
              "query.weight": torch.ones(1), "query_tokens": torch.ones(2), "cls.predictions.bias": torch.ones(1)}
    assert set(map_qformer_state_dict(legacy)) == {"embeddings.LayerNorm.weight", "query_tokens",
                                                    "encoder.layer.0.crossattention.self.query.weight"}


def test_qformer_matches_hf_instructblip_qformer():
    """Same maths as transformers' InstructBLIP Q-Former (the LAVIS design) once its weights are mapped in."""
    from transformers import InstructBlipQFormerConfig, InstructBlipQFormerModel

    torch.manual_seed(0)
    hf_cfg = InstructBlipQFormerConfig(vocab_size=90, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                                       intermediate_size=48, encoder_hidden_size=24, cross_attention_frequency=2,
                                       max_position_embeddings=40)
    hf = InstructBlipQFormerModel(hf_cfg).eval()
    config = qformer_bert_config("tiny", num_hidden_layers=3, encoder_width=24, num_attention_heads=4)
    for k in ("vocab_size", "hidden_size", "intermediate_size", "max_position_embeddings", "layer_norm_eps",
              "pad_token_id"):
        setattr(config, k, getattr(hf_cfg, k))
    qf = QFormer(config, num_query_tokens=5).eval()
    report = qf.load_pretrained({"qformer." + k: v for k, v in hf.state_dict().items()}
                                | {"query_tokens": torch.randn(1, 5, 32)})
    assert report.missing == [] and report.skipped == []
    ids = torch.randint(1, 90, (2, 7))
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 5:] = 0
    image = torch.randn(2, 9, 24)
    ours = qf(ids, mask, image)
    theirs = hf(input_ids=ids, attention_mask=torch.cat([torch.ones(2, 5, dtype=torch.long), mask], 1),
                query_embeds=qf.query_tokens.expand(2, -1, -1), encoder_hidden_states=image).last_hidden_state[:, :5]
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------------
# model and system


def test_gradients_reach_queries_through_frozen_t5():
    system = tiny_system(use_cue=False)
    system.load_t5()
    model = system.model
    assert all(not p.requires_grad for p in model.t5.parameters())
    model.train()
    assert not model.t5.training  # the frozen T5 stays in eval mode
    terms = model.losses(make_batch(), torch.tensor([1, 1, 2, 2]))
    (terms["content"] + terms["style"]).backward()  # LM terms only: the path goes through T5
    for qf in (model.content_qformer, model.style_qformer):
        assert qf.query_tokens.grad is not None and qf.query_tokens.grad.abs().sum() > 0
    assert model.t5_proj.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.t5.parameters())
    opt = system.configure_optimizers()["optimizer"]
    opt.step()
    t5_ids = {id(p) for p in model.t5.parameters()}
    in_opt = {id(p) for group in opt.param_groups for p in group["params"]}
    assert not t5_ids & in_opt
    assert not t5_ids & {id(p) for p in opt.state}
    assert in_opt == {id(p) for p in system.parameters() if p.requires_grad}


def test_batch_without_labels_gives_zero_loss_with_valid_graph():
    system = tiny_system()
    system.load_t5()
    batch = make_batch()
    for k in ("content", "illumination", "environment", "camera_quality"):
        batch[k] = torch.full_like(batch[k], -1)  # a target-domain batch: no instruction labels
    terms = system.model.losses(batch, torch.tensor([1, 2, 3, 1]))
    assert terms["content"].item() == 0.0 and terms["style"].item() == 0.0
    (terms["content"] + terms["style"]).backward()
    assert system.model.t5_proj.weight.grad is not None  # touched (zero), so DDP sees it used
    assert system.model.content_qformer.query_tokens.grad is not None


def test_llm_free_score_equals_training_forward_score():
    system = tiny_system()
    system.load_t5()
    model = system.model.eval()
    batch = make_batch(seed=3)
    eval_kinds = torch.full((4,), kind_id(model.eval_style_question))
    with torch.no_grad():
        terms = model.losses(batch, eval_kinds)
        out = system(batch["pixel_values"])
    torch.testing.assert_close(terms["logits"].softmax(-1)[:, 1], out["score"], rtol=1e-6, atol=1e-7)
    assert out["cue_map"].shape == (4, 3, 8, 8)
    assert ((out["score"] >= 0) & (out["score"] <= 1)).all()


def test_state_dict_has_no_t5_and_reloads():
    system = tiny_system()
    system.load_t5()
    state = system.state_dict()
    assert state and not any(k.startswith("model.t5.") for k in state)
    assert "model.t5_proj.weight" in state
    fresh = InstructFLIPSystem(**TINY)  # T5 not loaded: not needed to load a checkpoint
    fresh.load_state_dict(state)
    fresh.eval(), system.eval()
    x = make_batch()["pixel_values"]
    torch.testing.assert_close(fresh(x)["score"], system(x)["score"])
    wrong = InstructFLIPSystem(**(TINY | {"use_cue": False}))
    with pytest.raises(RuntimeError, match="unexpected"):
        wrong.load_state_dict(state)


@pytest.mark.parametrize("switch, term, prefix", [
    ({"use_content": False}, "content", "model.content_qformer."),
    ({"use_style": False}, "style", "model.style_qformer."),
    ({"use_cue": False}, "cue", "model.cue_generator."),
])
def test_ablation_switch_removes_term_and_parameters(switch, term, prefix):
    full, ablated = tiny_system(), tiny_system(**switch)
    full.load_t5(), ablated.load_t5()
    names = dict(ablated.named_parameters())
    assert any(k.startswith(prefix) for k, _ in full.named_parameters())
    assert not any(k.startswith(prefix) for k in names)
    assert sum(p.numel() for p in ablated.parameters()) < sum(p.numel() for p in full.parameters())
    res = ablated._shared_step(make_batch(), "train")
    assert term not in res["terms"] and set(res["terms"]) < {"content", "style", "cls", "cue"}
    res["loss"].backward()  # every remaining trainable parameter is reached (DDP without unused parameters)
    unused = [k for k, p in ablated.named_parameters() if p.requires_grad and p.grad is None]
    assert unused == []


def test_no_branch_is_the_clip_baseline_and_needs_no_t5():
    system = tiny_system(use_content=False, use_style=False)
    assert not system.model.needs_t5 and system.model.fusion is None and system.model.t5_proj is None
    res = system._shared_step(make_batch(), "train")
    assert set(res["terms"]) == {"cls", "cue"}


def test_classifier_heads_variant_and_num_style_questions():
    system = tiny_system(heads="classifier", num_style_questions=1)
    model = system.model
    assert not model.needs_t5 and model.t5_proj is None
    assert list(model.style_heads) == ["illumination"] and model.content_head.out_features == 11
    two = tiny_system(heads="classifier", num_style_questions=2)
    assert list(two.model.style_heads) == ["illumination", "environment"]
    assert sum(p.numel() for p in system.parameters()) < sum(p.numel() for p in two.parameters())
    res = system._shared_step(make_batch(), "train")
    assert set(res["terms"]) == {"content", "style", "cls", "cue"}
    res["loss"].backward()
    assert all(p.grad is not None for p in system.parameters())
    answers = model.eval().answer(make_batch()["pixel_values"])
    assert set(answers) == {"content", "illumination"} and answers["content"][0] in OPTIONS["content"]
    with pytest.raises(ValueError, match="eval_style_question"):
        tiny_system(num_style_questions=1, eval_style_question="environment")


def test_predict_without_t5_loaded(tmp_path):
    system = tiny_system()
    loader = DataLoader([make_batch(seed=i) for i in range(2)], batch_size=None)
    preds = _trainer(tmp_path).predict(system, loader)
    assert system.model.t5 is None  # never loaded: inference is LLM-free
    assert preds[0]["scores"].shape == (4,) and preds[0]["cue_map"].shape == (4, 3, 8, 8)
    assert "answers" not in preds[0]
    llm_free = tiny_system(llm_free=True)
    with pytest.raises(RuntimeError, match="llm_free"):
        llm_free.load_t5()


def test_predict_answers_questions_with_t5(tmp_path):
    system = tiny_system(answer_questions=True)
    loader = DataLoader([make_batch()], batch_size=None)
    preds = _trainer(tmp_path).predict(system, loader)
    assert system.model.t5 is not None
    answers = preds[0]["answers"]
    assert set(answers) == {"content", "illumination", "environment", "camera_quality"}
    assert all(len(v) == 4 and all(isinstance(s, str) for s in v) for v in answers.values())


def test_lightning_fit_checkpoint_roundtrip(tmp_path):
    system = tiny_system()
    loader = DataLoader([make_batch(seed=i) for i in range(2)], batch_size=None)
    trainer = _trainer(tmp_path, max_steps=2)
    trainer.fit(system, loader)
    ckpt_path = tmp_path / "last.ckpt"
    trainer.save_checkpoint(ckpt_path)
    ckpt = torch.load(ckpt_path, weights_only=False)
    assert not any(k.startswith("model.t5.") for k in ckpt["state_dict"])
    assert ckpt["hyper_parameters"]["t5"] == "tiny"
    n_trainable = sum(1 for p in system.parameters() if p.requires_grad)
    assert len(ckpt["optimizer_states"][0]["state"]) == n_trainable
    assert "style_generator" in ckpt
    loaded = InstructFLIPSystem.load_from_checkpoint(ckpt_path)
    assert loaded.model.t5 is None
    x = make_batch(seed=9)["pixel_values"]
    torch.testing.assert_close(loaded.eval()(x)["score"], system.eval()(x)["score"])


def test_backbones_from_save_pretrained_directories(tmp_path):
    """The path real weights take: CLIP, BERT and T5 directories written by save_pretrained (tiny sizes)."""
    from transformers import BertConfig, BertModel

    from fasvlm.backbones import load_t5, load_tokenizer, load_vision_encoder

    torch.manual_seed(0)
    load_vision_encoder("tiny").save_pretrained(tmp_path / "clip")
    bert_tok = load_tokenizer("tiny", "bert")
    bert = BertModel(BertConfig(vocab_size=len(bert_tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=64))
    bert.save_pretrained(tmp_path / "bert")
    bert_tok.save_pretrained(tmp_path / "bert")
    load_t5("tiny").save_pretrained(tmp_path / "t5")
    load_tokenizer("tiny", "t5").save_pretrained(tmp_path / "t5")

    system = InstructFLIPSystem(vision=str(tmp_path / "clip"), qformer=str(tmp_path / "bert"), qformer_heads=2,
                                t5=str(tmp_path / "t5"), fusion_heads=2, fusion_dim_head=16, fusion_ffn_dim=64)
    assert system.image_spec.size == 64
    model = system.model
    assert torch.equal(model.style_qformer.state_dict()["encoder.layer.0.attention.self.key.weight"],
                       bert.state_dict()["encoder.layer.0.attention.self.key.weight"])
    assert "encoder.layer.0.crossattention.self.key.weight" in model.qformer_reports["content"].missing
    system.load_t5()
    res = system._shared_step(make_batch(), "train")
    assert set(res["terms"]) == {"content", "style", "cls", "cue"} and torch.isfinite(res["loss"])
    assert not any(k.startswith("model.t5.") for k in system.state_dict())


# ---------------------------------------------------------------------------------------------------------------------
# golden numbers

GOLDEN = [  # (loss, content, style, cls, cue) steps 0..2, tiny presets, seed 0, AdamW lr 1e-3, "scene_or_quality"
    # step 0 is unchanged by issue 19; steps 1-2 changed there (cls: the classifier follows the published update rule)
    (19.094310760498047, 23.678234100341797, 23.202796936035156, 2.1052544116973877, 0.5221924185752869),
    (18.674144744873047, 23.360107421875, 22.998096466064453, 0.7074481844902039, 0.4949079155921936),
    (17.58610725402832, 22.60652732849121, 20.94134521484375, 0.9532225131988525, 0.47952502965927124),
]


def _golden_run() -> list[tuple[float, ...]]:
    torch.manual_seed(0)
    system = InstructFLIPSystem(**TINY, style_question="scene_or_quality", style_seed=0)
    system.load_t5()
    system.train()
    opt = build_optimizer(system, lr=1e-3, weight_decay=1e-2)
    batches = [make_batch(b=6, seed=s) for s in range(3)]
    torch.manual_seed(1)  # the cue noise
    out = []
    for batch in batches:
        res = system._shared_step(batch, "train")
        opt.zero_grad()
        res["loss"].backward()
        opt.step()
        out.append((res["loss"].item(), *(res["terms"][k].item() for k in ("content", "style", "cls", "cue"))))
    return out


def test_golden_three_steps():
    got = _golden_run()
    assert len(got) == len(GOLDEN), f"paste these numbers into GOLDEN: {got}"
    for step, (g, want) in enumerate(zip(got, GOLDEN, strict=True)):
        assert g == pytest.approx(want, rel=1e-4), f"step {step}: {g} != {want}"


# ---------------------------------------------------------------------------------------------------------------------
# issue 19: fidelity to the published code


class _OfficialClassifier(torch.nn.Module):
    """InstructFLIP ``Classifier`` (kunkunlin1221/InstructFLIP @ 7f4db1e, src/models/instruct_flip/instruct_flip.py):
    ``if norm_flag: self.layer.weight.data = normalize(self.layer.weight, 2, axis=0); return self.layer(x)``, with
    ``normalize`` = division by the L2 norm over ``axis`` (SSDG/FLIP's ``l2_norm``)."""

    def __init__(self, layer: torch.nn.Linear):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        w = self.layer.weight
        self.layer.weight.data = torch.div(w, torch.norm(w, 2, 0, True))
        return self.layer(x)


def _train_head(head, forward, steps=500, lr=5e-6):
    g = torch.Generator().manual_seed(4)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-7)  # the published optimiser's decay
    direction = torch.randn(768, generator=g)
    for _ in range(steps):
        x = torch.randn(24, 768, generator=g)
        y = (x @ direction > 0).long()
        loss = torch.nn.functional.cross_entropy(forward(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return torch.nn.functional.normalize(head.weight.detach(), dim=0)


def test_classifier_norm_trains_as_the_published_update_rule():
    """500 AdamW steps at lr 5e-6 from the project's own initialisation: the normalised weights of the project's
    classifier stay within 1e-2 of the published rule's; the old in-graph normalisation does not."""
    from fasvlm.models.instructflip import NormLinear

    torch.manual_seed(0)
    ours = NormLinear(768, 2)  # default: rewrite, as the code
    init = {k: v.clone() for k, v in ours.state_dict().items()}
    assert ours.weight.norm(dim=0).mean() < 0.1  # PyTorch's init: columns far from unit norm
    ref_layer = torch.nn.Linear(768, 2)
    ref_layer.load_state_dict(init)
    ref = _OfficialClassifier(ref_layer)
    old = NormLinear(768, 2, norm="functional")
    old.load_state_dict(init)

    w_ours = _train_head(ours, ours)
    w_ref = _train_head(ref_layer, ref)
    w_old = _train_head(old, old)
    assert (w_ours - w_ref).abs().max() < 1e-2
    assert (w_old - w_ref).abs().max() > 1e-2  # the test tells the two rules apart
    # the forward function is the same either way
    x = torch.randn(5, 768)
    old.load_state_dict(ours.state_dict())
    torch.testing.assert_close(old(x), ours(x))
    with pytest.raises(ValueError, match="rewrite"):
        NormLinear(4, 2, norm="weight")


def test_classifier_rewrite_survives_two_forwards_in_one_step():
    from fasvlm.models.instructflip import NormLinear

    head = NormLinear(8, 2)
    x = torch.randn(3, 8)
    (head(x).sum() + head(x).sum()).backward()  # no in-place modification of a saved tensor
    assert head.weight.grad is not None
    torch.testing.assert_close(head.weight.norm(dim=0), torch.ones(8))


def test_dagger_official_reading():
    project = tiny_system(heads="classifier").model
    official = tiny_system(heads="classifier", dagger="official").model
    assert isinstance(project.content_head, torch.nn.Linear) and project.style_head is None
    from fasvlm.models.instructflip import NormLinear

    assert isinstance(official.content_head, NormLinear) and official.style_heads is None
    assert official.style_head.out_features == 4 + 2 + 3
    q = torch.randn(2, 5, official.content_head.in_features)
    torch.testing.assert_close(official._pool(q), q[:, 0])
    torch.testing.assert_close(project._pool(q), q.mean(dim=1))
    system = tiny_system(heads="classifier", dagger="official")
    res = system._shared_step(make_batch(), "train")
    assert set(res["terms"]) == {"content", "style", "cls", "cue"} and torch.isfinite(res["loss"])
    res["loss"].backward()
    assert system.model.style_head.weight.grad is not None
    answers = system.model.eval().answer(make_batch()["pixel_values"])
    assert answers["environment"][0] in OPTIONS["environment"]
    with pytest.raises(ValueError, match="official"):
        tiny_system(heads="classifier", dagger="paper")


def test_qformer_tokenizer_of_an_instructblip_directory_and_load_report(tmp_path, caplog):
    """An InstructBLIP directory: the Q-Former reads qformer_tokenizer/, not the root (LLM) tokenizer; the load
    report is shown to the user."""
    import json
    import logging

    from transformers import BertConfig, BertModel

    from fasvlm.backbones import load_tokenizer
    from fasvlm.models.qformer import qformer_tokenizer_path

    bert_tok = load_tokenizer("tiny", "bert")
    bert = BertModel(BertConfig(vocab_size=len(bert_tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=64))
    root = tmp_path / "instructblip"
    bert.save_pretrained(root)  # the weights; config rewritten as a composite InstructBLIP config below
    cfg = json.loads((root / "config.json").read_text())
    (root / "config.json").write_text(json.dumps({"model_type": "instructblip", "qformer_config": cfg}))
    load_tokenizer("tiny", "t5").save_pretrained(root)  # root tokenizer = the LLM's
    bert_tok.save_pretrained(root / "qformer_tokenizer")
    assert qformer_tokenizer_path(str(root)) == str(root / "qformer_tokenizer")
    with caplog.at_level(logging.INFO):
        system = InstructFLIPSystem(vision="tiny", qformer=str(root), qformer_heads=2, t5="tiny", fusion_heads=2,
                                    fusion_dim_head=16, fusion_ffn_dim=64)
    assert system.model.qformer_tokenizer.vocab == bert_tok.vocab
    lines = system.model.load_messages()
    assert len(lines) == 2 and "tensors loaded" in lines[0] and "keep their initialisation" in lines[0]
    assert any("content Q-Former" in r.getMessage() for r in caplog.records)
    # a BLIP-2 directory (no qformer_tokenizer/) is refused instead of read with the LLM's tokenizer
    (root / "qformer_tokenizer" / "tokenizer_config.json").unlink()
    import shutil

    shutil.rmtree(root / "qformer_tokenizer")
    with pytest.raises(Exception, match="qformer_tokenizer"):
        qformer_tokenizer_path(str(root))


def test_style_question_mode_renamed_with_deprecated_alias():
    label = torch.tensor([0, 1] * 20)
    kinds = ("illumination", "environment", "camera_quality")
    new = draw_style_questions(label, "scene_or_quality", kinds, torch.Generator().manual_seed(1))
    with pytest.warns(DeprecationWarning, match="scene_or_quality"):
        old = draw_style_questions(label, "paper", kinds, torch.Generator().manual_seed(1))
    assert torch.equal(new, old)


def test_color_jitter_is_torchvision_definition():
    """ColorJitter(0.2, 0.2, 0.2, 0) of the published training transform: brightness = blend with black, contrast =
    blend with the mean grey level, saturation = blend with the greyscale image (torchvision's definitions, here
    through PIL as torchvision's PIL path); factors in [0.8, 1.2], random order, reproducible from the rng."""
    import numpy as np
    from PIL import Image

    from fasvlm.data_modules.transforms import FaceTransform, color_jitter

    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    x = np.asarray(img, dtype=np.float64)
    gray = x @ np.array([0.299, 0.587, 0.114])

    def one(b, c, s, seed):
        return np.asarray(color_jitter(img, b, c, s, np.random.default_rng(seed)), dtype=np.float64)

    for seed in range(5):
        f = np.random.default_rng(seed)
        f.permutation(3)
        factor = f.uniform(0.8, 1.2)
        np.testing.assert_allclose(one(0.2, 0, 0, seed), np.clip(factor * x, 0, 255), atol=1.0)
        np.testing.assert_allclose(one(0, 0.2, 0, seed), np.clip(factor * x + (1 - factor) * gray.mean(), 0, 255),
                                   atol=1.5)
        np.testing.assert_allclose(one(0, 0, 0.2, seed),
                                   np.clip(factor * x + (1 - factor) * gray[..., None], 0, 255), atol=1.5)
    a, b = one(0.2, 0.2, 0.2, 7), one(0.2, 0.2, 0.2, 7)
    assert np.array_equal(a, b) and not np.array_equal(a, x)
    assert np.array_equal(one(0, 0, 0, 3), x)
    tf = FaceTransform(16, (0.5,) * 3, (0.5,) * 3, train=True, jitter=0, flip=False, color_jitter=(0.2, 0.2, 0.2))
    plain = FaceTransform(16, (0.5,) * 3, (0.5,) * 3, train=True, jitter=0, flip=False)
    assert not torch.equal(tf(img, None, np.random.default_rng(1)), plain(img, None, np.random.default_rng(1)))
    with pytest.raises(ValueError, match="color_jitter"):
        FaceTransform(16, (0.5,) * 3, (0.5,) * 3, color_jitter=(0.2, 0.2))


@pytest.mark.parametrize("warmup_frac", [0.05, 0.1, 0.25])
def test_onecycle_schedule_runs_every_short_length(warmup_frac):
    """torch's OneCycleLR divides by zero when pct_start * total_steps == 1 (10 steps at the paper's 0.1); the schedule
    must step through every length, warm up to (near) the peak and end at max_lr / div_factor. The peak is hit exactly
    only when pct_start * total_steps is a whole number (torch places the phase end at pct_start * total - 1)."""
    for total in range(1, 61):
        optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        sched = build_scheduler(optimizer, "onecycle", total, lr=1.0, warmup_frac=warmup_frac)["scheduler"]
        lrs = [optimizer.param_groups[0]["lr"]]
        for _ in range(total - 1):
            optimizer.step()
            sched.step()
            lrs.append(optimizer.param_groups[0]["lr"])
        assert len(lrs) == total
        if total >= 4:
            assert lrs[0] == pytest.approx(0.1) and lrs[-1] == pytest.approx(0.1)
            assert 0.9 < max(lrs) <= 1.0 + 1e-12
        if total == 10 and warmup_frac == 0.1:  # the length that crashed: 2 warm-up steps, peak at step 1
            assert lrs[1] == pytest.approx(1.0)
    # long runs keep the published warm-up fraction exactly
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_scheduler(optimizer, "onecycle", 1000, lr=1.0, warmup_frac=warmup_frac)["scheduler"]
    assert sched._schedule_phases[0]["end_step"] == warmup_frac * 1000 - 1
