"""CASIA-SURF CeFA (WACV 2021; CVPR 2020 challenge): colour/depth/IR frames of 1,607 subjects of three ethnicities.

Full release (liuajian's readme; reference notes, section 12)::

    Ethnicity/<AF|CA|EA>/<Race>-<ID>[-<IdCard>]/<Race>_<ID>_<Device>_<Session>_<PAI>/{color|profile,depth,ir}/NNNN.jpg
    Mask/3D-Mask/<ID>/1_<ID>_<Dress>_<Glasses>_<Device>_<Session>_<Light>/{color|profile,depth,ir}/NNNN.jpg
    Mask/Silicone-Mask/<ID>/2_<ID>_<Dress>_<Glasses>_<Device>_<Session>_<Light>/...

Fields: Race 1 AF, 2 CA, 3 EA; ID 000-499; Device 1 rssdk, 2 mp4, 3 bag, 4 MOV (masks: 1 camera, 2 D435i);
Session 1 indoor, 2 outdoor, 3 random; **PAI 1 real, 2 cloth (print), 3 pic (photo), 4 screen (replay)**; masks:
Dress (wig) 0/1, Glasses 0/1, Light 1 none, 2 back, 3 along, 4 side. IdCard: birth year (first four digits) and sex
(penultimate digit even = female, odd = male). The tree may sit under ``CASIA_CeFA/``; the RGB folder is
``color`` or ``profile`` (both accepted, open point in the reference).

Challenge release: ``train/<Race_ID_Device_Session_PAI>/{profile,depth,ir}/NNNN.jpg`` (split train) plus anonymised
``dev/<6 digits>/`` and ``test/<6 digits>/`` folders. Live/attack comes from the PAI / mask fields only; the
challenge lists (``4@k_*.txt``, ``1 = live``) are only used to mark which train videos belong to challenge
protocol ``"4@k"``. Anonymised folders carry no naming, so they are reported in ``IndexResult.unknown``.

Records: one per RGB frame (``frame`` = file number, ``video`` = the video folder relative to ``root``), with the
depth and IR frames of the same number in ``extra["depth"]`` / ``extra["ir"]``. ``bbox`` None (faces pre-cropped).

Attacks: PAI 2 -> ``print``, 3 -> ``photo``, 4 -> ``replay``; 3D print masks -> ``mask_3d``; silicone masks ->
``silicone_mask`` (wig/glasses in ``extra``). Style: Session 1/2 -> environment indoor/outdoor (3 random: None);
mask Light 1 (no extra light) -> illumination "normal", 2 (back light) -> "back", 3/4 (along/side) -> None.

Protocols (rules of the WACV paper as implemented in liuajian's ``CASIA_Race_RDI`` and matching the counts of his
video lists; 2D videos with Device in {1, 3}, Session in {1, 2}, PAI in {1, 2, 4}; IDs 0-199 train, 200-299 val,
300-499 test). liuajian's list names in brackets:

- ``1_1``/``1_2``/``1_3`` [p1.1/p1.3/p1.5] cross-ethnicity: train/val on AF/CA/EA (all PAIs), test on the other two
  ethnicities;
- ``2_1``/``2_2`` [p2.1/p2.2] cross-PAI: train/val on real + print (PAI 1, 2) and test on real + replay (1, 4), or
  the reverse; all three ethnicities;
- ``4_1``/``4_2``/``4_3`` [p4.1/p4.3/p4.5] cross-ethnicity and PAI: train/val on AF/CA/EA real + replay, test on the
  other two ethnicities real + print;
- every protocol's test set also holds all 3D and silicone masks recorded with the D435i (Device 2), as in
  liuajian's test lists;
- ``4@1``/``4@2``/``4@3``: challenge protocols, train membership from ``4@k_train.txt`` when present.

The default ``split`` is the ID range's split (masks: test; challenge ``train/``: train).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..record import ATTACK, LIVE, SampleRecord
from . import IndexResult, LayoutError

NAME = "casia_cefa"
DESCRIPTION = "CASIA-SURF CeFA (WACV 2021): colour/depth/IR frames, 3 ethnicities + 3D/silicone masks, protocols 1/2/4"
MEDIA = "frames"
EXPECTED_LAYOUT = """\
<root>/                                                (or <root>/CASIA_CeFA/)
  Ethnicity/<AF|CA|EA>/<Race>-<ID>[-<IdCard>]/<Race>_<ID>_<Device>_<Session>_<PAI>/{color|profile,depth,ir}/NNNN.jpg
  Mask/3D-Mask/<ID>/1_<ID>_<Dress>_<Glasses>_<Device>_<Session>_<Light>/{color|profile,depth,ir}/NNNN.jpg
  Mask/Silicone-Mask/<ID>/2_<ID>_<Dress>_<Glasses>_<Device>_<Session>_<Light>/...
