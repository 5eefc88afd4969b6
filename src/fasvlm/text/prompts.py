"""I-FAS prompting: chat template, question, answers, caption templates, and token-level composition.

I-FAS casts FAS as single-turn VQA (I-FAS paper, Sec. "Data format"): the question T_Q is fixed, the answer
T_A = [T_Judgment, T_Interpretation] is "Yes"/"No" followed by ". This is {caption}".

Token-level rules (``IFASPrompt``), written so that any Hugging Face tokenizer gives exact spans:

- the chat template is split at ``<image>``; the text before it (after the tokenizer's BOS, if it has one) and the text
  after it are tokenised separately with ``add_special_tokens=False``; the visual tokens go in between;
- the answer follows "ASSISTANT:" with one space. The judgment (" Yes" / " No") and the interpretation
  (". This is {caption}" + EOS) are tokenised **separately** and concatenated, so the judgment span is exact whatever the
  tokenizer merges. Tokens that " Yes" and " No" share at their start (a lone "▁" or "Ġ" from SentencePiece/Llama-style
  tokenizers that split the space off) carry no information; they are moved to the end of the prompt (no loss), and the
  judgment span is the rest. So for byte-level BPE with leading-space merging (GPT-2/OPT) the judgment is the single
  token "ĠYes"; for WordPiece it is "Yes"/"yes"; for Metaspace tokenizers it is "▁Yes" (or whatever follows the shared
  pieces);
- the score token (``IFASPrompt.yes_id``) is the first judgment token of " Yes": exactly the token the training answers
  start with, predicted at the first answer position.

Caption templates (used when no captions table is given) compose a sentence from the attack type and the style
attributes: ``compose_caption("pc", environment="indoor")`` →
"a face replayed on a PC screen, with a visible moire pattern and screen bezel, captured indoors".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from fasvlm.data_modules.llava import IMAGE_TOKEN
from fasvlm.data_modules.taxonomy import EXTRA_ATTACKS, check_attack
from fasvlm.text.attacks import ATTACK_CAPTIONS

__all__ = [
    "SYSTEM_PROMPT",
    "CHAT_TEMPLATE",
    "IMAGE_TOKEN",
    "QUESTION",
    "YES",
    "NO",
    "ATTACK_CAPTIONS",
    "judgment_for",
    "interpretation_for",
    "answer_text",
    "compose_caption",
    "load_captions",
    "batch_captions",
    "split_judgment",
    "ANSWER_SEPARATOR",
    "AnswerTokens",
    "IFASPrompt",
]

SYSTEM_PROMPT = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
                 "detailed, and polite answers to the user's questions.")
CHAT_TEMPLATE = SYSTEM_PROMPT + " USER: " + IMAGE_TOKEN + "\n{question} ASSISTANT:"
QUESTION = "Is this photo of a real person?"
YES, NO = "Yes", "No"
ANSWER_SEPARATOR = " "  # between "ASSISTANT:" and the judgment

_ENVIRONMENT = {"indoor": "indoors", "outdoor": "outdoors"}
_ILLUMINATION = {"normal": "under normal light", "strong": "under strong light", "back": "against back light",
                 "dark": "in dim light"}
_CAMERA = {"low": "with a low-quality camera", "medium": "with a medium-quality camera",
           "high": "with a high-quality camera"}


def judgment_for(label: int) -> str:
    """"No" for an attack (label 1), "Yes" for a bona fide face: the answer to "Is this photo of a real person?"."""
    return NO if int(label) == 1 else YES


def interpretation_for(caption: str | None) -> str:
    """The text after the judgment: ". This is {caption}", or "." for judgment-only answers (no SCF)."""
    return "." if caption is None else f". This is {caption.strip()}"


def answer_text(label: int, caption: str | None) -> str:
    """The full answer string, e.g. "No. This is a face printed on a poster ..." (for display and docs)."""
    return judgment_for(label) + interpretation_for(caption)


def _phrase(table: dict[str, str], what: str, value: str | None) -> str | None:
    if value is None:
        return None
    if value not in table:
        raise ValueError(f"unknown {what} {value!r}; valid: {', '.join(table)} (or None when unknown)")
    return table[value]


def compose_caption(attack: str, illumination: str | None = None, environment: str | None = None,
                    camera_quality: str | None = None) -> str:
    """Template caption from the attack type and the (optional) style attributes.

    "<attack phrase>[, captured <indoors|outdoors> <light> <camera>]"; unknown attributes (None) are left out, e.g.
    ``compose_caption("live", "normal", "indoor")`` → "a real face of a person, captured indoors under normal light".
    """
    check_attack(attack)  # unknown names: an error that lists the valid ones
    # a taxonomy name added after this table was written borrows the phrase of its nearest content type
    phrase = ATTACK_CAPTIONS.get(attack) or ATTACK_CAPTIONS[EXTRA_ATTACKS[attack]]
    parts = [_phrase(_ENVIRONMENT, "environment", environment), _phrase(_ILLUMINATION, "illumination", illumination),
             _phrase(_CAMERA, "camera quality", camera_quality)]
    parts = [p for p in parts if p]
    return phrase + (", captured " + " ".join(parts) if parts else "")


def load_captions(path: str | Path) -> dict[str, str]:
    """A captions table (``sample_id``, ``caption`` columns) as a dict; .parquet, .csv, .jsonl or .json, or the
    ``datasets`` folder ``fasvlm caption scf`` writes beside captions.parquet (``captions.hf``)."""
    import pandas as pd

    from fasvlm.data_modules.hf_datasets import is_folder, read_captions

    path = Path(path)
    if is_folder(path):
        return read_captions(path)
    if not path.is_file():
        raise FileNotFoundError(f"captions table {path} not found; expected a .parquet/.csv/.jsonl file with columns "
                                "sample_id, caption (written by the SCF captioning pipeline)")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        df = pd.read_parquet(path)
    elif suffix == ".csv":
        df = pd.read_csv(path, dtype={"sample_id": str})
    elif suffix in (".jsonl", ".json"):
        df = pd.read_json(path, lines=suffix == ".jsonl", dtype={"sample_id": str})
    else:
        raise ValueError(f"captions table {path}: unsupported format {suffix!r}; use .parquet, .csv, .jsonl or .json")
    missing = {"sample_id", "caption"} - set(df.columns)
    if missing:
        raise ValueError(f"captions table {path} lacks column(s) {sorted(missing)}; has {list(df.columns)}")
    return dict(zip(df["sample_id"].astype(str), df["caption"].astype(str)))


def batch_captions(batch: dict, table: dict[str, str] | None = None) -> tuple[list[str], int]:
    """Caption per sample of a batch: its row in ``table`` (by sample id), else the template caption of its attack
    type and capture conditions (:func:`compose_caption`). Returns the captions and how many samples ``table`` lacked.
    """
    n = len(batch["attack"])
    names = {k: batch.get(f"{k}_name") or [None] * n for k in ("illumination", "environment", "camera_quality")}
    out, missing = [], 0
    for i in range(n):
        caption = table.get(str(batch["sample_id"][i])) if table is not None else None
        if caption is None:
            missing += table is not None
            caption = compose_caption(batch["attack"][i], names["illumination"][i], names["environment"][i],
                                      names["camera_quality"][i])
        out.append(caption)
    return out, missing


@dataclass
class AnswerTokens:
    """Right-padded answer tokens of a batch: ids (B, A), attention mask (B, A), judgment-token mask (B, A)."""

    ids: torch.Tensor
    mask: torch.Tensor
    judgment_mask: torch.Tensor

    @property
    def labels(self) -> torch.Tensor:
        """ids with -100 on padding (B, A)."""
        return self.ids.masked_fill(~self.mask, -100)


class IFASPrompt:
    """Token ids of the I-FAS prompt and answers for one tokenizer (rules in the module docstring).

    ``prefix_ids``: [BOS] + template before ``<image>``; ``suffix_ids``: template after ``<image>`` (+ any tokens
    " Yes" and " No" share); ``judgment_ids[YES|NO]``: the judgment span; ``yes_id``/``no_id``: their first tokens.
    """

    def __init__(self, tokenizer, question: str = QUESTION, max_answer_tokens: int = 64):
        self.tokenizer = tokenizer
        self.question = question
        self.max_answer_tokens = max_answer_tokens
        self._cache: dict[str, tuple[int, ...]] = {}
        before, after = CHAT_TEMPLATE.format(question=question).split(IMAGE_TOKEN)
        bos = [] if tokenizer.bos_token_id is None else [tokenizer.bos_token_id]
        yes, no = self.encode(ANSWER_SEPARATOR + YES), self.encode(ANSWER_SEPARATOR + NO)
        shared = 0
        while shared < min(len(yes), len(no)) and yes[shared] == no[shared]:
            shared += 1
        if shared == min(len(yes), len(no)):
            raise ValueError(f"tokenizer {type(tokenizer).__name__}: ' {YES}' {yes} and ' {NO}' {no} do not differ "
                             "after their shared tokens; the judgment cannot be scored")
        self.prefix_ids: list[int] = bos + list(self.encode(before))
        self.suffix_ids: list[int] = list(self.encode(after)) + list(yes[:shared])
        self.judgment_ids: dict[str, list[int]] = {YES: list(yes[shared:]), NO: list(no[shared:])}
        self.yes_id, self.no_id = yes[shared], no[shared]
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (self.eos_id or 0)

    def encode(self, text: str) -> tuple[int, ...]:
        """Token ids of ``text`` without special tokens (cached: captions repeat)."""
        ids = self._cache.get(text)
        if ids is None:
            ids = tuple(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            if len(self._cache) < 100_000:
                self._cache[text] = ids
        return ids

    def answer_ids(self, judgment: str, interpretation: str) -> tuple[list[int], int]:
        """Answer token ids (judgment + interpretation + EOS, truncated) and the judgment span length."""
        judg = self.judgment_ids[judgment]
        rest = list(self.encode(interpretation)) + ([] if self.eos_id is None else [self.eos_id])
        room = max(self.max_answer_tokens - len(judg), 0)
        return judg + rest[:room], len(judg)

    def encode_answers(self, judgments: list[str], interpretations: list[str]) -> AnswerTokens:
        """Right-padded answers of a batch; judgment_mask marks exactly the judgment span of each row."""
        if len(judgments) != len(interpretations):
            raise ValueError(f"{len(judgments)} judgments but {len(interpretations)} interpretations")
        rows = [self.answer_ids(j, t) for j, t in zip(judgments, interpretations)]
        width = max(len(ids) for ids, _ in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.bool)
        judg = torch.zeros((len(rows), width), dtype=torch.bool)
        for i, (row, n_judg) in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = True
            judg[i, :n_judg] = True
        return AnswerTokens(ids=ids, mask=mask, judgment_mask=judg)


_JUDGMENT_START = re.compile(rf"^\s*({YES}|{NO})\b")


def split_judgment(answer: str) -> tuple[str | None, str]:
    """("Yes"|"No", the rest) when an answer starts with the judgment word, else (None, the answer).

    "No. This is a poster" -> ("No", ". This is a poster"); "Nothing ..." and "yes ..." are not judgments.
    """
    m = _JUDGMENT_START.match(answer)
    if m is None:
        return None, answer.strip()
    return m.group(1), answer[m.end():].rstrip()
