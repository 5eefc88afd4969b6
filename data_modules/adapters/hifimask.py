"""CASIA-SURF HiFiMask (TIFS 2022; ICCV 2021 challenge): high-fidelity 3D mask attacks, 10 cropped frames per video.

Crop release (``CASIA-HiFi-Mask-crop3.zip`` unpacked into ``Data/``; reference notes, section 14)::

    Data/<Skin>_<Subject>_<Type>_<Scene>_<Light>_<Sensor>/0000.png ... 0009.png

Fields: Skin 1 yellow, 2 white, 3 black; Subject 01-75 (larger numbers occur in the lists); **Type 0 live,
1 transparent, 2 plaster, 3 resin**; Scene 1 white, 2 green, 3 tricolour, 4 sunshine, 5 shadow, 6 motion; Light
0 none, 1 normal, 2 dim, 3 bright, 4 back, 5 side, 6 top; Sensor 0 SpO2, 1 iPhone11, 2 iPhoneX, 3 MI10, 4 P40,
5 S20, 6 Vivo, 7 D435, 8 HJIM.

Challenge release: ``train/<name>/NNNN.png`` (same naming) and anonymised ``val/`` and ``test/`` folders of 1,000
images; the anonymised folders carry no naming and are reported in ``IndexResult.unknown`` (one entry per folder).
The challenge lists (``train_label.txt``, ``val_label.txt``: ``1 = live``) are not read.

Live/attack and the mask material come from the Type field only. Taxonomy: 0 ``live``, 1 ``transparent_mask``,
2 ``plaster_mask``, 3 ``resin_mask``. Style: Light 1 normal -> illumination "normal", 2 dim -> "dark", 3 bright ->
"strong", 4 back -> "back" (0 none, 5 side, 6 top: None); Scene 1-3 (studio backgrounds) -> environment "indoor",
4-5 (sunshine, shadow) -> "outdoor", 6 motion -> None. The sensor goes to ``extra["sensor"]`` (name) and
``extra["camera"]`` (id); the complexion to ``extra["skin"]``.

Records: one per frame (``frame`` = the file number, ``video`` = the folder path relative to ``root``).

Protocols (``extra["protocols"]``): ``"1"``, ``"2_1"``, ``"2_2"``, ``"2_3"``, ``"3"`` (P1, P2.1-P2.3, P3).
P1 splits subjects (45/6/24) and that assignment ships only as list files: the adapter reads liuajian's lists
``CASIA_HiFiMask@<p1|p2.1|p2.2|p2.3|p3>_{video,image}_{train,dev,test}.txt`` when they lie in ``root`` or one
folder below it, taking only the split from them (their labels, ``0 = live``, are ignored). From P1 the others are
derived when their lists are absent:

- ``2_k`` (leave mask type k out: 1 transparent, 2 plaster, 3 resin): train/val = P1 train/val without type k;
  test = P1 test live + type k (matches the published video counts);

``3`` (open set) is **never derived**: the official P3 keeps the transparent-mask videos of only some subjects (15 of
the 45 train subjects, 3 of the 6 dev subjects), so no filter on type/scene/light/sensor reproduces it (the filter
once used here put about 1,100 train and 110 dev transparent-mask videos too many; issue 15). P3 comes only from its
list files ``CASIA_HiFiMask@p3_video_{train,dev,test}.txt``; without them no record is in P3 and
``IndexResult.report["unavailable_protocols"]["3"]`` names the missing files (``fasvlm prepare`` prints it and writes
it to ``summary.json``).

The challenge release is protocol 3: its ``train/`` videos get ``{"3": "train"}`` unless a list says otherwise.
Without lists, videos under ``Data/`` are in no protocol and get split ``"test"`` (cross-dataset use).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..record import ATTACK, LIVE, SampleRecord
from . import IndexResult, LayoutError

NAME = "hifimask"
DESCRIPTION = "CASIA-SURF HiFiMask (TIFS 2022): 3D mask frames (transparent/plaster/resin), protocols P1, P2.x, P3"
MEDIA = "frames"
EXPECTED_LAYOUT = """\
<root>/
  Data/<Skin>_<Subject>_<Type>_<Scene>_<Light>_<Sensor>/0000.png ... 0009.png     (CASIA-HiFi-Mask-crop3)
  [protocol/CASIA_HiFiMask@<p1|p2.1|p2.2|p2.3|p3>_video_{train,dev,test}.txt]   (protocol splits; P2.x are
   derived from P1 when absent, P3 never: without the p3 lists no video is in protocol 3)
or the challenge release:
  train/<Skin>_<Subject>_<Type>_<Scene>_<Light>_<Sensor>/NNNN.png