or the challenge release:
  train/<Race>_<ID>_<Device>_<Session>_<PAI>/{profile,depth,ir}/NNNN.jpg   [+ 4@k_train.txt]
"""

_IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp"}
_RGB_DIRS = ("color", "profile", "colour", "rgb")
_OTHER_DIRS = {"depth": "depth", "ir": "ir", "nir": "ir"}
_RACES = {1: "AF", 2: "CA", 3: "EA"}
_PAI = {1: "live", 2: "print", 3: "photo", 4: "replay"}
_PAI_NAMES = {1: "real", 2: "cloth", 3: "pic", 4: "screen"}
_SESSIONS = {1: "indoor", 2: "outdoor"}
_MASK_LIGHT = {1: "normal", 2: "back"}
_MASK_LIGHT_NAMES = {1: "none", 2: "back", 3: "along", 4: "side"}
_NAME_2D = re.compile(r"^([123])_(\d{1,4})_(\d)_(\d)_(\d)$")
_NAME_MASK = re.compile(r"^([12])_(\d{1,4})_([01])_([01])_(\d)_(\d)_(\d)$")
_SUBJECT_DIR = re.compile(r"^(AF|CA|EA)-(\d{3})(?:-(\d+))?$", re.IGNORECASE)
_CHALLENGE_LIST = re.compile(r"^(4@[123])_train\.txt$", re.IGNORECASE)

_PROTOCOLS_2D = {
    # name: (train/val race or None = all, train/val PAIs, test race rule, test PAIs)
    "1_1": (1, {1, 2, 4}, "other", {1, 2, 4}),
    "1_2": (2, {1, 2, 4}, "other", {1, 2, 4}),
    "1_3": (3, {1, 2, 4}, "other", {1, 2, 4}),
    "2_1": (None, {1, 2}, "all", {1, 4}),
    "2_2": (None, {1, 4}, "all", {1, 2}),
    "4_1": (1, {1, 4}, "other", {1, 2}),
    "4_2": (2, {1, 4}, "other", {1, 2}),
    "4_3": (3, {1, 4}, "other", {1, 2}),
}


def _id_split(subject_id: int) -> str:
    return "train" if subject_id < 200 else "val" if subject_id < 300 else "test"


def _protocols_2d(race: int, sid: int, device: int, session: int, pai: int) -> dict[str, str]:
    if device not in (1, 3) or session not in (1, 2) or pai not in (1, 2, 4) or sid >= 500:
        return {}
    split = _id_split(sid)
    out = {}
    for name, (train_race, train_pais, test_rule, test_pais) in _PROTOCOLS_2D.items():
        if split in ("train", "val"):
            if (train_race is None or race == train_race) and pai in train_pais:
                out[name] = split
        elif (test_rule == "all" or race != train_race) and pai in test_pais:
            out[name] = "test"
    return out


def _parse_video(name: str, parent: str) -> dict | None:
    """Fields of a video folder name; None if it follows neither the 2D nor the mask naming."""
    m = _NAME_2D.match(name)
    if m:
        race, sid, device, session, pai = (int(x) for x in m.groups())
        if pai not in _PAI:
            return None
        extra = {
            "race": _RACES[race],
            "subject_id": sid,
            "device": device,
            "session": session,
            "pai": _PAI_NAMES[pai],
        }
        sm = _SUBJECT_DIR.match(parent)
        if sm and sm[3] and len(sm[3]) >= 5:
            extra["birth_year"] = int(sm[3][:4])
            extra["sex"] = "F" if int(sm[3][-2]) % 2 == 0 else "M"
        challenge = parent.lower() == "train"
        return {
            "label": LIVE if pai == 1 else ATTACK,
            "attack": _PAI[pai],
            "subject": f"{_RACES[race]}-{sid:03d}",
            "split": "train" if challenge else _id_split(sid),
            "protocols": {} if challenge else _protocols_2d(race, sid, device, session, pai),
            "environment": _SESSIONS.get(session),
            "illumination": None,
            "extra": extra,
        }
    m = _NAME_MASK.match(name)
    if m:
        kind, sid, dress, glasses, device, session, light = (int(x) for x in m.groups())
        mask = "3d" if kind == 1 else "silicone"
        protocols = {p: "test" for p in _PROTOCOLS_2D} if device == 2 else {}
        return {
            "label": ATTACK,
            "attack": "mask_3d" if kind == 1 else "silicone_mask",
            "subject": f"{mask}mask-{sid:03d}",
            "split": "test",
            "protocols": protocols,
            "environment": _SESSIONS.get(session),
            "illumination": _MASK_LIGHT.get(light),
            "extra": {
                "mask": mask,
                "mask_id": sid,
                "wig": bool(dress),
                "glasses": bool(glasses),
                "device": device,
                "session": session,
                "light": _MASK_LIGHT_NAMES.get(light, str(light)),
            },
        }
    return None


def _numbered_images(folder: str) -> tuple[dict[int, str], list[str]]:
    """{frame number: path} for the images in ``folder``, and the names that are not numbered images."""
    frames, bad = {}, []
    with os.scandir(folder) as it:
        for entry in it:
            stem, ext = os.path.splitext(entry.name)
            if entry.is_file() and ext.lower() in _IMAGE_EXTS and stem.isdigit():
                frames[int(stem)] = entry.path
            else:
                bad.append(entry.name)
    return frames, bad


def _challenge_membership(root: Path) -> dict[str, dict[str, str]]:
    """video name -> {"4@k": "train"} from the challenge ``4@k_train.txt`` lists (labels in them are ignored)."""
    out: dict[str, dict[str, str]] = {}
    for folder in (root, *[p for p in root.iterdir() if p.is_dir()]):
        for f in sorted(folder.glob("*.txt")):
            m = _CHALLENGE_LIST.match(f.name)
            if not m:
                continue
            for line in f.read_text(errors="replace").splitlines():
                tokens = line.split()
                if not tokens:
                    continue
                for part in tokens[0].replace("\\", "/").split("/"):
                    if _NAME_2D.match(part):
                        out.setdefault(part, {})[m[1]] = "train"
                        break
    return out


def index(root: Path, *, domain: str | None = None) -> IndexResult:
    """Index the release at ``root`` (see the module docstring); no media is opened. ``domain``: the records'
    domain name (default: the dataset name)."""
    root = Path(root).absolute()
    domain = domain or NAME
    if not root.is_dir():
        raise LayoutError(NAME, root, "directory does not exist", EXPECTED_LAYOUT)
    challenge = _challenge_membership(root)
    records: list[SampleRecord] = []
    unknown: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        sub = {d.lower(): d for d in dirnames}
        rgb = next((sub[d] for d in _RGB_DIRS if d in sub), None)
        here = Path(dirpath)
        rel = here.relative_to(root).as_posix()
        if rgb is None:
            for fname in sorted(filenames):
                if os.path.splitext(fname)[1].lower() in _IMAGE_EXTS:
                    unknown.append(f"{rel}/{fname}" if rel != "." else fname)
            continue
        dirnames[:] = []  # a video folder: its modality folders are read here, not walked
        info = _parse_video(here.name, here.parent.name)
        if info is None:
            why = "anonymised challenge folder" if here.name.isdigit() else "name follows no CeFA naming"
            unknown.append(f"{rel}/ ({why})")
            continue
        frames, bad = _numbered_images(here / rgb)
        unknown.extend(f"{rel}/{rgb}/{b}" for b in sorted(bad))
        unknown.extend(f"{rel}/{f}" for f in sorted(filenames))
        others = {}
        for d_lower, d in sub.items():
            if d == rgb:
                continue
            if d_lower not in _OTHER_DIRS:
                unknown.append(f"{rel}/{d}/")
                continue
            other_frames, other_bad = _numbered_images(here / d)
            others[_OTHER_DIRS[d_lower]] = other_frames
            unknown.extend(f"{rel}/{d}/{b}" for b in sorted(other_bad))
        protocols = dict(info["protocols"])
        protocols.update(challenge.get(here.name, {}) if here.parent.name.lower() == "train" else {})
        for frame, path in sorted(frames.items()):
            extra = {"protocols": dict(protocols), **info["extra"]}
            for modality, paths in others.items():
                if frame in paths:
                    extra[modality] = paths[frame]
            records.append(
                SampleRecord(
                    path=path,
                    label=info["label"],
                    attack=info["attack"],
                    domain=domain,
                    subject=info["subject"],
                    video=rel,
                    split=info["split"],
                    frame=frame,
                    illumination=info["illumination"],
                    environment=info["environment"],
                    extra=extra,
                )
            )
    if not records:
        detail = f"; unrecognised entries: {unknown[:3]}" if unknown else ""
        raise LayoutError(NAME, root, f"no video folder in the CeFA naming found{detail}", EXPECTED_LAYOUT)
    return IndexResult(records=records, unknown=unknown)
