"""Unified attack taxonomy and style attributes (docs/design.md, "Contracts").

CelebA-Spoof's 11 spoof types (label vector index 40) are the backbone; attacks from other datasets that fall outside
them get names of their own, each mapped to the nearest of the 11 for InstructFLIP's content question.
Option strings are InstructFLIP's exactly (reference notes, section 2).
"""

from __future__ import annotations

__all__ = [
    "CELEBA_SPOOF_TYPES",
    "EXTRA_ATTACKS",
    "ATTACK_NAMES",
    "CONTENT_OPTIONS",
    "ILLUMINATIONS",
    "ENVIRONMENTS",
    "CAMERA_QUALITIES",
    "STYLE_OPTIONS",
    "content_index",
    "attack_family",
    "check_attack",
]

# CelebA-Spoof label[40] value -> taxonomy name (index = CelebA value)
CELEBA_SPOOF_TYPES: tuple[str, ...] = (
    "live",
    "photo",
    "poster",
    "a4",
    "face_mask",
    "upper_body_mask",
    "region_mask",
    "pc",
    "pad",
    "phone",
    "mask_3d",
)

# InstructFLIP content options, aligned with CELEBA_SPOOF_TYPES.
CONTENT_OPTIONS: tuple[str, ...] = (
    "(1) Real face",
    "(2) Photo",
    "(3) Poster",
    "(4) A4-paper",
    "(5) 2D face mask",
    "(6) 2D upper-body mask",
    "(7) 2D region mask",
    "(8) PC screen",
    "(9) Pad screen",
    "(10) Phone screen",
    "(11) 3D mask",
)

# Attacks outside the 11, with the backbone type that is closest in content (for the content question).
EXTRA_ATTACKS: dict[str, str] = {
    "print": "photo",  # generic printed photo (Replay-Attack, OULU, CASIA-FASD warped/cut photos, MSU printed photo)
    "cut_photo": "region_mask",  # CASIA-FASD cut photo (eye holes)
    "warped_photo": "photo",  # CASIA-FASD warped photo
    "replay": "pc",  # generic video replay, device unknown
    "makeup": "mask_3d",  # obfuscation / impersonation makeup
    "partial_eye": "region_mask",
    "partial_mouth": "region_mask",
    "paper_glasses": "region_mask",
    "funny_eye": "region_mask",
    "glasses": "region_mask",
    "tattoo": "mask_3d",
    "mannequin": "mask_3d",
    "fake_head": "mask_3d",
    "transparent_mask": "mask_3d",
    "plaster_mask": "mask_3d",
    "resin_mask": "mask_3d",
    "silicone_mask": "mask_3d",
    "half_mask": "mask_3d",  # SiW-Mv2 Mask_Half, PADISI-Face code 04
    "paper_mask": "face_mask",
    "wig": "mask_3d",
    "other": "photo",
}

ATTACK_NAMES: tuple[str, ...] = CELEBA_SPOOF_TYPES + tuple(EXTRA_ATTACKS)

# Coarse families (protocol-1 macro groups, the SCF keyword filter, reports).
_FAMILY: dict[str, str] = {
    "live": "live",
    "photo": "print",
    "poster": "print",
    "a4": "print",
    "print": "print",
    "warped_photo": "print",
    "face_mask": "paper_mask",
    "upper_body_mask": "paper_mask",
    "region_mask": "paper_mask",
    "cut_photo": "paper_mask",
    "paper_mask": "paper_mask",
    "paper_glasses": "paper_mask",
    "pc": "replay",
    "pad": "replay",
    "phone": "replay",
    "replay": "replay",
    "mannequin": "mannequin",
    "fake_head": "mannequin",
}

ILLUMINATIONS: tuple[str, ...] = ("normal", "strong", "back", "dark")  # CelebA-Spoof label[41] 1..4
ENVIRONMENTS: tuple[str, ...] = ("indoor", "outdoor")  # label[42] 1..2
CAMERA_QUALITIES: tuple[str, ...] = ("low", "medium", "high")  # protocol-2 sensor groups

STYLE_OPTIONS: dict[str, tuple[str, ...]] = {
    "illumination": ("(1) Normal", "(2) Strong", "(3) Back", "(4) Dark"),
    "environment": ("(1) Indoor", "(2) Outdoor"),
    "camera_quality": ("(1) Low", "(2) Medium", "(3) High"),
}
STYLE_VALUES: dict[str, tuple[str, ...]] = {
    "illumination": ILLUMINATIONS,
    "environment": ENVIRONMENTS,
    "camera_quality": CAMERA_QUALITIES,
}


def check_attack(name: str) -> str:
    """Return ``name`` if it is a taxonomy name, else raise an error that lists the valid names."""
    if name not in ATTACK_NAMES:
        raise ValueError(f"unknown attack type {name!r}; valid names: {', '.join(ATTACK_NAMES)}")
    return name


def content_index(name: str) -> int:
    """Index (0..10) of the InstructFLIP content option for a taxonomy name."""
    check_attack(name)
    return CELEBA_SPOOF_TYPES.index(EXTRA_ATTACKS.get(name, name))


def attack_family(name: str) -> str:
    """Coarse family: live, print, paper_mask, replay, mannequin, or mask for every other 3D/partial attack."""
    check_attack(name)
    return _FAMILY.get(name, "mask")


def style_index(attribute: str, value: str | None) -> int:
    """Option index of a style value, -1 when unknown (None)."""
    if value is None:
        return -1
    values = STYLE_VALUES[attribute]
    if value not in values:
        raise ValueError(f"unknown {attribute} {value!r}; valid values: {', '.join(values)}")
    return values.index(value)