"""

_IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp"}
_NAME = re.compile(r"^([123])_(\d{1,3})_([0-3])_([1-6])_([0-6])_([0-8])$")
_LIST = re.compile(r"^CASIA_HiFiMask@p(\d(?:\.\d)?)_(?:video|image)_(train|dev|test)\.txt$", re.IGNORECASE)
_LIST_SPLITS = {"train": "train", "dev": "val", "test": "test"}
_SKIN = {1: "yellow", 2: "white", 3: "black"}
_TYPES = {0: "live", 1: "transparent_mask", 2: "plaster_mask", 3: "resin_mask"}
_SCENES = {1: "white", 2: "green", 3: "tricolour", 4: "sunshine", 5: "shadow", 6: "motion"}
_LIGHTS = {0: "none", 1: "normal", 2: "dim", 3: "bright", 4: "back", 5: "side", 6: "top"}
_SENSORS = {0: "SpO2", 1: "iPhone11", 2: "iPhoneX", 3: "MI10", 4: "P40", 5: "S20", 6: "Vivo", 7: "D435", 8: "HJIM"}
_ILLUMINATION = {1: "normal", 2: "dark", 3: "strong", 4: "back"}
_ENVIRONMENT = {1: "indoor", 2: "indoor", 3: "indoor", 4: "outdoor", 5: "outdoor"}
P3_LISTS = "CASIA_HiFiMask@p3_video_{train,dev,test}.txt"
_DATA_DIRS = {"data", "train", "val", "dev", "test"}


def _protocol_name(p: str) -> str:
    return p.replace(".", "_")


def _read_lists(root: Path) -> dict[str, dict[str, str]]:
    """protocol -> {video name: split} from liuajian's lists in ``root`` or one folder below (not the data folders)."""
    folders = [root] + sorted(p for p in root.iterdir() if p.is_dir() and p.name.lower() not in _DATA_DIRS)
    out: dict[str, dict[str, str]] = {}
    for folder in folders:
        for f in sorted(folder.glob("*.txt")):
            m = _LIST.match(f.name)
            if not m:
                continue
            members = out.setdefault(_protocol_name(m[1]), {})
            split = _LIST_SPLITS[m[2].lower()]
            for line in f.read_text(errors="replace").splitlines():
                tokens = line.split()
                if not tokens:
                    continue
                for part in tokens[0].replace("\\", "/").split("/"):
                    if _NAME.match(part):
                        members[part] = split
                        break
    return out


def _derived(fields: dict[str, int], p1_split: str) -> dict[str, str]:
    """P2.x membership from the P1 split, by the rules in the module docstring (P3 is never derived)."""
    out = {}
    t = fields["type"]
    for k in (1, 2, 3):
        if p1_split == "test":
            if t in (0, k):
                out[f"2_{k}"] = "test"
        elif t != k:
            out[f"2_{k}"] = p1_split
    return out


def index(root: Path, *, domain: str | None = None) -> IndexResult:
    """Index the release at ``root`` (see the module docstring); no media is opened. ``domain``: the records'
    domain name (default: the dataset name)."""
    root = Path(root).absolute()
    domain = domain or NAME
    if not root.is_dir():
        raise LayoutError(NAME, root, "directory does not exist", EXPECTED_LAYOUT)
    lists = _read_lists(root)
    records: list[SampleRecord] = []
    unknown: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        here = Path(dirpath)
        rel = here.relative_to(root).as_posix()
        m = _NAME.match(here.name)
        if m is None:
            if here.name.isdigit() and here.parent.name.lower() in ("val", "test", "dev"):
                unknown.append(f"{rel}/ (anonymised challenge folder)")
                dirnames[:] = []
                continue
            for fname in sorted(filenames):
                if os.path.splitext(fname)[1].lower() in _IMAGE_EXTS:
                    unknown.append(f"{rel}/{fname}" if rel != "." else fname)
            continue
        dirnames[:] = []
        skin, subject, type_id, scene, light, sensor = (int(x) for x in m.groups())
        fields = {"type": type_id, "scene": scene, "light": light, "sensor": sensor}
        name = here.name
        protocols = {p: members[name] for p, members in lists.items() if name in members}
        if "1" in protocols:
            for p, split in _derived(fields, protocols["1"]).items():
                if p not in lists:
                    protocols[p] = split
        if here.parent.name.lower() == "train" and "3" not in lists:
            protocols["3"] = "train"
        split = protocols.get("1") or protocols.get("3") or "test"
        extra = {
            "skin": _SKIN[skin],
            "subject_id": subject,
            "type_id": type_id,
            "scene": _SCENES[scene],
            "light": _LIGHTS[light],
            "sensor": _SENSORS[sensor],
            "camera": sensor,
        }
        frames = []
        for fname in sorted(filenames):
            stem, ext = os.path.splitext(fname)
            if ext.lower() in _IMAGE_EXTS and stem.isdigit():
                frames.append((int(stem), fname))
            else:
                unknown.append(f"{rel}/{fname}")
        for frame, fname in frames:
            records.append(
                SampleRecord(
                    path=str(here / fname),
                    label=LIVE if type_id == 0 else ATTACK,
                    attack=_TYPES[type_id],
                    domain=domain,
                    subject=f"{skin}_{m[2]}",
                    video=rel,
                    split=split,
                    frame=frame,
                    illumination=_ILLUMINATION.get(light),
                    environment=_ENVIRONMENT.get(scene),
                    extra={"protocols": dict(protocols), **extra},
                )
            )
    if not records:
        detail = f"; unrecognised entries: {unknown[:3]}" if unknown else ""
        raise LayoutError(NAME, root, f"no video folder in the HiFiMask naming found{detail}", EXPECTED_LAYOUT)
    report = {}
    if "3" not in lists and not any("3" in r.extra["protocols"] for r in records):
        report["unavailable_protocols"] = {
            "3": f"{P3_LISTS} not found in {root} or one folder below; protocol 3 cannot be derived from the P1 "
            "lists (it keeps the transparent masks of only some subjects). Put liuajian's P3 lists there."}
    return IndexResult(records=records, unknown=unknown, report=report)
