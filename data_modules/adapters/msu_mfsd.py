"""MSU-MFSD (Wen et al., TIFS 2015), read from its official release.

Layout and facts: reference notes ``datasets.md`` section 5 (checked against bob.db.msu_mfsd_mod, SSDG and SAFAS code).

- Layout: the release keeps the videos one level down, ``scene01/real/`` and ``scene01/attack/``, with the subject
  lists at the top (issue 15: found on the real file list; the reference notes had the flat layout). Flat copies
  (``real/`` and ``attack/`` in ``--root``) and ``--root <release>/scene01`` (lists read one level up) are accepted.
  The ``video`` id is ``real/<stem>`` or ``attack/<stem>`` whatever the layout (the stem names the scene).
- One record per video (``frame=-1``, ``extra["media"]="video"``). Live/attack from the folder and the name prefix
  (``real/real_...`` or ``attack/attack_...``); a name in the wrong folder is reported as unknown.
- Split from ``train_sub_list.txt`` (15 subjects) and ``test_sub_list.txt`` (20): two-digit ids compared as integers
  with the file names' ``client%03d``. A video whose client is in neither list is reported as unknown. There is no dev
  set and no other protocol.
- Attack instrument (the name's last fields): ``printed_photo`` -> ``print``, ``ipad_video`` (HD replay on an iPad)
  -> ``pad``, ``iphone_video`` (replay on an iPhone) -> ``phone``.
- ``extra``: ``camera`` (``laptop``: MacBook Air webcam, .mov; ``android``: Nexus 5, .mp4 [R]), ``scene``,
  ``needs_rotation`` (True for the six android real videos of clients 3, 5, 6, 7, 8 and 9 that play rotated in the
  release; the angle is in the container's rotate tag, which ``fasvlm prepare`` reads). Style attributes stay None:
  the data set does not describe lighting or grade its cameras.
- Face boxes: a same-stem ``.face`` beside the video (bob's format, comma separated ``frame, x1, y1, x2, y2, leye_x,
  leye_y, reye_x, reye_y``; their presence in the official download is [R]) -> ``extra["face_file"]``;
  :func:`read_faces` converts them to ``(x, y, w, h)``.

Tolerated variants: extension ``.mp4``, ``.mov`` or ``.avi`` in any case, whatever the camera; quality token SD or HD.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..record import ATTACK, LIVE, SampleRecord
from . import IndexResult, LayoutError
from .replay_attack import face_rows

__all__ = ["NAME", "DESCRIPTION", "MEDIA", "EXPECTED_LAYOUT", "ATTACK_TYPES", "ROTATED_CLIENTS", "index", "read_faces"]

NAME = "msu_mfsd"
DESCRIPTION = "MSU-MFSD: 280 videos of 35 subjects from a laptop and an Android phone; print, iPad and iPhone attacks"
MEDIA = "video"
EXPECTED_LAYOUT = """\
<root>/                                   (the unpacked release: MSU-MFSD/)
  scene01/real/real_client001_android_SD_scene01.mp4   (+ same-stem .face)
  scene01/real/real_client001_laptop_SD_scene01.mov
  scene01/attack/attack_client001_android_SD_{ipad_video,iphone_video,printed_photo}_scene01.mp4
  scene01/attack/attack_client001_laptop_SD_{ipad_video,iphone_video,printed_photo}_scene01.mov
  train_sub_list.txt   (15 two-digit subject ids)
  test_sub_list.txt    (20 two-digit subject ids)
  README.txt, DecFrames*.m
