"""LLaVA-format conversations as I-FAS multi-task training data: :class:`ConversationDataModule`.

Reads the file ``fasvlm caption instruct`` writes (or any LLaVA JSON/JSONL: ``[{"id", "image", "conversations":
[{"from": "human", "value": "<image>\\n..."}, {"from": "gpt", "value": ...}, ...]}]``) and the images it names, or the
``datasets`` folder of the same entries (``conversations.hf``, images embedded or by path).
Every human -> gpt turn pair becomes one training sample (a multi-turn entry gives one sample per turn; earlier turns
are not part of the prompt, since the I-FAS prompt holds one question).

Training batches follow the FASDataModule batch contract (``pixel_values``, ``label`` ...; ``label`` is -1 where the
entry has none) plus::

    questions  list[str]   the human turn without the image token
    answers    list[str]   the gpt turn; IFASSystem applies the Lopsided LM loss when it starts with "Yes"/"No" and
                           the standard LM loss over the answer tokens otherwise
    tasks      list[str]   the entry's task (description, coarse, fine, reasoning, localisation) or "unknown"
    ids        list[str]   the entry id (+ "#t<turn>" for later turns)

Evaluation is FAS scoring, as in FASDataModule: loader 0 ("source") holds the images of the held-out conversations
(``val`` file, or a ``val_fraction`` of the images), the others the ``targets`` domains (DomainSpec, read by the
dataset adapters); ``val_names``/``test_names``/``source_name`` name them for the metrics callback.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import DataLoader, Dataset

from .datamodule import (
    DomainSpec,
    FASSampler,
    eval_loaders,
    fas_collate,
    make_loader,
    model_image_spec,
    sampler_resume_state,
    select_records,
)
from .hf_datasets import HF_SOURCE, open_image
from .llava import IMAGE_TOKEN, load_llava
from .record import SampleRecord
from .taxonomy import ATTACK_NAMES, content_index
from .transforms import FaceTransform, ImageSpec

__all__ = ["ConversationTurn", "conversation_turns", "ConversationDataset", "conversation_collate",
           "ConversationDataModule"]

log = logging.getLogger(__name__)
SOURCE_NAME = "source"


def _turn(entry: dict, index: int, question: str, answer: str, image: str) -> dict[str, Any]:
    label = entry.get("label")
    label = int(label) if label is not None and str(label).lstrip("-").isdigit() else -1
    attack = entry.get("attack")
    if attack not in ATTACK_NAMES:
        attack = "live" if label == 0 else "other" if label == 1 else "unknown"
    return {"id": str(entry.get("id", "")) + (f"#t{index}" if index else ""), "image": image,
            HF_SOURCE: entry.get(HF_SOURCE),  # [folder, row] when the image is embedded in a `datasets` folder
            "question": question.replace(IMAGE_TOKEN, "").strip(), "answer": str(answer).strip(),
            "task": entry.get("task") or "unknown", "label": label, "attack": attack,
            "sample_id": str(entry.get("sample_id") or entry.get("id") or image)}


ConversationTurn = dict  # keys: id, image (absolute path), hf_source, question, answer, task, label, attack, sample_id


def conversation_turns(entries: Sequence[dict], image_root: str | Path) -> list[ConversationTurn]:
    """Split LLaVA entries into (human, gpt) turn pairs with absolute image paths; raise on malformed entries and
    on answers with no text (every sample must carry at least one supervised answer token)."""
    root = Path(image_root)
    turns = []
    for n, entry in enumerate(entries):
        conv = entry.get("conversations")
        where = f"entry {n} (id {entry.get('id')!r})"
        if not isinstance(conv, list) or len(conv) < 2 or "image" not in entry:
            raise ValueError(f"{where}: expected 'image' and 'conversations' with human/gpt turns")
        image = Path(entry["image"])
        image = str(image if image.is_absolute() else root / image)
        pairs = [(conv[i], conv[i + 1]) for i in range(0, len(conv) - 1, 2)]
        for k, (human, gpt) in enumerate(pairs):
            if human.get("from") != "human" or gpt.get("from") != "gpt":
                raise ValueError(f"{where}: turn {k} is {human.get('from')!r} -> {gpt.get('from')!r}; "
                                 "expected human -> gpt")
            turn = _turn(entry, k, str(human.get("value", "")), str(gpt.get("value", "")), image)
            if not turn["answer"]:
                raise ValueError(f"{where}: turn {k} has an empty answer (no supervised token)")
            turns.append(turn)
    return turns


class ConversationDataset(Dataset):
    """Conversation turns -> transformed image + text fields. Unreadable images are skipped and reported in the
    batch's ``skipped`` list (replaced by the next turn, so the batch size stays fixed), as in FASDataset."""

    def __init__(self, turns: Sequence[ConversationTurn], transform: FaceTransform):
        self.turns, self.transform = list(turns), transform

    def __len__(self) -> int:
        return len(self.turns)

    def _load(self, index: int, seed: int | None) -> dict[str, Any]:
        import numpy as np
        t = self.turns[index]
        with open_image(t["image"], t.get(HF_SOURCE)) as img:
            img.load()
        rng = np.random.default_rng(seed) if seed is not None else None
        domain = t["sample_id"].split("/", 1)[0]
        return {"pixel_values": self.transform(img, None, rng), "label": t["label"],
                "content": content_index(t["attack"]) if t["attack"] in ATTACK_NAMES else -1,
                "illumination": -1, "environment": -1, "camera_quality": -1, "attack": t["attack"],
                "domain": domain, "video": t["sample_id"].rsplit("/", 1)[0], "sample_id": t["sample_id"],
                "illumination_name": None, "environment_name": None, "camera_quality_name": None,
                "question": t["question"], "answer": t["answer"], "task": t["task"], "id": t["id"]}

    def __getitem__(self, item) -> dict[str, Any]:
        index, seed = item if isinstance(item, tuple) else (item, None)
        skipped = []
        for attempt in range(10):
            i = (index + attempt) % len(self.turns)
            try:
                sample = self._load(i, seed)
            except (OSError, ValueError, SyntaxError) as err:
                log.warning("skipping unreadable image %s (%s: %s)", self.turns[i]["image"], type(err).__name__, err)
                skipped.append(self.turns[i]["image"])
                continue
            sample["skipped"] = skipped
            return sample
        return {"skipped": skipped}


