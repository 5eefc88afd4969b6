"""SCF stage-2 keyword filter on a labelled set of captions (issue 19, item 7): word-boundary rules, precision/recall.

Each caption is labelled by hand: ``True`` when it describes the attack medium of its sample (what the spoof-aware
captioner should learn), ``False`` when it is a generic caption that a general captioner writes for live faces too.
The captions are written in the style BLIP-2 / general captioners produce ("a photo of ...", "a woman ...").
"""

from __future__ import annotations

import re

import pandas as pd

from fasvlm.captioning.scf import DEFAULT_KEYWORDS, KeywordFilter, stem_matches

LABELLED = [  # (caption, attack, spoof-aware)
    # print family
    ("a printed photo of a young man", "photo", True),
    ("a woman's face printed on a sheet of paper", "a4", True),
    ("a poster of a smiling man on a wall", "poster", True),
    ("a photo of a photo of a woman", "photo", True),
    ("a man holding a printout of a face", "print", True),
    ("a magazine page with a woman's face", "poster", True),
    ("a photograph of a woman with long hair", "photo", False),
    ("a photo of an asian man", "photo", False),
    ("a close up of a man's face", "a4", False),
    ("a woman with glasses smiling", "poster", False),
    ("a photograph of a photograph of a girl", "print", True),
    ("a blurry photograph of a man in a room", "print", False),
    # paper mask family
    ("a paper mask with the eyes cut out", "region_mask", True),
    ("a man wearing a paper mask", "upper_body_mask", True),
    ("a face cutout held in front of a person", "cut_photo", True),
    ("a cute asian girl", "cut_photo", False),
    ("a man with a cute smile", "region_mask", False),
    ("a woman with a short haircut", "cut_photo", False),
    ("a picture of a woman with cut hair", "region_mask", False),
    ("a printed face with eye holes", "region_mask", True),
    # replay family
    ("a face on a phone screen", "phone", True),
    ("a man's face displayed on a laptop", "pc", True),
    ("a tablet showing a picture of a woman", "pad", True),
    ("a video replay of a man on a monitor", "replay", True),
    ("a pixelated image of a face", "pc", True),
    ("a video of a man talking", "replay", False),
    ("a video of a woman in a room", "phone", False),
    ("a man looking at the camera", "pad", False),
    ("a woman with a wiggle in her hair", "pc", False),
    ("a man with a phone in his hand", "phone", False),  # generic, but "phone" is a replay keyword: a false keep
    # mask family
    ("a man wearing a silicone mask", "silicone_mask", True),
    ("a 3d mask of a face", "mask_3d", True),
    ("a man with a beard", "mask_3d", False),
    ("a woman in a masked costume", "mask_3d", True),
    # mannequin family
    ("a mannequin head with a wig", "mannequin", True),
    ("a wax statue of a man", "mannequin", True),
    ("a bald man", "mannequin", False),
]

# The dictionary before issue 19: prefix wildcards ("cut*" matched "cute"), "photograph*" and "video" alone.
OLD_FAMILIES = {
    "print": ["print*", "paper", "poster*", "a4", "printout", "halftone", "magazine", "sheet", "photograph*",
              "picture of a picture", "photo of a photo"],
    "paper_mask": ["paper", "mask*", "cut*", "cardboard", "hole*", "print*"],
    "replay": ["screen*", "monitor*", "display*", "phone*", "smartphone*", "cellphone*", "tablet*", "ipad*",
               "laptop*", "computer*", "tv", "television", "moire", "bezel", "replay*", "video", "pixel*"],
    "mask": ["mask*", "silicone", "latex", "resin", "plaster", "rubber", "plastic", "3d", "prosthetic*", "costume"],
    "mannequin": ["mannequin*", "dummy", "dummies", "doll*", "statue*", "sculpture*", "bust", "wax", "plastic",
                  "fake head"],
}


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())  # the filter's tokenisation (letters and digits, lower case)


def _old_match(keyword: str, words: list[str]) -> bool:
    """The pre-issue-19 rule: a trailing * matched any word with that prefix."""
    parts = _words(keyword)
    prefix = keyword.endswith("*")
    for i in range(len(words) - len(parts) + 1):
        w = words[i:i + len(parts)]
        if w[:-1] == parts[:-1] and (w[-1].startswith(parts[-1]) if prefix else w[-1] == parts[-1]):
            return True
    return False


def _precision_recall(kept: list[bool]) -> tuple[float, float]:
    truth = [r[2] for r in LABELLED]
    tp = sum(k and t for k, t in zip(kept, truth))
    fp = sum(k and not t for k, t in zip(kept, truth))
    fn = sum(t and not k for k, t in zip(kept, truth))
    return tp / (tp + fp), tp / (tp + fn)


def test_filter_precision_and_recall_on_the_labelled_set():
    table = pd.DataFrame([(f"s{i}", c, a) for i, (c, a, _) in enumerate(LABELLED)],
                         columns=["sample_id", "caption", "attack"])
    kept, _, _ = KeywordFilter.load(None).apply(table)
    new = [f"s{i}" in set(kept["sample_id"]) for i in range(len(LABELLED))]
    precision, recall = _precision_recall(new)
    # measured: precision 21/22 = 0.955 (the false keep: "a man with a phone in his hand"), recall 21/21 = 1.0;
    # the old dictionary: precision 21/29 = 0.724, recall 1.0. The set was written beside the rules: a regression
    # set, not an independent estimate of the filter on real captions.
    assert precision >= 0.95 and recall == 1.0, (precision, recall)

    from fasvlm.data_modules.taxonomy import attack_family

    old = [any(_old_match(k, _words(c)) for k in OLD_FAMILIES[attack_family(a)]) for c, a, _ in LABELLED]
    old_precision, old_recall = _precision_recall(old)
    assert old_precision < 0.8 and old_precision < precision  # "a cute asian girl", "a video of ...", ...
    kept_ids = set(kept["sample_id"])
    for i, (caption, _, _) in enumerate(LABELLED):
        if caption in ("a cute asian girl", "a video of a man talking", "a photograph of a woman with long hair"):
            assert f"s{i}" not in kept_ids and old[i]


def test_stem_rule_is_a_word_boundary():
    assert stem_matches("print", "printed") and stem_matches("print", "printout") and stem_matches("print", "prints")
    assert stem_matches("cut", "cutting") and stem_matches("screen", "screens") and stem_matches("mask", "masked")
    assert not stem_matches("cut", "cute") and not stem_matches("wig", "wiggle") and not stem_matches("hole", "wholes")
    assert not stem_matches("screen", "screensaver") and not stem_matches("photo", "photograph")
    assert "video" not in DEFAULT_KEYWORDS["families"]["replay"]
    assert not any(k.startswith("photograph*") or k == "cut*" for fam in DEFAULT_KEYWORDS["families"].values()
                   for k in fam)
