"""CASIA-SURF 3DMask (from NAS-FAS, TPAMI 2020): 48 subjects, live videos and 3D-printed masks on mannequin heads.

Layout (liuajian's lists; reference notes, section 13)::

    Real/<MMDD_SSS>/<k>                          k in {1, 15, 16, 17, 22, 23}: six live videos per subject
    Fake/<MMDD_SSS>/<decoration 1-3>/<environment 1-6>

Whether a leaf is a video file or a folder of frames is not verified, so both are accepted: ``<leaf>.mp4|.mov|.avi``
(any case) gives one record per video (``frame=-1``, ``extra["media"]="video"``; ``fasvlm prepare`` expands it), a
``<leaf>/`` folder of images gives one record per image (``frame`` = the trailing number of the file name). The tree
may sit under ``3DMask/`` or ``Data/3DMask/``.

Live/attack from the top folder only: ``Real`` -> ``live``; ``Fake`` -> ``mask_3d`` (identity-preserving 3D-printed
masks). ``extra["decoration"]`` (1-3; reportedly mask only / wig + glasses / wig without glasses) and
``extra["environment_id"]`` (1-6; reportedly indoor normal, back-, front-, side-light, outdoor sun, outdoor shade)
keep the raw codes; their meanings are unverified, so ``illumination``/``environment`` stay None. Live videos keep
``extra["real_id"]`` (k).

No official protocol: every record has split ``"test"`` and no ``extra["protocols"]`` entry; the dataset is a
cross-dataset target. ``subject`` is ``MMDD_SSS``; ``video`` the leaf path relative to the data root, without
extension.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..record import ATTACK, LIVE, SampleRecord
from . import IndexResult, LayoutError, search_dirs

NAME = "casia_surf_3dmask"
DESCRIPTION = "CASIA-SURF 3DMask (NAS-FAS, TPAMI 2020): Real/ and Fake/ 3D-mask videos; test-only target"
MEDIA = "video"
EXPECTED_LAYOUT = """\
<root>/                                   (or <root>/3DMask/, <root>/Data/3DMask/)
  Real/<MMDD_SSS>/<k>.mp4                         (or a folder <k>/ of frames)
  Fake/<MMDD_SSS>/<decoration 1-3>/<environment 1-6>.mp4   (or a folder of frames)
"""

_VIDEO_EXTS = {".mp4", ".mov", ".avi", ".mkv", ".wmv"}
_IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp"}
_SUBJECT = re.compile(r"^\d{4}_\d{3}$")
_TRAILING_NUMBER = re.compile(r"(\d+)$")


def _find_data_root(root: Path) -> Path | None:
    return search_dirs(root, lambda d, children: d if any(c.name.lower() in ("real", "fake") for c in children)
                       else None)


def _rel(entry: Path, data_root: Path) -> str:
    return entry.relative_to(data_root).as_posix() + ("/" if entry.is_dir() else "")


def _leaves(top: Path, depth: int, data_root: Path, unknown: list[str]):
    """Yield (subject, leaf entry) at ``depth`` levels below ``top``; report what does not fit in ``unknown``."""
    for subject_dir in sorted(top.iterdir()):
        if not (subject_dir.is_dir() and _SUBJECT.match(subject_dir.name)):
            unknown.append(_rel(subject_dir, data_root))
            continue
        level = [subject_dir]
        for _ in range(depth - 1):  # Fake: the decoration level
            nxt = []
            for d in level:
                for e in sorted(d.iterdir()):
                    if e.is_dir() and e.name in ("1", "2", "3"):
                        nxt.append(e)
                    else:
                        unknown.append(_rel(e, data_root))
            level = nxt
        for d in level:
            for e in sorted(d.iterdir()):
                stem, ext = os.path.splitext(e.name)
                leaf_ok = (e.is_dir() and e.name.isdigit()) or (
                    e.is_file() and ext.lower() in _VIDEO_EXTS and stem.isdigit()
                )
                if leaf_ok:
                    yield subject_dir.name, e
                else:
                    unknown.append(_rel(e, data_root))


def index(root: Path, *, domain: str | None = None) -> IndexResult:
    """Index the release at ``root`` (see the module docstring); no media is opened. ``domain``: the records'
    domain name (default: the dataset name)."""
    root = Path(root).absolute()
    domain = domain or NAME
    data_root = _find_data_root(root)
    if data_root is None:
        raise LayoutError(NAME, root, "no Real/ or Fake/ folder found", EXPECTED_LAYOUT)
    records: list[SampleRecord] = []
    unknown: list[str] = []
    tops = {c.name.lower(): c for c in data_root.iterdir() if c.is_dir()}
    for kind, depth in (("real", 1), ("fake", 2)):
        top = tops.get(kind)
        if top is None:
            continue
        for subject, leaf in _leaves(top, depth, data_root, unknown):
            rel = leaf.relative_to(data_root)
            video = (rel.with_suffix("") if leaf.is_file() else rel).as_posix()
            parts = Path(video).parts
            if kind == "real":
                label, attack, extra = LIVE, "live", {"real_id": int(parts[-1])}
            else:
                label, attack = ATTACK, "mask_3d"
                extra = {"decoration": int(parts[-2]), "environment_id": int(parts[-1])}
            common = {"label": label, "attack": attack, "domain": domain, "subject": subject}
            if leaf.is_file():
                records.append(
                    SampleRecord(
                        path=str(leaf),
                        video=video,
                        split="test",
                        frame=-1,
                        **common,
                        extra={"media": "video", **extra},
                    )
                )
                continue
            for fname in sorted(os.listdir(leaf)):
                stem, ext = os.path.splitext(fname)
                m = _TRAILING_NUMBER.search(stem)
                if ext.lower() not in _IMAGE_EXTS or m is None:
                    unknown.append(f"{video}/{fname}")
                    continue
                records.append(
                    SampleRecord(
                        path=str(leaf / fname),
                        video=video,
                        split="test",
                        frame=int(m[1]),
                        **common,
                        extra=dict(extra),
                    )
                )
    for name, d in sorted(tops.items()):
        if name not in ("real", "fake"):
            unknown.append(_rel(d, data_root))
    if not records:
        detail = f"; unrecognised entries: {unknown[:3]}" if unknown else ""
        raise LayoutError(NAME, data_root, f"no Real/Fake videos in the official naming found{detail}", EXPECTED_LAYOUT)
    return IndexResult(records=records, unknown=unknown)