def conversation_collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """FAS batch contract (``fas_collate``) + ``questions``, ``answers``, ``tasks``, ``ids``."""
    batch = fas_collate(items)
    ok = [it for it in items if "pixel_values" in it]
    batch.update({"questions": [it["question"] for it in ok], "answers": [it["answer"] for it in ok],
                  "tasks": [it["task"] for it in ok], "ids": [it["id"] for it in ok]})
    return batch


def _records_from_turns(turns: Sequence[ConversationTurn]) -> list[SampleRecord]:
    """One evaluation record per image with a known label (the image is the stored face crop: no box)."""
    seen, records = set(), []
    for t in turns:
        if t["label"] not in (0, 1) or t["image"] in seen:
            continue
        seen.add(t["image"])
        parts = t["sample_id"].split("/")
        domain = parts[0] if len(parts) >= 3 else "conversations"
        video = "/".join(parts[1:-1]) if len(parts) >= 3 else t["sample_id"]
        attack = t["attack"] if t["attack"] in ATTACK_NAMES else ("live" if t["label"] == 0 else "other")
        records.append(SampleRecord(path=t["image"], label=t["label"], attack=attack, domain=domain,
                                    subject=video, video=video, split="val",
                                    extra={HF_SOURCE: t[HF_SOURCE]} if t.get(HF_SOURCE) else {}))
    return records


def _held_out(sample_ids: set[str], fraction: float, seed: int) -> set[str]:
    def key(s: str) -> float:
        return int.from_bytes(hashlib.blake2b(f"{seed}:{s}".encode(), digest_size=8).digest(), "little") / 2**64

    if len(sample_ids) < 2:
        raise ValueError("cannot hold out validation images from fewer than 2 images: give `val`")
    held = {s for s in sample_ids if key(s) < fraction} or {min(sample_ids, key=key)}
    if held == sample_ids:
        held.discard(max(sample_ids, key=key))
    return held


