"""Instruction data for multi-task FAS training (``fasvlm caption instruct``), after FaceShield's pipeline
(arXiv 2505.09415, Sec. 3: MLLM-generated QA, CLIP filter, keyword/manual filtering, LLaMA-3 rewriting).

Five tasks, each with question templates and an MLLM prompt in ``conf/caption/instruct.yaml``:

    description    pre-training: a description of the face image
    coarse         real or spoof: the answer starts with the judgment "Yes"/"No" (to a question asking whether the
                   face is real, as I-FAS's "Is this photo of a real person?"), so the Lopsided LM loss applies to it
    fine           the attack type (from the label), with the MLLM's justification
    reasoning      one named attribute per QA (facial lighting, global shape consistency, depth, screen or paper edges)
    localisation   the spoof region as [x1, y1, x2, y2] in pixels of the exported face image

Stages (each predict stage is a Lightning predict loop, resumable by the same shards as SCF, see
:mod:`fasvlm.text.scf`):

    images        face crops (training margin) written to <out>/images/*.png; boxes are in their pixels
    1_generate    the MLLM answers each task prompt given the image, its label and a description of its attack
                  (the SCF caption when a captions table is given, else the attack/style template)
    validate      localisation boxes parsed and checked (inside the image, x1 < x2, y1 < y2); empty answers and
                  answers with refusal or hedging phrases dropped
    2_clip        CLIP image-text cosine similarity; answers of ``clip.tasks`` below ``clip.threshold`` dropped
    3_augment     an LLM rewrites each QA pair into ``n_new`` new pairs as JSON; output that is not a JSON list of
                  {"question", "answer"} objects is counted as malformed and dropped
    4_judge       the LLM judges each pair (P("Yes") vs P("No") to "does the answer fit?"); mismatched pairs dropped

Outputs: ``conversations.json`` in the LLaVA format (one single-turn conversation per QA pair:
``{"id", "image", "conversations": [{"from": "human", "value": "<image>\\n..."}, {"from": "gpt", "value": ...}]}``
plus ``task``, ``sample_id``, ``label``, ``attack``, ``origin``), ``dropped.jsonl`` (every dropped pair and why),
``stats.json``, and a review file (CSV/JSONL) that :func:`import_review` turns back into a conversations file; the
conversations also as a ``datasets`` folder ``conversations.hf`` (images embedded, localisation boxes with their
verified flag: :func:`~fasvlm.data_modules.hf_datasets.instruction_features`).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from lightning.pytorch.callbacks import Callback

from fasvlm.captioning.hf import CausalLMModel, CLIPScorer, ImageTextModel, TextItems
from fasvlm.captioning.stages import (
    DataSettings,
    TrainerSettings,
    barrier,
    load_face,
    rank,
    resolve_dtype,
    run_predict_stage,
    say,
    write_atomic,
    write_json,
)
from fasvlm.data_modules.datamodule import select_records
from fasvlm.data_modules.hf_datasets import record_image, write_instructions
from fasvlm.data_modules.llava import IMAGE_TOKEN, load_llava, to_llava
from fasvlm.data_modules.record import SampleRecord, resolve_bbox
from fasvlm.data_modules.transforms import square_box
from fasvlm.text.attacks import ATTACK_TYPES
from fasvlm.text.prompts import compose_caption, load_captions

__all__ = [
    "TASKS",
    "ATTACK_TYPES",
    "TaskSpec",
    "MLLMSettings",
    "ClipSettings",
    "AugmentSettings",
    "JudgeSettings",
    "FilterSettings",
    "DEFAULT_REFUSALS",
    "parse_box",
    "validate_box",
    "refusal_phrase",
    "parse_qa_json",
    "clip_keep",
    "judge_keep",
    "build_instructions",
    "export_review",
    "import_review",
]

TASKS = ("description", "coarse", "fine", "reasoning", "localisation")
JUDGMENT_TASKS = ("coarse",)

# Refusal and hedging phrases (lower case, matched on word boundaries); configurable in conf/caption/instruct.yaml.
# "unclear" alone is not one: "the face edges are unclear" is a cue description, not a hedge; only the hedging
# constructions ("it is unclear", "unclear whether") are.
DEFAULT_REFUSALS: tuple[str, ...] = (
    "i'm sorry", "i am sorry", "i apologize", "i cannot", "i can't", "i can not", "i am unable", "i'm unable",
    "i am not able", "i'm not able", "as an ai", "as a language model", "i don't know", "i do not know",
    "not sure", "it is unclear", "it's unclear", "unclear whether", "unclear if", "difficult to determine", "difficult to tell", "hard to tell", "hard to say",
    "cannot determine", "can't determine", "cannot be determined", "impossible to determine", "not possible to",
    "without more information", "more context", "i'm not certain", "i am not certain", "it is unknown",
)

_TEMPLATE_KEYS = {"label_text", "judgment", "attack", "attack_type", "attack_description", "attribute", "width",
                  "height", "question", "generated", "box", "answer", "n_new"}


# ---------------------------------------------------------------------------------------------------------------------
# settings


@dataclass
class TaskSpec:
    """One task: question templates, the MLLM prompt (None: no generation) and the answer template.

    Template fields: {label_text} {judgment} {attack} {attack_type} {attack_description} {attribute} {width}
    {height}; the answer template also {generated} (the MLLM output) and {box} ("[x1, y1, x2, y2]").
    """

    questions: list[str]
    prompt: str | None = None
    answer: str = "{generated}"
    include_live: bool = True
    per_image: int = 1
    attributes: list[str] | None = None  # reasoning: one named attribute per QA, filled into {attribute}
    box_source: Literal["mllm", "face", "mllm_or_face"] = "mllm_or_face"  # localisation


@dataclass
class MLLMSettings:
    """The multimodal LLM that writes answers (any Hugging Face image-text-to-text model; chat templates applied)."""

    model: str = "llava-hf/llava-1.5-7b-hf"
    max_new_tokens: int = 96
    num_beams: int = 1
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    batch_size: int = 8
    generate_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class ClipSettings:
    """CLIP image-text filter: cosine similarity of the normalised CLIP embeddings (not x100, not x2.5)."""

    model: str | None = "openai/clip-vit-large-patch14"  # None: no CLIP filter
    threshold: float = 0.15
    tasks: list[str] = field(default_factory=lambda: ["description"])
    batch_size: int = 64
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"


_AUGMENT_PROMPT = (
    "Rewrite the following question-answer pair about a face image into {n_new} new, differently worded "
    "question-answer pairs with the same meaning. The face is {label_text}: {attack_description}.\n"
    "Question: {question}\nAnswer: {answer}\n"
    'Reply with JSON only: a list of {n_new} objects with keys "question" and "answer".\n')

_JUDGE_PROMPT = (
    "You check training data for a face anti-spoofing assistant. The image shows {label_text}: "
    "{attack_description}.\nQuestion: {question}\nAnswer: {answer}\n"
    "Does the answer fit the question and the image? Reply Yes or No.\nReply:")


@dataclass
class AugmentSettings:
    """LLM augmentation: ``n_new`` new QA pairs per pair, as validated JSON."""

    enabled: bool = True
    model: str | None = "meta-llama/Meta-Llama-3-8B-Instruct"
    n_new: int = 2
    tasks: list[str] = field(default_factory=lambda: ["description", "coarse", "fine", "reasoning"])
    prompt: str = _AUGMENT_PROMPT
    max_new_tokens: int = 256
    batch_size: int = 8
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"


@dataclass
class JudgeSettings:
    """LLM judge: a pair is mismatched when log P("No") - log P("Yes") > ``margin`` for the next reply token."""

    enabled: bool = True
    model: str | None = None  # None: augment.model
    prompt: str = _JUDGE_PROMPT
    margin: float = 0.0
    batch_size: int = 16


@dataclass
class FilterSettings:
    refusal_phrases: list[str] = field(default_factory=lambda: list(DEFAULT_REFUSALS))
    min_answer_chars: int = 1
    # Localisation boxes are the MLLM's guess or the whole face box (wrong for partial attacks): unverified. They go
    # to unverified_boxes.json and review_boxes.csv, not into training, until a reviewer keeps them
    # (`fasvlm caption import-review` marks kept boxes verified). True trains on them as they are (marked).
    train_unverified_boxes: bool = False


# ---------------------------------------------------------------------------------------------------------------------
# filters (pure functions, tested on crafted inputs)

_NUMBER = r"-?\d+(?:\.\d+)?"
_BOX = re.compile(rf"\[\s*({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\]")


def parse_box(text: str | None, width: int, height: int) -> list[float] | None:
    """The first ``[x1, y1, x2, y2]`` in ``text`` as numbers; four values all in [0, 1] (with a larger image) are
    read as normalised coordinates and scaled to pixels. None when there is no such list."""
    if not text:
        return None
    m = _BOX.search(text)
    if m is None:
        return None
    box = [float(v) for v in m.groups()]
    if all(0.0 <= v <= 1.0 for v in box) and max(width, height) > 1 and any(0 < v < 1 for v in box):
        box = [box[0] * width, box[1] * height, box[2] * width, box[3] * height]
    return box


def validate_box(box: Sequence[float] | None, width: int, height: int) -> str | None:
    """None for a valid box, else why not: ``box_missing``, ``box_degenerate`` (x1 >= x2 or y1 >= y2) or
    ``box_outside_image`` (a coordinate outside [0, width] x [0, height])."""
    if box is None or len(box) != 4 or not all(math.isfinite(v) for v in box):
        return "box_missing"
    x1, y1, x2, y2 = box
    if x1 >= x2 or y1 >= y2:
        return "box_degenerate"
    if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
        return "box_outside_image"
    return None


def format_box(box: Sequence[float]) -> str:
    return "[" + ", ".join(str(int(round(v))) for v in box) + "]"


def refusal_phrase(text: str, phrases: Iterable[str] = DEFAULT_REFUSALS) -> str | None:
    """The first refusal/hedging phrase found in ``text`` (case-insensitive, on word boundaries), or None."""
    norm = " " + re.sub(r"\s+", " ", str(text).lower().replace("\u2019", "'")) + " "
    for phrase in phrases:
        p = phrase.lower().strip()
        if p and re.search(r"(?<![a-z0-9'])" + re.escape(p) + r"(?![a-z0-9])", norm):
            return phrase
    return None


def parse_qa_json(text: str | None, n_new: int) -> tuple[list[dict[str, str]] | None, str | None]:
    """``(pairs, None)`` with the first ``n_new`` {"question", "answer"} pairs of the LLM output, or
    ``(None, reason)``: ``no_json``, ``invalid_json``, ``not_a_list``, ``too_few_pairs``, ``bad_pair``.

    Accepts a bare JSON list, a list inside surrounding text (first "[" to last "]"), or an object holding the list
    under "pairs"/"qa"."""
    if not text or not text.strip():
        return None, "no_json"
    text = text.strip()
    candidates = [text]
    starts = [i for i in (text.find("["), text.find("{")) if i != -1]
    if starts:  # the outermost JSON value starts at the first bracket; a truncated list is not an object inside it
        i = min(starts)
        j = text.rfind("]" if text[i] == "[" else "}")
        if j > i:
            candidates.append(text[i:j + 1])
    data, found = None, False
    for cand in candidates:
        try:
            data, found = json.loads(cand), True
            break
        except (json.JSONDecodeError, ValueError):
            continue
    if not found:
        return None, "invalid_json" if any(c in text for c in "[{") else "no_json"
    if isinstance(data, dict):
        data = data.get("pairs", data.get("qa"))
    if not isinstance(data, list):
        return None, "not_a_list"
    if len(data) < n_new:
        return None, "too_few_pairs"
    pairs = []
    for entry in data[:n_new]:
        if not isinstance(entry, dict):
            return None, "bad_pair"
        q, a = entry.get("question"), entry.get("answer")
        if not isinstance(q, str) or not isinstance(a, str) or not q.strip() or not a.strip():
            return None, "bad_pair"
        pairs.append({"question": q.strip(), "answer": a.strip()})
    return pairs, None


def clip_keep(similarity: float, threshold: float) -> bool:
    """Keep an image-text pair whose CLIP cosine similarity reaches the threshold (NaN: dropped)."""
    return bool(similarity >= threshold)


def judge_keep(p_yes: float, p_no: float, margin: float = 0.0) -> bool:
    """False when the judge finds the pair mismatched: log P(No) - log P(Yes) > margin."""
    eps = 1e-12
    return not (math.log(p_no + eps) - math.log(p_yes + eps) > margin)


_JUDGMENT = re.compile(r"^\s*(yes|no)\b[\s.,!:;]*", re.IGNORECASE)


def _judgment_of(answer: str) -> str | None:
    m = re.match(r"^\s*(Yes|No)\b", answer)
    return m.group(1) if m else None


# ---------------------------------------------------------------------------------------------------------------------
# the pipeline


def _h(*parts: Any) -> int:
    return int.from_bytes(hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest(), "little")


def _safe_name(sample_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "__", sample_id)


def _check_template(text: str, where: str) -> None:
    for name in re.findall(r"\{([^{}]*)\}", text):
        if name not in _TEMPLATE_KEYS:
            raise ValueError(f"{where}: unknown template field {{{name}}}; valid: {', '.join(sorted(_TEMPLATE_KEYS))}")


def _write_crops(out: Path, records: Sequence[SampleRecord], margin: float) -> list[dict]:
    """Face crops as PNG (lossless: spoof cues survive) under ``out/images``; returns per record the image path,
    its size and the face box in crop pixels. Idempotent (existing crops are kept), so it resumes and every rank
    may run it."""
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    infos = []
    for rec in records:
        path = out / f"{_safe_name(rec.sample_id)}.png"
        info: dict[str, Any] = {"image": f"images/{path.name}", "image_path": str(path)}
        try:
            with record_image(rec) as src:  # the file, or the crop embedded in a `datasets` folder
                w0, h0 = src.size
            box = resolve_bbox(rec, w0, h0)
            x1, y1, x2, y2 = (round(v) for v in square_box(box, w0, h0, margin))
            if not path.is_file():
                crop = load_face(rec.path, rec, margin)
                write_atomic(path, lambda p, c=crop: c.save(p, format="PNG"))
            with Image.open(path) as img:
                info["width"], info["height"] = img.size
            if box is None:
                face = [0, 0, info["width"], info["height"]]
            else:
                bx, by, bw, bh = box
                face = [bx - x1, by - y1, bx + bw - x1, by + bh - y1]
                face = [max(0, face[0]), max(0, face[1]), min(info["width"], face[2]), min(info["height"], face[3])]
            info["face_box"] = face
        except (OSError, ValueError, SyntaxError) as err:
            info["error"] = f"{type(err).__name__}: {err}"
        infos.append(info)
    return infos


def _context(rec: SampleRecord, info: dict, captions: dict[str, str] | None) -> dict[str, Any]:
    attack = rec.attack
    description = (captions or {}).get(rec.sample_id) or compose_caption(attack, rec.illumination, rec.environment,
                                                                        rec.camera_quality)
    return {"label_text": "a real face" if rec.label == 0 else "a presentation attack",
            "judgment": "Yes" if rec.label == 0 else "No", "attack": attack,
            "attack_type": ATTACK_TYPES.get(attack, attack.replace("_", " ")),
            "attack_description": description, "width": info.get("width"), "height": info.get("height")}


def _plan(records: Sequence[SampleRecord], infos: Sequence[dict], tasks: dict[str, TaskSpec],
          captions: dict[str, str] | None, seed: int) -> list[dict]:
    """One QA row per (image, task, k): the question, the MLLM prompt and the template context."""
    rows = []
    for rec, info in zip(records, infos):
        if "error" in info:
            continue
        ctx = _context(rec, info, captions)
        for task, spec in tasks.items():
            if rec.label == 0 and not spec.include_live:
                continue
            for k in range(spec.per_image):
                c = dict(ctx)
                if spec.attributes:
                    c["attribute"] = spec.attributes[_h(seed, rec.sample_id, task, k, "attr") % len(spec.attributes)]
                question = spec.questions[_h(seed, rec.sample_id, task, k) % len(spec.questions)].format(**c)
                c["question"] = question
                rows.append({"key": f"{rec.sample_id}#{task}#{k}", "sample_id": rec.sample_id, "task": task,
                             "label": int(rec.label), "attack": rec.attack, "image": info["image"],
                             "path": info["image_path"], "width": info["width"], "height": info["height"],
                             "face_box": info["face_box"], "question": question,
                             "prompt": spec.prompt.format(**c) if spec.prompt else None, "context": c,
                             "origin": "mllm"})
    return rows


def _clean_generated(text: str | None, task: str) -> str:
    text = re.sub(r"\s+", " ", text or "").strip()
    if task in JUDGMENT_TASKS:
        text = _JUDGMENT.sub("", text, count=1).strip()  # the judgment comes from the label, not from the MLLM
    return text


def _compose(row: dict, spec: TaskSpec, generated: str | None, filters: FilterSettings) -> tuple[str | None, str | None]:
    """The answer of a planned row from the MLLM output: ``(answer, None)`` or ``(None, drop reason)``."""
    ctx = dict(row["context"])
    gen = _clean_generated(generated, row["task"])
    ctx["generated"] = gen
    if row["task"] == "localisation":
        box, reason = None, None
        if spec.box_source in ("mllm", "mllm_or_face"):
            box = parse_box(generated, row["width"], row["height"])
            reason = validate_box(box, row["width"], row["height"])
            if reason and spec.box_source == "mllm":
                return None, reason
        if spec.box_source == "face" or reason:
            box = row["face_box"]
            if validate_box(box, row["width"], row["height"]):
                return None, "box_invalid_face_box"
        ctx["box"] = format_box(box)
        row["box"] = [float(int(round(v))) for v in box]  # as written in the answer (conversations.hf's `box`)
        row["box_from"] = "mllm" if spec.box_source != "face" and not reason else "face"
        row["box_reason"] = reason
        row["box_verified"] = False  # nobody has checked it against the image (a reviewer may: import_review)
        ctx["generated"] = ""
    answer = re.sub(r"\s+", " ", spec.answer.format(**ctx)).strip()
    if len(answer) < filters.min_answer_chars or (spec.answer.strip() == "{generated}" and not gen):
        return None, "empty_answer"
    phrase = refusal_phrase(answer, filters.refusal_phrases)
    if phrase:
        return None, f"refusal:{phrase}"
    return answer, None


def build_instructions(out: str | Path, data: DataSettings, trainer: TrainerSettings, tasks: dict[str, TaskSpec],
                       mllm: MLLMSettings, clip: ClipSettings, augment: AugmentSettings, judge: JudgeSettings,
                       filters: FilterSettings, captions: str | None = None, review: str | None = "review.csv",
                       seed: int = 0, shard_size: int = 256, callbacks: Iterable[Callback] = ()) -> dict[str, Any]:
    """Run the instruction-data pipeline (module docstring) into ``out``; returns the statistics."""
    import pandas as pd

    unknown = set(tasks) - set(TASKS)
    if unknown:
        raise ValueError(f"unknown task(s) {sorted(unknown)}; valid: {', '.join(TASKS)}")
    for name, spec in tasks.items():
        if not spec.questions:
            raise ValueError(f"task {name}: give at least one question template")
        for i, text in enumerate([*spec.questions, spec.prompt or "", spec.answer]):
            _check_template(text, f"tasks.{name} (template {i})")
        if name == "reasoning" and "{attribute}" in "".join(spec.questions + [spec.prompt or ""]) and not spec.attributes:
            raise ValueError("tasks.reasoning uses {attribute}: list the attributes (tasks.reasoning.attributes)")
    _check_template(augment.prompt, "augment.prompt")
    _check_template(judge.prompt, "judge.prompt")
    out = Path(out)
    callbacks = list(callbacks)
    stats: dict[str, Any] = {"config": {"mllm": asdict(mllm), "clip": asdict(clip), "augment": asdict(augment),
                                        "judge": asdict(judge)}}
    dropped: list[dict] = []

    def drop(row: dict, reason: str, stage: str) -> None:
        dropped.append({"key": row["key"], "task": row["task"], "stage": stage, "reason": reason,
                        "question": row.get("question"), "answer": row.get("answer"), "image": row.get("image")})

    records = select_records(data.domains)
    table = load_captions(captions) if captions else None
    infos = _write_crops(out / "images", records, data.margin)
    unreadable = [i for i in infos if "error" in i]
    stats["images"] = {"records": len(records), "unreadable": len(unreadable)}
    planned = _plan(records, infos, tasks, table, seed)
    stats["planned"] = dict(Counter(r["task"] for r in planned))
    say(f"instruct: {len(records)} images, {len(planned)} QA prompts ({stats['planned']}) -> {out}")

    # 1: MLLM answers
    gen_items = [{k: r[k] for k in ("key", "path", "prompt", "task", "sample_id")} for r in planned if r["prompt"]]
    generated: dict[str, str | None] = {}
    if gen_items:
        def mllm_factory():

            return ImageTextModel(mllm.model, output_key="generated", max_new_tokens=mllm.max_new_tokens,
                                  num_beams=mllm.num_beams, dtype=resolve_dtype(mllm.dtype),
                                  generate_kwargs=mllm.generate_kwargs)

        frame = run_predict_stage(out / "1_generate", gen_items, mllm_factory,
                                  lambda m: m.collate("", mode="generate"), trainer, margin=None,
                                  batch_size=mllm.batch_size, num_workers=data.num_workers, shard_size=shard_size,
                                  callbacks=callbacks)
        generated = {k: (None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
                     for k, v in zip(frame["key"], frame["generated"])}

    # validate: boxes, empty answers, refusals
    rows = []
    for r in planned:
        answer, reason = _compose(r, tasks[r["task"]], generated.get(r["key"]), filters)
        if reason:
            r["answer"] = generated.get(r["key"])
            drop(r, reason, "validate")
            continue
        r["answer"] = answer
        rows.append(r)
    box_from = Counter(r.get("box_from") for r in rows if r["task"] == "localisation")
    stats["validate"] = {"kept": len(rows), "dropped": dict(Counter(d["reason"].split(":")[0] for d in dropped)),
                         "localisation_box_from": {str(k): v for k, v in box_from.items()}}

    # 2: CLIP filter
    if clip.model and clip.tasks:
        items = [{"key": r["key"], "path": r["path"], "text": r["answer"]} for r in rows if r["task"] in clip.tasks]
        if items:
            frame = run_predict_stage(out / "2_clip", items, lambda: CLIPScorer(clip.model, clip.dtype),
                                      lambda m: m.collate(), trainer, margin=None, batch_size=clip.batch_size,
                                      num_workers=data.num_workers, shard_size=shard_size, callbacks=callbacks)
            scores = dict(zip(frame["key"], frame["clip_score"].astype(float)))
            kept = []
            n_drop = 0
            for r in rows:
                if r["key"] in scores:
                    r["clip_score"] = scores[r["key"]]
                    if not clip_keep(r["clip_score"], clip.threshold):
                        drop(r, f"clip_below_{clip.threshold}", "clip")
                        n_drop += 1
                        continue
                kept.append(r)
            stats["clip"] = {"scored": len(items), "dropped": n_drop, "threshold": clip.threshold,
                             "mean_score": float(pd.Series(list(scores.values())).mean())}
            rows = kept

    # 3: LLM augmentation
    if augment.enabled and augment.model and augment.tasks:
        sources = [r for r in rows if r["task"] in augment.tasks]
        items = [{"key": r["key"], "prompt": augment.prompt.format(**{**r["context"], "question": r["question"],
                                                                      "answer": r["answer"], "n_new": augment.n_new})}
                 for r in sources]
        malformed: Counter = Counter()
        rejected: Counter = Counter()
        new_rows = []
        if items:
            frame = run_predict_stage(out / "3_augment", items,
                                      lambda: CausalLMModel(augment.model, "generate", augment.max_new_tokens,
                                                            augment.dtype),
                                      lambda m: m.collate(), trainer, batch_size=augment.batch_size,
                                      num_workers=data.num_workers, shard_size=shard_size, callbacks=callbacks,
                                      dataset_factory=lambda its, _: TextItems(its))
            texts = dict(zip(frame["key"], frame["text"]))
            for r in sources:
                pairs, error = parse_qa_json(texts.get(r["key"]), augment.n_new)
                if error:
                    malformed[error] += 1
                    dropped.append({"key": r["key"] + "#aug", "task": r["task"], "stage": "augment",
                                    "reason": f"malformed_json:{error}", "question": None,
                                    "answer": texts.get(r["key"]), "image": r["image"]})
                    continue
                seen = {(r["question"], r["answer"])}
                for j, pair in enumerate(pairs):
                    new = {**r, "key": f"{r['key']}#aug{j}", "question": pair["question"], "answer": pair["answer"],
                           "origin": "augmented"}
                    new.pop("clip_score", None)
                    reason = None
                    if (pair["question"], pair["answer"]) in seen:
                        reason = "duplicate"
                    elif r["task"] in JUDGMENT_TASKS and _judgment_of(pair["answer"]) != _judgment_of(r["answer"]):
                        reason = "judgment_changed"
                    elif refusal_phrase(pair["answer"], filters.refusal_phrases):
                        reason = "refusal"
                    if reason:
                        rejected[reason] += 1
                        drop(new, reason, "augment")
                        continue
                    seen.add((pair["question"], pair["answer"]))
                    new_rows.append(new)
        stats["augment"] = {"pairs_in": len(items), "malformed": sum(malformed.values()),
                            "malformed_by_kind": dict(malformed), "new_pairs_kept": len(new_rows),
                            "new_pairs_rejected": dict(rejected)}
        rows = rows + new_rows

    # 4: LLM judge
    judge_model = judge.model or augment.model
    if judge.enabled and judge_model and rows:
        items = [{"key": r["key"], "prompt": judge.prompt.format(**{**r["context"], "question": r["question"],
                                                                    "answer": r["answer"]})} for r in rows]
        frame = run_predict_stage(out / "4_judge", items, lambda: CausalLMModel(judge_model, "judge"),
                                  lambda m: m.collate(), trainer, batch_size=judge.batch_size,
                                  num_workers=data.num_workers, shard_size=shard_size, callbacks=callbacks,
                                  dataset_factory=lambda its, _: TextItems(its))
        probs = {k: (y, n) for k, y, n in zip(frame["key"], frame["p_yes"], frame["p_no"])}
        kept, mismatched = [], Counter()
        for r in rows:
            p_yes, p_no = probs[r["key"]]
            r["judge_margin"] = float(math.log(p_yes + 1e-12) - math.log(p_no + 1e-12))
            if judge_keep(p_yes, p_no, judge.margin):
                kept.append(r)
            else:
                mismatched[r["task"]] += 1
                drop(r, "judge_mismatch", "judge")
        stats["judge"] = {"judged": len(rows), "mismatched": sum(mismatched.values()),
                          "mismatched_per_task": dict(mismatched)}
        rows = kept

    unverified = [r for r in rows if r["task"] == "localisation" and not r.get("box_verified")]
    if unverified and not filters.train_unverified_boxes:
        rows = [r for r in rows if not (r["task"] == "localisation" and not r.get("box_verified"))]
        unverified.sort(key=lambda r: r["key"])
    stats["localisation_unverified"] = {"boxes": len(unverified), "in_training": filters.train_unverified_boxes}
    rows.sort(key=lambda r: r["key"])
    entries = to_llava(rows)
    stats["output"] = {"conversations": len(entries), "per_task": dict(Counter(e["task"] for e in entries)),
                       "per_origin": dict(Counter(e["origin"] for e in entries)), "dropped": len(dropped)}
    if rank() == 0:
        write_atomic(out / "conversations.json", lambda p: p.write_text(json.dumps(entries, indent=1) + "\n"))
        boxes = {r["key"]: r["box"] for r in rows if r.get("box")}
        write_instructions(out, entries, boxes)  # <out>/conversations.hf: the same entries, typed, with a card
        write_atomic(out / "dropped.jsonl",
                      lambda p: p.write_text("".join(json.dumps(d, default=str) + "\n" for d in dropped)))
        if review:
            export_review(out / "conversations.json", out / review)
        if unverified and not filters.train_unverified_boxes:
            write_atomic(out / "unverified_boxes.json",
                         lambda p: p.write_text(json.dumps(to_llava(unverified), indent=1) + "\n"))
            write_instructions(out, to_llava(unverified), {r["key"]: r["box"] for r in unverified if r.get("box")},
                               name="unverified_boxes")
            export_review(out / "unverified_boxes.json", out / "review_boxes.csv")
        write_json(out / "stats.json", stats)
    barrier()
    say(f"instruct: {len(entries)} conversations {stats['output']['per_task']}; {len(dropped)} dropped "
         f"(see {out / 'dropped.jsonl'}); stats: {out / 'stats.json'}")
    return stats


# ---------------------------------------------------------------------------------------------------------------------
# human review


_REVIEW_COLUMNS = ("id", "task", "sample_id", "label", "attack", "origin", "image", "image_path", "width", "height",
                   "question", "answer", "keep", "comment")


def export_review(conversations: str | Path, out: str | Path) -> Path:
    """Write a conversations file as a review table (.csv or .jsonl): one row per conversation with editable
    ``question``/``answer``, ``keep`` (1; set 0 to drop) and ``comment``; ``image_path`` is absolute for viewing."""
    import pandas as pd

    conversations, out = Path(conversations), Path(out)
    rows = []
    for e in load_llava(conversations):
        turns = e["conversations"]
        if len(turns) != 2:
            raise ValueError(f"{conversations}: entry {e.get('id')} has {len(turns)} turns; review export handles "
                             "single-turn conversations")
        question = turns[0]["value"].replace(IMAGE_TOKEN, "", 1).lstrip("\n")
        rows.append({"id": e["id"], "task": e.get("task"), "sample_id": e.get("sample_id"), "label": e.get("label"),
                     "attack": e.get("attack"), "origin": e.get("origin"), "image": e["image"],
                     "image_path": str((conversations.parent / e["image"]).resolve()), "width": e.get("width"),
                     "height": e.get("height"), "question": question, "answer": turns[1]["value"], "keep": 1,
                     "comment": ""})
    frame = pd.DataFrame(rows, columns=list(_REVIEW_COLUMNS))
    if out.suffix == ".csv":
        write_atomic(out, lambda p: frame.to_csv(p, index=False))
    elif out.suffix == ".jsonl":
        write_atomic(out, lambda p: frame.to_json(p, orient="records", lines=True, force_ascii=False))
    else:
        raise ValueError(f"review file {out}: use a .csv or .jsonl name")
    return out


def _truthy(value: Any) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True  # an empty cell keeps the row
    return str(value).strip().lower() not in ("0", "false", "no", "n", "drop", "")


def import_review(review: str | Path, out: str | Path, filters: FilterSettings | None = None) -> dict[str, Any]:
    """Read a reviewed table (from :func:`export_review`) and write the kept rows as a LLaVA conversations file.

    Rows with ``keep`` 0/false/no are dropped; edited questions and answers are taken as they are, then checked again
    (empty answers, refusals, localisation boxes inside the image); image paths are written relative to ``out``. The
    same entries go to the ``datasets`` folder ``<out stem>.hf`` beside ``out`` (kept boxes: ``box_verified``)."""
    import os

    import pandas as pd

    review, out = Path(review), Path(out)
    if review.suffix == ".csv":
        frame = pd.read_csv(review, dtype={"id": str, "sample_id": str, "question": str, "answer": str},
                            keep_default_na=False, na_values=[])
    elif review.suffix == ".jsonl":
        frame = pd.read_json(review, lines=True, dtype={"id": str, "sample_id": str})
    else:
        raise ValueError(f"review file {review}: expected .csv or .jsonl (written by `fasvlm caption export-review`)")
    missing = {"id", "image_path", "question", "answer"} - set(frame.columns)
    if missing:
        raise ValueError(f"{review}: missing column(s) {sorted(missing)}; export it with `fasvlm caption export-review`")
    filters = filters or FilterSettings()
    rows, reasons = [], Counter()
    for r in frame.to_dict("records"):
        if "keep" in r and not _truthy(r["keep"]):
            reasons["reviewer"] += 1
            continue
        answer, question = str(r["answer"]).strip(), str(r["question"]).strip()
        reason = None
        if not answer or not question:
            reason = "empty"
        elif refusal_phrase(answer, filters.refusal_phrases):
            reason = "refusal"
        elif r.get("task") == "localisation":
            w, h = r.get("width"), r.get("height")
            if not w or not h or (isinstance(w, float) and math.isnan(w)):
                from PIL import Image

                with Image.open(r["image_path"]) as img:
                    w, h = img.size
            reason = validate_box(parse_box(answer, int(w), int(h)), int(w), int(h))
        if reason:
            reasons[reason] += 1
            continue
        image = os.path.relpath(Path(r["image_path"]).resolve(), out.resolve().parent)
        rows.append({"key": str(r["id"]), "image": image, "question": question, "answer": answer,
                     "task": r.get("task"), "sample_id": str(r.get("sample_id")),
                     "box_verified": True if r.get("task") == "localisation" else None,  # a reviewer kept it
                     "label": int(r["label"]) if str(r.get("label", "")).strip() not in ("", "nan", "None") else -1,
                     "attack": r.get("attack"), "origin": r.get("origin") or "reviewed",
                     "width": int(r["width"]) if str(r.get("width", "")).strip() not in ("", "nan", "None") else None,
                     "height": int(r["height"]) if str(r.get("height", "")).strip() not in ("", "nan", "None") else None})
    entries = to_llava(rows)
    write_atomic(out, lambda p: p.write_text(json.dumps(entries, indent=1) + "\n"))
    boxes = {r["key"]: parse_box(r["answer"], r["width"], r["height"]) for r in rows
             if r["task"] == "localisation" and r["width"] and r["height"]}
    write_instructions(out.parent, entries, {k: b for k, b in boxes.items() if b}, name=out.stem)  # <stem>.hf
    result = {"rows": len(frame), "kept": len(entries), "dropped": dict(reasons), "out": str(out)}
    print(f"import-review: {result}", flush=True)
    return result
