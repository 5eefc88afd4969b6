"""CASIA-SURF (CVPR 2019 / TBIOM 2020): multi-modal frames (colour, depth, IR) from an Intel RealSense SR300.

Layout (reference notes, section 11): one folder per split, ``real_part``/``fake_part``, one folder per subject and
one ``<type>.rssdk`` folder per video holding ``color/``, ``depth/`` and ``ir/`` frames::

    Training/real_part/CLKJ_AS0005/real.rssdk/color/0001.jpg
    Training/fake_part/CLKJ_AS0005/04_en_b.rssdk/{color,depth,ir}/0001.jpg

The tree may sit under ``Data/`` or ``CASIA_SURF/Data/`` (the full release read by liuajian's lists); frame names may
be zero-padded (``0015.jpg``) or not (``91.jpg``, the challenge lists).

Labels come from the folders only: ``real_part`` + ``real.rssdk`` is live; ``fake_part`` + ``NN_<regions>_<shape>``
is attack NN. The challenge lists (``train_list.txt`` ... with ``1 = live``) are not read: the split folder already
gives the split. The anonymised challenge folders (``Val/0000/000000-color.jpg``, ``Testing/...``) carry no
live/attack naming, so they are reported in ``IndexResult.unknown`` (one entry per folder), never guessed.

Records: one per colour frame (``frame`` = the file's number, ``video`` = the ``.rssdk`` folder path relative to the
data root); the depth and IR frames of the same number go to ``extra["depth"]`` / ``extra["ir"]``. Faces are
already segmented (background removed), so ``bbox`` is None.

Attacks: all six are A4 colour prints with regions cut out, flat (``_s``) or bent (``_b``); taxonomy name
``cut_photo`` with ``extra["attack_id"]`` (1-6), ``extra["cut_regions"]`` (eyes / eyes_nose / eyes_nose_mouth) and
``extra["print_shape"]`` (flat / curved).

Protocol: the single official protocol ``"1"`` (train = live + attacks 4-6, val and test = live + attacks 1-3):
``extra["protocols"] = {"1": split}`` with the split from the top folder (Training/Train -> train,
Val/Dev -> val, Testing/Test -> test).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..record import ATTACK, LIVE, SampleRecord
from . import IndexResult, LayoutError, search_dirs

NAME = "casia_surf"
DESCRIPTION = "CASIA-SURF (CVPR 2019): colour/depth/IR frames, real_part/fake_part folders, protocol 1"
MEDIA = "frames"
EXPECTED_LAYOUT = """\
<root>/                                   (or <root>/Data/, <root>/CASIA_SURF/Data/)
  Training/real_part/<subject>/real.rssdk/{color,depth,ir}/<n>.jpg
  Training/fake_part/<subject>/<NN>_<e|en|enm>_<s|b>.rssdk/{color,depth,ir}/<n>.jpg
  Val/{real_part,fake_part}/...            (same naming)
  Testing/{real_part,fake_part}/...        (same naming)
"""

_SPLITS = {
    "training": "train",
    "train": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "devel": "val",
    "development": "val",
    "testing": "test",
    "test": "test",
}
_IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp"}
_MODALITIES = {"color": "color", "colour": "color", "rgb": "color", "depth": "depth", "ir": "ir", "nir": "ir"}
_ATTACK_DIR = re.compile(r"^(?P<id>0?[1-6])_(?P<regions>e|en|enm)_(?P<shape>s|b)$", re.IGNORECASE)
_REGIONS = {"e": "eyes", "en": "eyes_nose", "enm": "eyes_nose_mouth"}
_SHAPES = {"s": "flat", "b": "curved"}


def _find_data_root(root: Path) -> Path | None:
    """The folder holding the split folders: ``root`` itself or a descendant at most two levels down."""
    return search_dirs(root, lambda d, children: d if any(c.name.lower() in _SPLITS for c in children) else None)


def _video_info(part: str, video_dir: str) -> dict | None:
    """Label/attack from ``real_part|fake_part`` and the ``<type>.rssdk`` folder name; None if they do not parse."""
    stem = video_dir[: -len(".rssdk")] if video_dir.lower().endswith(".rssdk") else video_dir
    part = part.lower()
    if part == "real_part" and stem.lower() == "real":
        return {"label": LIVE, "attack": "live", "extra": {"attack_id": 0}}
    m = _ATTACK_DIR.match(stem)
    if part == "fake_part" and m:
        return {
            "label": ATTACK,
            "attack": "cut_photo",
            "extra": {
                "attack_id": int(m["id"]),
                "cut_regions": _REGIONS[m["regions"].lower()],
                "print_shape": _SHAPES[m["shape"].lower()],
            },
        }
    return None


def index(root: Path, *, domain: str | None = None) -> IndexResult:
    """Index the release at ``root`` (see the module docstring); no media is opened. ``domain``: the records'
    domain name (default: the dataset name)."""
    root = Path(root).absolute()
    domain = domain or NAME
    data_root = _find_data_root(root)
    if data_root is None:
        raise LayoutError(NAME, root, "no Training/Val/Testing folder found", EXPECTED_LAYOUT)

    colour: dict[tuple[str, int], tuple[str, dict, str, str]] = {}  # (video, frame) -> (path, info, subject, split)
    others: dict[tuple[str, int, str], str] = {}  # (video, frame, modality) -> path
    unknown: list[str] = []
    for split_dir in sorted(p for p in data_root.iterdir() if p.is_dir()):
        split = _SPLITS.get(split_dir.name.lower())
        if split is None:
            continue
        for top in sorted(split_dir.iterdir()):
            rel_top = top.relative_to(data_root).as_posix()
            if top.is_dir() and top.name.lower() not in ("real_part", "fake_part"):
                why = "anonymised challenge folder" if top.name.isdigit() else "not real_part/fake_part"
                unknown.append(f"{rel_top}/ ({why}: no live/attack naming)")
                continue
            if not top.is_dir():
                unknown.append(rel_top)
                continue
            for dirpath, dirnames, filenames in os.walk(top):
                dirnames.sort()
                for fname in sorted(filenames):
                    full = Path(dirpath, fname)
                    rel = full.relative_to(data_root).as_posix()
                    parts = full.relative_to(split_dir).parts  # part, subject, video_dir, modality, file
                    stem, ext = os.path.splitext(fname)
                    modality = _MODALITIES.get(parts[-2].lower()) if len(parts) == 5 else None
                    info = _video_info(parts[0], parts[2]) if len(parts) == 5 else None
                    if info is None or modality is None or ext.lower() not in _IMAGE_EXTS or not stem.isdigit():
                        unknown.append(rel)
                        continue
                    video = "/".join(full.relative_to(data_root).parts[:4])
                    frame = int(stem)
                    if modality == "color":
                        colour[(video, frame)] = (str(full), info, parts[1], split)
                    else:
                        others[(video, frame, modality)] = str(full)

    records = []
    for (video, frame), (path, info, subject, split) in sorted(colour.items()):
        extra = {"protocols": {"1": split}, **info["extra"]}
        for modality in ("depth", "ir"):
            other = others.get((video, frame, modality))
            if other is not None:
                extra[modality] = other
        records.append(
            SampleRecord(
                path=path,
                label=info["label"],
                attack=info["attack"],
                domain=domain,
                subject=subject,
                video=video,
                split=split,
                frame=frame,
                extra=extra,
            )
        )
    if not records:
        detail = f"; unrecognised entries: {unknown[:3]}" if unknown else ""
        raise LayoutError(NAME, data_root, f"no colour frames in the official naming found{detail}", EXPECTED_LAYOUT)
    return IndexResult(records=records, unknown=unknown)
