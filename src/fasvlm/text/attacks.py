"""The one table of attack-type wording: every name of the unified taxonomy (``data_modules/taxonomy.py``) with

- ``ATTACK_CAPTIONS``: the I-FAS template caption phrase (``fasvlm.text.prompts.compose_caption`` appends the capture
  conditions): "a face printed on a poster, with halftone dots and a flat paper surface";
- ``ATTACK_TYPES``: the short readable type that fine-grained instruction answers use (``fasvlm caption instruct``):
  "a print attack with a poster".

InstructFLIP's content options ("(2) Photo" ...) are the taxonomy's ``CONTENT_OPTIONS`` (they are option strings of the
paper, not prose). tests/test_prompts.py checks that every taxonomy name has an entry in both tables.
"""

from __future__ import annotations

__all__ = ["ATTACK_CAPTIONS", "ATTACK_TYPES"]

# I-FAS template caption phrases.
ATTACK_CAPTIONS: dict[str, str] = {
    "live": "a real face of a person",
    "photo": "a face printed on a photo, with flat paper texture and visible photo edges",
    "poster": "a face printed on a poster, with halftone dots and a flat paper surface",
    "a4": "a face printed on A4 paper, with paper texture and visible paper edges",
    "face_mask": "a person wearing a 2D paper mask of a face",
    "upper_body_mask": "a 2D paper cut-out of a face and upper body",
    "region_mask": "a 2D paper mask with the eye and mouth regions cut out",
    "pc": "a face replayed on a PC screen, with a visible moire pattern and screen bezel",
    "pad": "a face replayed on a tablet screen, with a visible moire pattern and screen reflection",
    "phone": "a face replayed on a phone screen, with a visible moire pattern and screen bezel",
    "mask_3d": "a person wearing a 3D mask with a smooth surface and no skin pores",
    "print": "a face printed on paper, with paper texture and flat lighting",
    "cut_photo": "a printed photo of a face with the eye regions cut out",
    "warped_photo": "a warped printed photo of a face, with a bent paper surface",
    "replay": "a face replayed on a screen, with a visible moire pattern and screen glare",
    "makeup": "a face with heavy makeup that disguises the identity of the person",
    "partial_eye": "a face with a partial attack covering the eyes",
    "partial_mouth": "a face with a partial attack covering the mouth",
    "paper_glasses": "a face wearing paper glasses with printed eyes",
    "funny_eye": "a face wearing funny-eye glasses with printed eyes",
    "glasses": "a face wearing fake glasses that hide the eyes",
    "tattoo": "a face with a fake tattoo drawn on the skin",
    "mannequin": "a mannequin head with a lifeless plastic face",
    "fake_head": "a fake head with an artificial skin surface",
    "transparent_mask": "a person wearing a transparent plastic mask",
    "plaster_mask": "a person wearing a white plaster mask",
    "resin_mask": "a person wearing a rigid resin mask",
    "silicone_mask": "a person wearing a flexible silicone mask",
    "half_mask": "a person wearing a half mask that covers the lower part of the face",
    "paper_mask": "a person wearing a paper mask of a face",
    "wig": "a person wearing a wig and a face disguise",
    "other": "a presentation attack on a face",
}


# Readable attack types (fine-grained instruction answers).
ATTACK_TYPES: dict[str, str] = {
    "live": "a real face (bona fide)",
    "photo": "a print attack with a printed photo",
    "poster": "a print attack with a poster",
    "a4": "a print attack on A4 paper",
    "face_mask": "a 2D paper face mask",
    "upper_body_mask": "a 2D paper cut-out of the upper body",
    "region_mask": "a 2D paper mask with the eye and mouth regions cut out",
    "pc": "a replay attack on a PC screen",
    "pad": "a replay attack on a tablet screen",
    "phone": "a replay attack on a phone screen",
    "mask_3d": "a 3D mask",
    "print": "a print attack",
    "cut_photo": "a printed photo with the eye regions cut out",
    "warped_photo": "a warped printed photo",
    "replay": "a replay attack on a screen",
    "makeup": "a makeup attack",
    "partial_eye": "a partial attack covering the eyes",
    "partial_mouth": "a partial attack covering the mouth",
    "paper_glasses": "paper glasses with printed eyes",
    "funny_eye": "funny-eye glasses",
    "glasses": "fake glasses covering the eyes",
    "tattoo": "a fake tattoo",
    "mannequin": "a mannequin head",
    "fake_head": "a fake head",
    "transparent_mask": "a transparent plastic mask",
    "plaster_mask": "a plaster mask",
    "resin_mask": "a rigid resin mask",
    "silicone_mask": "a flexible silicone mask",
    "half_mask": "a half mask covering the lower face",
    "paper_mask": "a paper mask",
    "wig": "a wig and face disguise",
    "other": "a presentation attack",
}

