"""Instruction data (`fasvlm caption instruct`), its filters, the review round trip, ConversationDataModule and I-FAS
multi-task training on the conversations. Tiny models (BLIP-2 as the MLLM, CLIP, OPT) on the synthetic data, CPU."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO

from fasvlm.captioning.hf import (
    CausalLMModel,
    CLIPScorer,
    ImageTextModel,
    build_tiny_blip2,
    build_tiny_clip,
    build_tiny_llm,
)
from fasvlm.captioning.instruct import (
    ATTACK_TYPES,
    TASKS,
    AugmentSettings,
    ClipSettings,
    FilterSettings,
    JudgeSettings,
    MLLMSettings,
    TaskSpec,
    build_instructions,
    clip_keep,
    export_review,
    import_review,
    judge_keep,
    parse_box,
    parse_qa_json,
    refusal_phrase,
    validate_box,
)
from fasvlm.captioning.stages import DataSettings, TrainerSettings
from fasvlm.cli import main
from fasvlm.data_modules.datamodule import DomainSpec
from fasvlm.data_modules.llava import load_llava
from fasvlm.data_modules.taxonomy import ATTACK_NAMES
from fasvlm.losses import lm_loss_terms
from fasvlm.text.prompts import QUESTION

CPU = TrainerSettings(accelerator="cpu", devices=1, precision="32-true")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {"blip2": build_tiny_blip2(root / "blip2"), "clip": build_tiny_clip(root / "clip"),
            "llm": build_tiny_llm(root / "llm")}


def _domains_json(synthetic_root: Path, split: str = "train") -> str:
    return json.dumps([{"name": "celeba_spoof", "dataset": "celeba_spoof",
                        "root": str(synthetic_root / "celeba_spoof"), "split": split}])


@pytest.fixture(scope="module")
def instruct_out(models, synthetic_root, tmp_path_factory) -> Path:
    """`fasvlm caption instruct` end to end with the real configs and tiny models (CLIP filter, augmentation and
    judge all on)."""
    out = tmp_path_factory.mktemp("instruct") / "out"
    code = main(["caption", "instruct", "--config", str(REPO / "conf/caption/instruct.yaml"),
                 "--config", str(REPO / "conf/caption/instruct_tiny.yaml"), "--out", str(out),
                 "--data.domains", _domains_json(synthetic_root), "--mllm.model", str(models["blip2"]),
                 "--clip.model", str(models["clip"]), "--augment.model", str(models["llm"]),
                 "--judge.enabled", "true"])
    assert code == 0
    return out


# ---------------------------------------------------------------------------------------------------------------------
# filters on crafted inputs


def test_boxes_are_parsed_and_validated():
    assert parse_box("The mask is at [10, 20, 50, 60].", 100, 80) == [10, 20, 50, 60]
    assert parse_box("[0.1, 0.25, 0.5, 1.0]", 200, 100) == [20, 25, 100, 100]  # normalised -> pixels
    assert parse_box("no box here", 100, 100) is None and parse_box("[1, 2, 3]", 100, 100) is None
    assert validate_box([10, 20, 50, 60], 100, 80) is None
    assert validate_box([0, 0, 100, 80], 100, 80) is None  # the whole image
    assert validate_box([10, 20, 150, 60], 100, 80) == "box_outside_image"
    assert validate_box([-5, 20, 50, 60], 100, 80) == "box_outside_image"
    assert validate_box([10, 20, 50, 81], 100, 80) == "box_outside_image"
    assert validate_box([50, 20, 10, 60], 100, 80) == "box_degenerate"
    assert validate_box([10, 60, 50, 60], 100, 80) == "box_degenerate"
    assert validate_box(None, 100, 80) == "box_missing"
    assert validate_box([10, float("nan"), 50, 60], 100, 80) == "box_missing"


@pytest.mark.parametrize("text, phrase", [
    ("I'm sorry, but I cannot help with identifying people.", "i'm sorry"),
    ("I cannot determine whether this face is real.", "i cannot"),
    ("It is difficult to determine whether the face is real.", "difficult to determine"),
    ("It is unclear whether the face is real.", "it is unclear"),
    ("The face is real, though unclear if the light is natural.", "unclear if"),
    ("The face edges are unclear and blurred, as on a printed photo.", None),  # a cue, not a hedge (issue 19)
    ("As an AI, I do not judge faces.", "as an ai"),
    ("I\u2019m not certain about the edges.", "i'm not certain"),
    ("The screen edges and a moire pattern are visible.", None),
    ("A nuclear-white background behind a printed face.", None),  # "unclear" inside another word is no hedge
    ("No. This is a replay attack on a PC screen.", None),
])
def test_refusal_and_hedging_answers_are_caught(text, phrase):
    assert refusal_phrase(text) == phrase


@pytest.mark.parametrize("text, reason", [
    ('[{"question": "Q1?", "answer": "A1"}, {"question": "Q2?", "answer": "A2"}]', None),
    ('Sure! Here you go:\n[{"question": "Q1?", "answer": "A1"}, {"question": "Q2?", "answer": "A2"}, '
     '{"question": "Q3?", "answer": "A3"}]\nHope it helps.', None),
    ('{"pairs": [{"question": "Q1?", "answer": "A1"}, {"question": "Q2?", "answer": "A2"}]}', None),
    ("Here are two new pairs: first, what is it? a mask.", "no_json"),
    ("", "no_json"),
    ('[{"question": "Q1?", "answer": "A1"}, {"question": "Q2?", "answer": ', "invalid_json"),
    ('{"question": "Q1?", "answer": "A1"}', "not_a_list"),
    ('[{"question": "Q1?", "answer": "A1"}]', "too_few_pairs"),
    ('[{"question": "", "answer": "A1"}, {"question": "Q2?", "answer": "A2"}]', "bad_pair"),
    ('[{"q": "Q1?", "a": "A1"}, {"question": "Q2?", "answer": "A2"}]', "bad_pair"),
    ('["Q1?"]', "too_few_pairs"),
    ('["Q1?", "A1"]', "bad_pair"),
])
def test_malformed_llm_json_is_classified_not_raised(text, reason):
    pairs, error = parse_qa_json(text, 2)
    assert error == reason
    if reason is None:
        assert [p["question"] for p in pairs] == ["Q1?", "Q2?"]


def test_clip_and_judge_decisions():
    assert clip_keep(0.15, 0.15) and clip_keep(0.3, 0.15) and not clip_keep(0.149, 0.15)
    assert not clip_keep(float("nan"), 0.15)
    assert judge_keep(0.6, 0.3) and not judge_keep(0.3, 0.6)
    assert judge_keep(0.3, 0.6, margin=1.0)  # log(0.6/0.3) = 0.69 <= 1
    assert judge_keep(0.0, 0.0)  # no opinion: kept


def test_clip_similarity_is_the_cosine_of_the_projected_embeddings(models, synthetic_root):
    scorer = CLIPScorer(str(models["clip"]), dtype="float32")
    from PIL import Image

    image = Image.open(next((synthetic_root / "celeba_spoof" / "Data" / "train").rglob("*.jpg"))).convert("RGB")
    texts = ["a face printed on paper", "a face replayed on a PC screen with a moire pattern"]
    batch = scorer.collate()([{"item": {"key": str(i), "text": t}, "image": image} for i, t in enumerate(texts)])
    sims = scorer.similarity(**batch["inputs"])
    m = scorer.model
    img = m.get_image_features(pixel_values=batch["inputs"]["pixel_values"])
    txt = m.get_text_features(input_ids=batch["inputs"]["input_ids"],
                              attention_mask=batch["inputs"]["attention_mask"])
    img = getattr(img, "pooler_output", img)
    txt = getattr(txt, "pooler_output", txt)
    expected = (img / img.norm(dim=-1, keepdim=True) * (txt / txt.norm(dim=-1, keepdim=True))).sum(-1)
    torch.testing.assert_close(sims, expected, atol=1e-5, rtol=1e-5)
    assert sims.shape == (2,) and (sims.abs() <= 1).all()


def test_every_attack_type_has_a_readable_name():
    assert set(ATTACK_TYPES) == set(ATTACK_NAMES)


# ---------------------------------------------------------------------------------------------------------------------
# the pipeline with crafted model outputs (monkeypatched predict steps)

_DESCRIPTIONS = ["A face printed on glossy paper.", "I'm sorry, I cannot help with that.",
                 "It is difficult to determine whether the face is real.", "",
                 "The screen edges are visible around the face."]
_BOXES = ["The region is [10, 10, 50, 60].", "[0, 0, 5000, 20]", "[40, 40, 20, 60]", "[0.1, 0.1, 0.5, 0.5]",
          "no box here"]
_AUGMENT = ['[{"question": "Q1?", "answer": "A1 text"}, {"question": "Q2?", "answer": "A2 text"}]',
            "here are two questions: no json", '[{"question": "Q1?", "answer": ', '[{"question": "Q", "answer": "A"}]',
            '{"question": "Q", "answer": "A"}']


def _pick(options: list, key: str) -> int:
    import hashlib

    return int(hashlib.md5(key.encode()).hexdigest(), 16) % len(options)


def test_pipeline_filters_on_crafted_outputs(models, synthetic_root, tmp_path, monkeypatch):
    """Refusals, empty answers and bad boxes are dropped with their reason; malformed augmentation JSON is counted and
    dropped; judgment-flipping rewrites and judge mismatches are dropped; nothing crashes."""
    calls: dict[str, dict] = {"mllm": {}, "augment": {}, "judge": {}}

    def fake_mllm(self, batch, batch_idx, dataloader_idx=0):
        rows = []
        for it in batch["items"]:
            table = {"description": _DESCRIPTIONS, "localisation": _BOXES}.get(it["task"], ["because of cues"])
            text = table[_pick(table, it["key"])]
            calls["mllm"][it["key"]] = text
            rows.append({**it, "generated": text})
        return rows

    def fake_llm(self, batch, batch_idx, dataloader_idx=0):
        rows = []
        for it in batch["items"]:
            if self.mode == "judge":
                mismatch = _pick([0, 1, 2], it["key"]) == 0
                calls["judge"][it["key"]] = mismatch
                rows.append({"key": it["key"], "p_yes": 0.2 if mismatch else 0.7, "p_no": 0.7 if mismatch else 0.2})
            else:
                if "#coarse#" in it["key"]:  # the first rewrite flips the judgment, the second keeps it
                    judgment = "Yes" if "Answer: Yes" in it["prompt"] else "No"
                    flipped = "No" if judgment == "Yes" else "Yes"
                    text = json.dumps([{"question": "Real?", "answer": f"{flipped}. flipped"},
                                       {"question": "Genuine?", "answer": f"{judgment}. kept"}])
                else:
                    text = _AUGMENT[_pick(_AUGMENT, it["key"])]
                calls["augment"][it["key"]] = text
                rows.append({"key": it["key"], "text": text})
        return rows

    monkeypatch.setattr(ImageTextModel, "predict_step", fake_mllm)
    monkeypatch.setattr(CausalLMModel, "predict_step", fake_llm)
    tasks = {
        "description": TaskSpec(questions=["Describe the image."], prompt="Describe it: {attack_description}"),
        "coarse": TaskSpec(questions=[QUESTION], prompt="Why is it {label_text}?", answer="{judgment}. {generated}"),
        "localisation": TaskSpec(questions=["Where is the spoof region?"], prompt="Box of {attack_type}",
                                 answer="{box}", include_live=False, box_source="mllm"),
    }
    data = DataSettings(domains=[DomainSpec(name="celeba_spoof", dataset="celeba_spoof",
                                            root=str(synthetic_root / "celeba_spoof"), split="train")],
                        num_workers=0)
    out = tmp_path / "crafted"
    stats = build_instructions(out, data, CPU, tasks, MLLMSettings(model=str(models["blip2"])),
                               ClipSettings(model=None), AugmentSettings(model=str(models["llm"]),
                                                                         tasks=["description", "coarse"]),
                               JudgeSettings(), FilterSettings())
    training = load_llava(out / "conversations.json")
    unverified = load_llava(out / "unverified_boxes.json")
    # unverified localisation boxes stay out of training (issue 19): they wait in review_boxes.csv
    assert not any(e["task"] == "localisation" for e in training) and unverified
    assert all(e["task"] == "localisation" and e["box_verified"] is False for e in unverified)
    assert (out / "review_boxes.csv").is_file() and stats["localisation_unverified"]["boxes"] == len(unverified)
    entries = {e["id"]: e for e in training + unverified}
    dropped = [json.loads(line) for line in (out / "dropped.jsonl").read_text().splitlines()]
    reasons = {d["key"]: d["reason"] for d in dropped}
    validate_reasons = {d["key"]: d["reason"] for d in dropped if d["stage"] == "validate"}

    # validate: refusals/hedges and empty answers dropped; localisation boxes checked against the image
    expected_validate = {}
    for key, text in calls["mllm"].items():
        if "#description#" in key:
            i = _DESCRIPTIONS.index(text)
            expected_validate[key] = {1: "refusal:i'm sorry", 2: "refusal:difficult to determine", 3: "empty_answer"
                                      }.get(i)
        elif "#localisation#" in key:
            i = _BOXES.index(text)
            expected_validate[key] = {1: "box_outside_image", 2: "box_degenerate", 4: "box_missing"}.get(i)
    for key, reason in expected_validate.items():
        assert validate_reasons.get(key) == reason, key
    assert set(validate_reasons) == {k for k, r in expected_validate.items() if r}
    for key, entry in entries.items():
        if entry["task"] == "localisation":
            box = json.loads(entry["conversations"][1]["value"])
            assert validate_box(box, entry["width"], entry["height"]) is None
            assert calls["mllm"][key] in (_BOXES[0], _BOXES[3])

    # augmentation: malformed JSON counted by kind and dropped; judgment flips dropped
    aug = stats["augment"]
    malformed = {}
    for key, text in calls["augment"].items():
        if "#description#" in key:
            kind = [None, "no_json", "invalid_json", "too_few_pairs", "not_a_list"][_AUGMENT.index(text)]
            if kind:
                malformed[kind] = malformed.get(kind, 0) + 1
                assert reasons[key + "#aug"] == f"malformed_json:{kind}"
    assert aug["malformed_by_kind"] == malformed and aug["malformed"] == sum(malformed.values()) > 0
    n_coarse = sum("#coarse#" in k for k in calls["augment"])
    assert aug["new_pairs_rejected"] == {"judgment_changed": n_coarse}
    n_valid_desc = sum("#description#" in k and t == _AUGMENT[0] for k, t in calls["augment"].items())
    assert aug["new_pairs_kept"] == 2 * n_valid_desc + n_coarse

    # judge: exactly the mismatched pairs are dropped
    judged_out = {k for k, m in calls["judge"].items() if m}
    assert judged_out and {k for k, r in reasons.items() if r == "judge_mismatch"} == judged_out
    assert set(entries) == {k for k, m in calls["judge"].items() if not m}
    for e in entries.values():  # every coarse answer, augmented or not, starts with the label's judgment
        if e["task"] == "coarse":
            assert e["conversations"][1]["value"].startswith("Yes" if e["label"] == 0 else "No")
    assert stats["output"]["conversations"] == len(training)


# ---------------------------------------------------------------------------------------------------------------------
# end to end with tiny models


def test_instruct_end_to_end_writes_llava_with_all_five_tasks(instruct_out):
    training = load_llava(instruct_out / "conversations.json")
    unverified = load_llava(instruct_out / "unverified_boxes.json")
    entries = training + unverified
    stats = json.loads((instruct_out / "stats.json").read_text())
    assert {e["task"] for e in entries} == set(TASKS)
    assert {e["task"] for e in training} == set(TASKS) - {"localisation"}  # boxes wait for a reviewer
    assert {e["task"] for e in unverified} == {"localisation"} and not any(e["box_verified"] for e in unverified)
    assert len({e["id"] for e in entries}) == len(entries)
    for e in entries:
        assert set(e) >= {"id", "image", "conversations"}
        human, gpt = e["conversations"]
        assert human["from"] == "human" and human["value"].startswith("<image>\n") and len(human["value"]) > 8
        assert gpt["from"] == "gpt" and gpt["value"].strip()  # at least one supervised answer token
        assert (instruct_out / e["image"]).is_file()
        if e["task"] == "coarse":
            assert gpt["value"].startswith("Yes" if e["label"] == 0 else "No")
        if e["task"] == "localisation":
            assert e["label"] == 1 and validate_box(json.loads(gpt["value"]), e["width"], e["height"]) is None
        if e["task"] == "description":
            assert "clip_score" in e and math.isfinite(e["clip_score"])
    # the tiny random LLM writes no JSON: every augmentation is counted as malformed, none crashes the run
    assert stats["augment"]["malformed"] == stats["augment"]["pairs_in"] > 0
    assert stats["judge"]["judged"] == (stats["output"]["conversations"] + stats["judge"]["mismatched"]
                                        + stats["localisation_unverified"]["boxes"])
    assert (instruct_out / "review.csv").is_file() and (instruct_out / "review_boxes.csv").is_file()
    # the unverified boxes as a datasets folder too: coordinates and verified flag as columns
    import datasets

    typed = datasets.load_from_disk(str(instruct_out / "unverified_boxes.hf"))
    assert typed["id"] == [e["id"] for e in unverified] and typed["box_verified"] == [False] * len(unverified)
    assert typed["box"] == [json.loads(e["conversations"][1]["value"]) for e in unverified]


def test_clip_threshold_drops_exactly_the_low_similarity_answers(instruct_out, models, synthetic_root, tmp_path):
    """Rerun into a copy with the threshold at the median score: the generate and CLIP stages are reused (done),
    and exactly the descriptions below the threshold are dropped."""
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(instruct_out, out)
    scores = pd.read_parquet(out / "2_clip" / "data.parquet").set_index("key")["clip_score"]
    threshold = float(scores.median())
    main(["caption", "instruct", "--config", str(REPO / "conf/caption/instruct.yaml"),
          "--config", str(REPO / "conf/caption/instruct_tiny.yaml"), "--out", str(out),
          "--data.domains", _domains_json(synthetic_root), "--mllm.model", "/nonexistent/not/loaded",
          "--clip.model", str(models["clip"]), "--clip.threshold", str(threshold),
          "--augment.enabled", "false", "--judge.enabled", "false"])
    kept = {e["id"] for e in load_llava(out / "conversations.json") if e["task"] == "description"}
    assert kept == {k for k, s in scores.items() if s >= threshold}
    dropped = {json.loads(line)["key"] for line in (out / "dropped.jsonl").read_text().splitlines()
               if json.loads(line)["stage"] == "clip"}
    assert dropped == {k for k, s in scores.items() if s < threshold} and dropped


def test_review_export_edit_and_import(instruct_out, tmp_path):
    review = tmp_path / "review.csv"
    both = tmp_path / "both.json"  # the training conversations and the unverified boxes, reviewed together
    both.write_text(json.dumps(load_llava(instruct_out / "conversations.json")
                               + load_llava(instruct_out / "unverified_boxes.json")))
    import shutil

    shutil.copytree(instruct_out / "images", tmp_path / "images")  # image paths stay relative to the file
    export_review(both, review)
    frame = pd.read_csv(review, keep_default_na=False)
    entries = load_llava(both)
    assert len(frame) == len(entries) and (frame["keep"] == 1).all()
    loc = frame.index[frame["task"] == "localisation"][0]
    desc = frame.index[frame["task"] == "description"][:2]
    frame.loc[desc[0], "keep"] = 0  # the reviewer drops one
    frame.loc[desc[1], "answer"] = "A printed face on paper, with visible paper edges."  # and edits one
    frame.loc[loc, "answer"] = f"[0, 0, {int(frame.loc[loc, 'width']) + 10}, 5]"  # and breaks a box
    frame.to_csv(review, index=False)
    result = import_review(review, tmp_path / "sub" / "reviewed.json")
    assert result["kept"] == len(entries) - 2 and result["dropped"] == {"reviewer": 1, "box_outside_image": 1}
    out = {e["id"]: e for e in load_llava(tmp_path / "sub" / "reviewed.json")}
    assert out[frame.loc[desc[1], "id"]]["conversations"][1]["value"].startswith("A printed face on paper")
    assert frame.loc[desc[0], "id"] not in out and frame.loc[loc, "id"] not in out
    for e in out.values():
        assert (tmp_path / "sub" / e["image"]).is_file()  # image paths relative to the new file
        if e["task"] == "localisation":
            assert e["box_verified"] is True  # a reviewer kept it
    assert any(e["task"] == "localisation" for e in out.values())
    # the reviewed conversations as a datasets folder beside the file: kept boxes verified, with their coordinates
    import datasets

    typed = datasets.load_from_disk(str(tmp_path / "sub" / "reviewed.hf"))
    assert typed["id"] == [e["id"] for e in load_llava(tmp_path / "sub" / "reviewed.json")]
    for row in typed:
        if row["task"] == "localisation":
            assert row["box_verified"] is True and row["box"] == json.loads(row["conversations"][1]["value"])
    # JSONL works the same way
    export_review(both, tmp_path / "review.jsonl")
    assert import_review(tmp_path / "review.jsonl", tmp_path / "again.json")["kept"] == len(entries)


@pytest.mark.parametrize("configs", [["instruct.yaml"], ["instruct.yaml", "instruct_tiny.yaml"]], ids="+".join)
def test_caption_instruct_configs_print(configs, capsys):
    args = [a for c in configs for a in ("--config", str(REPO / "conf/caption" / c))]
    with pytest.raises(SystemExit) as exc:
        main(["caption", "instruct", *args, "--out", "runs/x", "--print_config"])
    assert exc.value.code in (0, None)
    out = capsys.readouterr().out
    printed = yaml.safe_load(out[out.index("out:"):])
    assert set(printed["tasks"]) == set(TASKS) and printed["clip"]["threshold"] == (-1.0 if len(configs) > 1
                                                                                     else 0.15)
    assert printed["tasks"]["reasoning"]["attributes"] == ["facial lighting", "global shape consistency", "depth",
                                                         "screen or paper edges"]


# ---------------------------------------------------------------------------------------------------------------------
# ConversationDataModule and I-FAS multi-task training


def _ifas(**kwargs):
    from fasvlm.systems.ifas import IFASSystem

    torch.manual_seed(0)
    return IFASSystem(**{"vision": "tiny", "llm": "tiny", "llm_mode": "full", "num_queries": 4, "lr": 1e-3,
                         "scheduler": "constant", "max_answer_tokens": 48, "caption_source": "templates", **kwargs})


def _conversation_batch(instruct_out: Path, synthetic_root: Path, n: int = 8) -> dict:
    from fasvlm.data_modules.conversations import ConversationDataModule

    dm = ConversationDataModule(train=str(instruct_out / "conversations.json"),
                                targets=[DomainSpec(name="target", dataset="celeba_spoof",
                                                    root=str(synthetic_root / "celeba_spoof"), split="test")],
                                batch_size=n, num_workers=0, image_size=64, augment=False)
    dm.setup("fit")
    return dm, next(iter(dm.train_dataloader()))


def test_conversation_datamodule_batches(instruct_out, synthetic_root):
    dm, batch = _conversation_batch(instruct_out, synthetic_root)
    assert batch["pixel_values"].shape == (8, 3, 64, 64)
    assert len(batch["questions"]) == len(batch["answers"]) == len(batch["tasks"]) == 8
    assert all(a.strip() for a in batch["answers"]) and not any("<image>" in q for q in batch["questions"])
    assert set(batch["label"].tolist()) <= {0, 1}
    turns = dm.turns()
    held = {t["sample_id"] for t in turns["source"]}
    assert held and held.isdisjoint(t["sample_id"] for t in turns["train"])  # held-out images never train
    assert dm.val_names == ["source", "target"]
    val = dm.val_dataloader()
    assert len(val) == 2 and set(next(iter(val[0]))) >= {"pixel_values", "label", "sample_id"}


def test_instruction_datasets_folder_gives_the_same_conversation_batches(instruct_out, synthetic_root, tmp_path):
    """conversations.hf, written beside conversations.json: typed features, the same entries, and the same training
    and held-out batches from the folder alone (moved away from images/: decoded from its Arrow files)."""
    import shutil

    import datasets

    from fasvlm.data_modules.conversations import ConversationDataModule
    from fasvlm.data_modules.hf_datasets import instruction_features

    folder = instruct_out / "conversations.hf"
    ds = datasets.load_from_disk(str(folder))
    assert ds.features == instruction_features("embed")
    entries = load_llava(instruct_out / "conversations.json")
    assert ds["id"] == [e["id"] for e in entries] and ds["conversations"] == [e["conversations"] for e in entries]
    assert ds["task"] == [e["task"] for e in entries] and ds["image_path"] == [e["image"] for e in entries]
    moved = tmp_path / "moved" / "conversations.hf"
    shutil.copytree(folder, moved)
    targets = [DomainSpec(name="target", dataset="celeba_spoof", root=str(synthetic_root / "celeba_spoof"),
                          split="test")]
    dms = [ConversationDataModule(train=str(p), targets=targets, batch_size=8, num_workers=0, image_size=64)
           for p in (instruct_out / "conversations.json", moved)]
    for dm in dms:
        dm.setup("fit")
    loaders = [[dm.train_dataloader(), dm.val_dataloader()[0]] for dm in dms]
    for a_loader, b_loader in zip(*loaders):
        for a, b in zip(a_loader, b_loader, strict=True):
            for key in ("sample_id", "questions", "answers", "tasks", "ids"):
                assert a.get(key) == b.get(key), key
            assert torch.equal(a["label"], b["label"]) and torch.equal(a["pixel_values"], b["pixel_values"])


def test_conversation_loss_equals_single_task_loss_on_ifas_answers():
    """Golden equivalence: conversations that are exactly I-FAS's question and answers give the single-task loss."""
    import sys as _sys

    _sys.path.insert(0, str(REPO / "tests"))
    from test_ifas import make_batch

    s = _ifas().eval()
    batch = make_batch(4)
    single, _ = s._shared_step(batch)
    answers = [("Yes" if y == 0 else "No") + t for y, t in zip(batch["label"].tolist(), s.interpretations(batch))]
    conv = s.conversation_loss({**batch, "questions": [QUESTION] * 4, "answers": answers})
    torch.testing.assert_close(conv["loss"], single["loss"], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(conv["judgment"], single["judgment"], rtol=1e-6, atol=1e-6)
    assert conv["judgment_fraction"] == 1.0


def test_lopsided_loss_only_where_the_answer_starts_with_a_judgment():
    s = _ifas(alpha=1.0).eval()  # alpha 1: judgment rows count only their judgment token
    g = torch.Generator().manual_seed(0)
    pixel = torch.randn(4, 3, 64, 64, generator=g)
    questions = ["Describe the image.", QUESTION, "What type of attack is this?", "Is the face real?"]
    answers = ["A face printed on paper.", "No. This is a poster.", "Nothing suggests an attack.", "Yes, it is real."]
    logits, labels, judgment, has_j = s.model.conversation_forward(pixel, questions, answers)
    assert has_j.tolist() == [False, True, False, True]  # "Nothing ..." is not a judgment
    # the judgment mask marks exactly the " No"/" Yes" token of rows 1 and 3, and nothing in the others
    assert judgment.sum(1).tolist() == [0, 1, 0, 1]
    assert labels[1][judgment[1]].item() == s.model.prompt.no_id and labels[3][judgment[3]].item() == s.model.prompt.yes_id
    assert ((labels != -100).sum(1) > 0).all()  # every sample has supervised answer tokens
    terms = s.conversation_loss({"pixel_values": pixel, "questions": questions, "answers": answers})
    j = lm_loss_terms(logits[has_j], labels[has_j], judgment[has_j])
    o = lm_loss_terms(logits[~has_j], labels[~has_j], judgment[~has_j])
    torch.testing.assert_close(terms["loss"], 0.5 * j["judgment"] + 0.5 * o["all"])  # alpha 1: no interpretation
    # each group alone gives its own loss (padding to the other group's width changes nothing)
    only_o = s.conversation_loss({"pixel_values": pixel[[0, 2]], "questions": [questions[0], questions[2]],
                                  "answers": [answers[0], answers[2]]})
    torch.testing.assert_close(only_o["loss"], o["all"], rtol=1e-5, atol=1e-6)
    assert only_o["loss"] > 0 and only_o["judgment_fraction"] == 0
    only_o["loss"].backward()
    assert all(p.grad is not None for p in s.model.gac.parameters())


def test_ifas_trains_on_conversations_through_the_cli(instruct_out, synthetic_root, tiny_clip_dir, tmp_path):
    """conf/ifas/tiny_instruct.yaml through `fasvlm fit` (data paths laid out as in the repo root)."""
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    (work / "data" / "synthetic").symlink_to(synthetic_root)
    (work / "data" / "instruct_tiny").symlink_to(instruct_out)
    (work / "data" / "tiny_clip").symlink_to(tiny_clip_dir)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "fasvlm.cli", "fit", "--config", str(REPO / "conf/ifas/tiny_instruct.yaml"),
           "--trainer.max_steps", "4", "--trainer.max_epochs", "1", "--trainer.limit_val_batches", "1",
           "--trainer.val_check_interval", "4", "--trainer.log_every_n_steps", "1", "--data.init_args.num_workers", "0",
           "--data.init_args.batch_size", "8", "--trainer.default_root_dir", "runs/ti"]
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    run = work / "runs" / "ti"
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "config.yaml").is_file()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run)).Reload()
    assert {"train/loss", "train/judgment_fraction"} <= set(events.Tags()["scalars"])
    assert "val/source/hter" in events.Tags()["scalars"]
