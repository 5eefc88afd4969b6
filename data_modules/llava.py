"""The LLaVA conversation format: the ``<image>`` placeholder and the JSON/JSONL files of conversations.

An entry is ``{"id", "image", "conversations": [{"from": "human", "value": "<image>\\n..."}, {"from": "gpt", "value":
...}, ...]}`` plus optional fields (``task``, ``sample_id``, ``label``, ``attack``, ``origin`` ...). ``fasvlm caption
instruct`` writes such files; :class:`~fasvlm.data_modules.conversations.ConversationDataModule` reads them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from .hf_datasets import is_folder, read_instruction_entries

__all__ = ["IMAGE_TOKEN", "to_llava", "load_llava"]

IMAGE_TOKEN = "<image>"


def to_llava(rows: Sequence[dict]) -> list[dict]:
    """LLaVA conversation entries (one single-turn conversation per QA row)."""
    out = []
    for r in rows:
        if not str(r["answer"]).strip():
            raise ValueError(f"{r['key']}: empty answer (every sample needs at least one supervised answer token)")
        entry = {"id": r["key"], "image": r["image"],
                 "conversations": [{"from": "human", "value": f"{IMAGE_TOKEN}\n{r['question']}"},
                                   {"from": "gpt", "value": r["answer"]}],
                 "task": r["task"], "sample_id": r["sample_id"], "label": int(r["label"]), "attack": r["attack"],
                 "origin": r.get("origin", "mllm"), "width": r.get("width"), "height": r.get("height")}
        for k in ("clip_score", "judge_margin", "box_from", "box_verified"):
            v = r.get(k)
            if v is not None and not (isinstance(v, float) and math.isnan(v)):
                entry[k] = v
        out.append(entry)
    return out


def load_llava(path: str | Path) -> list[dict]:
    """A LLaVA conversation file (JSON list, or JSONL with one entry per line), or the ``datasets`` folder of
    instruction data that ``fasvlm caption instruct`` writes beside it (``conversations.hf``)."""
    path = Path(path)
    if is_folder(path):
        return read_instruction_entries(path)
    if not path.is_file():
        raise FileNotFoundError(f"conversation file {path} not found (write it with `fasvlm caption instruct`)")
    text = path.read_text()
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    data = json.loads(text)
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of LLaVA entries ({{'id', 'image', 'conversations'}})")
    return data
