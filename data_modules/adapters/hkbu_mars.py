"""HKBU-MARs V1+ (and V2) 3D-mask attack data set (Liu et al., ECCV 2016 / CVPRW 2016), read from its release.

Facts: reference notes ``datasets.md`` section 9. The V1+ layout is [R] (no list files were found), so this adapter
takes live/mask from folder names and reads any depth:

- Every video (``.avi``, ``.mp4``, ``.mov``, ``.mkv``, any case) below ``root`` is one record (``frame=-1``,
  ``extra["media"]="video"``). Its class comes from the one class folder on its path (any case): ``real``, ``live``,
  ``genuine``, ``bonafide`` -> live; ``mask``, ``masks``, ``attack``, ``fake``, ``spoof`` -> ``mask_3d`` (ThatsMyFace
  and REAL-f masks are both rigid 3D masks; no finer taxonomy name fits). Subject: the first all-digit folder below the
  class folder (``01``..``12``), or else the V2 stem ``<camera>_<light>_<subject>`` (the layout of liuajian's V2 lists,
  which also fills ``extra["camera"]`` and ``extra["light"]``; the released names write the subject without a
  leading zero, ``attack/09/01_01_9``, and a zero-padded ``01_01_09`` is read as well). A V2 stem and a subject
  folder must agree (as integers). Files
  that fit none of this are reported as unknown.
- ``extra["mask_maker"]``: ``thatsmyface`` or ``real-f`` when a folder or the stem names it (``ThatsMyFace``, ``TMF``,
  ``REAL-f``, ``RealF``); otherwise absent.
- Split: there is no official split; HKBU-MARs is used as a cross-dataset target (``split`` = ``split`` option,
  "test" by default) or with leave-one-subject-out cross-validation: ``extra["protocols"]["loo_<SS>"]`` is "test"
  for subject SS and "train" for the others, for every subject found.
- Style: V1+ was recorded under room light with one webcam (Logitech C920, 1280x720 [R]); nothing is mapped (None).
  No face boxes are shipped [R].
"""

from __future__ import annotations

import re
from pathlib import Path

from ..record import ATTACK, LIVE, SampleRecord
from . import IndexResult, LayoutError

__all__ = ["NAME", "DESCRIPTION", "MEDIA", "EXPECTED_LAYOUT", "index"]

NAME = "hkbu_mars"
DESCRIPTION = "HKBU-MARs V1+/V2: webcam videos of 12 subjects, live and wearing ThatsMyFace or REAL-f 3D masks"
MEDIA = "video"
EXPECTED_LAYOUT = """\
<root>/
  real/<subject 01..12>/<any name>.avi         (V1+; class folder: real|live|genuine)
  mask/<subject 01..12>/<any name>.avi         (class folder: mask|attack|fake|spoof)
  or, V2:  {real,attack}/<subject 01..12>/<camera 01..07>_<light 01..06>_<subject 1..12>.avi   (attack/09/01_01_9.avi)
"""

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mov", ".mkv")
LIVE_FOLDERS = ("real", "live", "genuine", "bonafide", "bona_fide")
MASK_FOLDERS = ("mask", "masks", "attack", "fake", "spoof")
_V2_STEM = re.compile(r"^(?P<camera>\d{2})_(?P<light>\d{2})_(?P<subject>\d{1,2})$")  # real: 01_01_9, 01_01_12
_MAKERS = (("thatsmyface", re.compile(r"thats?_?my_?face|(^|[^a-z])tmf([^a-z]|$)")),
           ("real-f", re.compile(r"real[-_ ]?f([^a-z]|$)")))


def _mask_maker(parts: tuple[str, ...]) -> str | None:
    for maker, pattern in _MAKERS:
        if any(pattern.search(p.lower()) for p in parts):
            return maker
    return None


def index(root: Path, *, domain: str | None = None, split: str = "test") -> IndexResult:
    """Index an HKBU-MARs copy at ``root`` (see the module docstring); no media is opened."""
    root = Path(root)
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    domain = domain or NAME
    found: list[tuple[Path, bool, int, dict]] = []
    unknown: list[str] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        rel = path.relative_to(root)
        parsed = _parse(rel) if path.suffix.lower() in VIDEO_EXTENSIONS else None
        if parsed is None:
            unknown.append(rel.as_posix())
        else:
            found.append((path, *parsed))
    if not found:
        raise LayoutError(NAME, root, "no video below a real/ or mask/ folder found", EXPECTED_LAYOUT)
    subjects = sorted({subject for _, _, subject, _ in found})
    records = []
    for path, live, subject, extra in found:
        extra["protocols"] = {f"loo_{s:02d}": "test" if s == subject else "train" for s in subjects}
        records.append(SampleRecord(
            path=str(path), label=LIVE if live else ATTACK, attack="live" if live else "mask_3d", domain=domain,
            subject=f"{subject:02d}", video=path.relative_to(root).with_suffix("").as_posix(), split=split, frame=-1,
            extra=extra,
        ))
    return IndexResult(records=records, unknown=unknown)


def _parse(rel: Path) -> tuple[bool, int, dict] | None:
    """(live, subject, extra) of a video's relative path, or None when it fits no rule."""
    folders = [p.lower() for p in rel.parts[:-1]]
    classes = [i for i, p in enumerate(folders) if p in LIVE_FOLDERS + MASK_FOLDERS]
    if len(classes) != 1:
        return None
    live = folders[classes[0]] in LIVE_FOLDERS
    extra: dict = {"media": "video"}
    digits = [int(p) for p in folders[classes[0] + 1:] if p.isdigit()]
    v2 = _V2_STEM.match(rel.stem)
    if v2:
        extra.update(camera=int(v2["camera"]), light=int(v2["light"]))
        if digits and digits[0] != int(v2["subject"]):
            return None
        digits = [int(v2["subject"])]
    if not digits:
        return None
    maker = _mask_maker(rel.parts)
    if maker and not live:
        extra["mask_maker"] = maker
    return live, digits[0], extra