class ConversationDataModule(L.LightningDataModule):
    """LLaVA conversations for I-FAS multi-task training, FAS scoring on held-out images and target domains.

    Args:
        train: LLaVA conversation file (.json list or .jsonl) from ``fasvlm caption instruct``, or its ``datasets``
            folder (``conversations.hf``).
        targets: FAS evaluation domains (one val/test dataloader each), as in FASDataModule.
        val: held-out conversation file for the source validation loader; None: ``val_fraction`` of the training
            images (by sample id, deterministic by ``seed``) are held out of training.
        image_root: directory the entries' relative ``image`` paths start from; None: the train file's directory.
        tasks: train only on these tasks (None: all).
        augment: seeded crop jitter and flip on training images (FaceTransform).
    """

    def __init__(
        self,
        train: str,
        targets: list[DomainSpec],
        val: str | None = None,
        image_root: str | None = None,
        tasks: list[str] | None = None,
        val_fraction: float = 0.1,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        image_size: int | None = None,
        margin: float = 0.2,
        augment: bool = True,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        seed: int = 0,
    ):
        super().__init__()
        names = [t.name for t in targets]
        if len(set(names)) != len(names) or SOURCE_NAME in names:
            raise ValueError(f"target names must be unique and not {SOURCE_NAME!r}: {names}")
        self.train_path, self.val_path, self.targets = train, val, list(targets)
        self.image_root, self.tasks, self.val_fraction = image_root, tasks, val_fraction
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.image_size, self.margin, self.augment = num_workers, image_size, margin, augment
        self.pin_memory, self.persistent_workers, self.seed = pin_memory, persistent_workers, seed
        self.source_name = SOURCE_NAME
        self.val_names = [SOURCE_NAME, *names]
        self.test_names = [SOURCE_NAME, *names]
        self.predict_names = names
        self._turns: dict[str, list[ConversationTurn]] | None = None
        self._records: dict[str, list[SampleRecord]] = {}
        self._train_sampler: FASSampler | None = None
        self._sampler_state: dict[str, int] | None = None

    # -- data ---------------------------------------------------------------------------------------------------------

    def _read(self, path: str) -> list[ConversationTurn]:
        root = self.image_root or str(Path(path).parent)
        turns = conversation_turns(load_llava(path), root)
        if self.tasks is not None:
            turns = [t for t in turns if t["task"] in self.tasks]
        if not turns:
            raise ValueError(f"{path}: no conversation turns" + (f" for tasks {self.tasks}" if self.tasks else ""))
        return turns

    def turns(self) -> dict[str, list[ConversationTurn]]:
        """``{"train": [...], "source": [...]}`` conversation turns (built once)."""
        if self._turns is None:
            train = self._read(self.train_path)
            if self.val_path:
                val = self._read(self.val_path)
            else:
                held = _held_out({t["sample_id"] for t in train}, self.val_fraction, self.seed)
                val = [t for t in train if t["sample_id"] in held]
                train = [t for t in train if t["sample_id"] not in held]
            self._turns = {"train": train, SOURCE_NAME: val}
            counts = Counter(t["task"] for t in train)
            msg = (f"conversations: {len(train)} training turns {dict(sorted(counts.items()))}, "
                   f"{len(val)} held-out turns")
            log.info(msg)
            if self.trainer is None or self.trainer.is_global_zero:
                print(msg, flush=True)
        return self._turns

    def _image_spec(self) -> ImageSpec:
        return model_image_spec(self.trainer, self.image_size)

    def setup(self, stage: str | None = None) -> None:
        turns = self.turns()
        if not self._records:
            source = _records_from_turns(turns[SOURCE_NAME])
            if not source:
                raise ValueError("the held-out conversations have no image with a label (0 live, 1 attack): the "
                                 "source validation set is empty; give `val` or entries with 'label'")
            self._records = {SOURCE_NAME: source}
            for spec in self.targets:
                self._records[spec.name] = select_records([spec])
        spec = self._image_spec()
        self._train_tf = FaceTransform(spec.size, spec.mean, spec.std, train=self.augment, margin=self.margin)
        self._eval_tf = FaceTransform(spec.size, spec.mean, spec.std, train=False, margin=self.margin)

    def _loader(self, dataset: Dataset, batch_size: int, sampler, collate=fas_collate) -> DataLoader:
        return make_loader(dataset, batch_size, sampler, collate=collate, num_workers=self.num_workers, seed=self.seed,
                           pin_memory=self.pin_memory, persistent_workers=self.persistent_workers)

    def train_dataloader(self) -> DataLoader:
        turns = self.turns()["train"]
        self._train_sampler = FASSampler(len(turns), seed=self.seed)
        if self._sampler_state is not None:
            self._train_sampler.load_state_dict(self._sampler_state)
            self._sampler_state = None
        return self._loader(ConversationDataset(turns, self._train_tf), self.batch_size, self._train_sampler,
                            conversation_collate)

    def _eval_loaders(self, names: Sequence[str]) -> list[DataLoader]:
        return eval_loaders(self._records, names, self._eval_tf, self.eval_batch_size, self._loader)

    def val_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders(self.val_names)

    def test_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders(self.test_names)

    def predict_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders(self.predict_names)

    # -- exact resume (as FASDataModule) ------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return sampler_resume_state(self.trainer, self._train_sampler, self.batch_size)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._sampler_state = state.get("train_sampler")