also accepted: real/ and attack/ directly in <root> (flat copies), or --root <release>/scene01 (lists one level up)
"""

ATTACK_TYPES = {"printed_photo": "print", "ipad_video": "pad", "iphone_video": "phone"}
ROTATED_CLIENTS = (3, 5, 6, 7, 8, 9)  # android real videos that play rotated (bob's rotated_videos.txt)
VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi")
LISTS = {"train": "train_sub_list.txt", "test": "test_sub_list.txt"}
_NAME = re.compile(r"^(?P<cls>real|attack)_client(?P<client>\d{3})_(?P<camera>android|laptop)_(?P<quality>SD|HD)_"
                   r"(?:(?P<instrument>ipad_video|iphone_video|printed_photo)_)?scene(?P<scene>\d{2})$")


def _data_dirs(root: Path) -> list[Path]:
    """Folders holding ``real/``/``attack/``: ``root`` itself (flat copies, or ``--root .../scene01``), else its
    ``scene*`` subfolders (the release)."""
    def has_classes(d: Path) -> bool:
        return (d / "real").is_dir() or (d / "attack").is_dir()

    if has_classes(root):
        return [root]
    return sorted(d for d in root.iterdir() if d.is_dir() and d.name.lower().startswith("scene") and has_classes(d))


def _list_dir(root: Path) -> Path:
    """Where the subject lists are: ``root``, or its parent when ``root`` is a ``scene*`` folder of the release."""
    if not (root / LISTS["train"]).is_file() and root.name.lower().startswith("scene") \
            and (root.parent / LISTS["train"]).is_file():
        return root.parent
    return root


def index(root: Path, *, domain: str | None = None) -> IndexResult:
    """Index an MSU-MFSD release at ``root`` (see the module docstring); no media is opened."""
    root = Path(root)
    data_dirs = _data_dirs(root)
    if not data_dirs:
        raise LayoutError(NAME, root, "neither scene01/real/, scene01/attack/ nor real/, attack/ found",
                          EXPECTED_LAYOUT)
    lists = _list_dir(root)
    split_of: dict[int, str] = {}
    for split, name in LISTS.items():
        if not (lists / name).is_file():
            raise LayoutError(NAME, lists / name, "the official subject list is missing", EXPECTED_LAYOUT)
        split_of.update((int(token), split) for token in (lists / name).read_text().split())
    domain = domain or NAME
    records: list[SampleRecord] = []
    unknown: list[str] = []
    for data in data_dirs:
        for folder in ("real", "attack"):
            if not (data / folder).is_dir():
                continue
            entries = sorted(p for p in (data / folder).iterdir() if not p.name.startswith("."))
            videos = {p.stem for p in entries if p.suffix.lower() in VIDEO_EXTENSIONS}
            for path in entries:
                m = _NAME.match(path.stem)
                valid = (m and m["cls"] == folder and bool(m["instrument"]) == (folder == "attack")
                         and path.suffix.lower() in VIDEO_EXTENSIONS and path.is_file())
                if not valid or int(m["client"]) not in split_of:
                    if not (path.suffix.lower() == ".face" and path.stem in videos):
                        unknown.append(path.relative_to(root).as_posix())
                    continue
                records.append(_record(path, m, split_of[int(m["client"])], domain))
    return IndexResult(records=records, unknown=unknown)


def _record(path: Path, m: re.Match, split: str, domain: str) -> SampleRecord:
    client = int(m["client"])
    live = m["cls"] == "real"
    extra = {"media": "video", "camera": m["camera"], "scene": int(m["scene"]),
             "needs_rotation": live and m["camera"] == "android" and client in ROTATED_CLIENTS}
    if not live:
        extra["instrument"] = m["instrument"]
    if path.with_suffix(".face").is_file():
        extra["face_file"] = str(path.with_suffix(".face"))
    return SampleRecord(
        path=str(path), label=LIVE if live else ATTACK, attack="live" if live else ATTACK_TYPES[m["instrument"]],
        domain=domain, subject=str(client), video=f"{m['cls']}/{path.stem}", split=split, frame=-1, extra=extra,
    )


def read_faces(path: str | Path) -> dict[int, tuple[int, int, int, int]]:
    """Parse an MSU ``.face`` file (``frame, x1, y1, x2, y2, leye_x, leye_y, reye_x, reye_y`` per line, as bob reads
    it) into ``{frame: (x1, y1, x2 - x1, y2 - y1)}``; empty boxes are left out."""
    rows = (map(int, row) for row in face_rows(path, 5, "frame, x1, y1, x2, y2, leye_x, leye_y, reye_x, reye_y"))
    return {frame: (x1, y1, x2 - x1, y2 - y1) for frame, x1, y1, x2, y2 in rows if x2 > x1 and y2 > y1}
