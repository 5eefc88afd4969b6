"""InstructFLIP's instructions: one content question and three style questions, with their option strings.

The wording is the published code's (``src/dataset/instruct/_ca_instruction.py``), not the paper's Table 7, which
phrases the instructions in its own words; the code's strings are what the released model was trained on::

    Choose the correct option to the following question: Which type of spoof type is in this image?
    (1) Real face (2) Photo ... (11) 3D mask

The answer the LLM is trained to produce is the option string itself, e.g. ``"(8) PC screen"``. Option order and
text come from :mod:`fasvlm.data_modules.taxonomy`, so an option index in a batch (``content``, ``illumination``,
``environment``, ``camera_quality``; -1 unknown) indexes :data:`OPTIONS` directly.
"""

from __future__ import annotations

from typing import Literal

from fasvlm.data_modules.taxonomy import CONTENT_OPTIONS, STYLE_OPTIONS

__all__ = [
    "QuestionKind",
    "StyleKind",
    "QUESTION_KINDS",
    "STYLE_KINDS",
    "QUESTIONS",
    "OPTIONS",
    "instruction",
    "answer",
    "check_kind",
]

QuestionKind = Literal["content", "illumination", "environment", "camera_quality"]
StyleKind = Literal["illumination", "environment", "camera_quality"]

QUESTION_KINDS: tuple[str, ...] = ("content", "illumination", "environment", "camera_quality")
STYLE_KINDS: tuple[str, ...] = QUESTION_KINDS[1:]

_PREFIX = "Choose the correct option to the following question: "
QUESTIONS: dict[str, str] = {
    "content": "Which type of spoof type is in this image?",
    "illumination": "What is the illumination condition in this image?",
    "environment": "What is the environment in this image?",
    "camera_quality": "What is the camera quality in this image?",
}
OPTIONS: dict[str, tuple[str, ...]] = {"content": CONTENT_OPTIONS, **STYLE_OPTIONS}


def check_kind(kind: str) -> str:
    """Return ``kind`` if it names a question, else raise an error that lists the valid names."""
    if kind not in QUESTION_KINDS:
        raise ValueError(f"unknown InstructFLIP question {kind!r}; valid: {', '.join(QUESTION_KINDS)}")
    return kind


def instruction(kind: str) -> str:
    """The full instruction text of a question: prefix, question, newline, the options joined by spaces."""
    check_kind(kind)
    return _PREFIX + QUESTIONS[kind] + "\n" + " ".join(OPTIONS[kind])


def answer(kind: str, index: int) -> str:
    """The target option string of a question, e.g. ``answer("content", 7) == "(8) PC screen"``."""
    options = OPTIONS[check_kind(kind)]
    if not 0 <= index < len(options):
        raise ValueError(f"{kind} option index {index} out of range 0..{len(options) - 1}")
    return options[index]
