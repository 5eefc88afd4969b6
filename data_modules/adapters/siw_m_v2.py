"""SiW-Mv2 (ECCV 2022, MSU): 785 live and 915 spoof videos of 14 spoof types.

Layout (official repo ``CHELSEA234/Multi-domain-learning-FAS``, ``source_SiW_Mv2/README.md``; reference notes,
section 7)::

    Live/Live_<n>.mov
    Spoof/<type folder>/<Prefix>_<n>.mov        14 type folders: Makeup_Cosmetic, ..., Mask_TransparentMask
    pro_3_text/*.txt                             partition files from the official repo (optional; see below)

The spoof type is the video stem minus the trailing ``_<n>``. Stem prefixes (the official ``spoof_type_dict``; its
keys name the protocol-II unknown types) and taxonomy names:

=============  ====================  ======================  ================
key            stem prefix           folder                  taxonomy
=============  ====================  ======================  ================
Co / Im / Ob   Makeup_Co/_Im/_Ob     Makeup_Cosmetic/...     makeup
Half           Mask_Half             Mask_HalfMask           half_mask
Mann           Mask_Mann             Mannequin               mannequin
Paper          Mask_Paper            Mask_PaperMask          paper_mask
Sil            Mask_Silicone         Silicone                silicone_mask
Trans          Mask_Trans            Mask_TransparentMask    transparent_mask
Eye            Partial_Eye           Partial_Eye             partial_eye
Funnyeye       Partial_Funnyeye      Partial_FunnyeyeGlasses funny_eye
Mouth          Partial_Mouth         Partial_Mouth           partial_mouth
Paperglass     Partial_Paperglass    Partial_PaperGlasses    paper_glasses
Print          Paper                 Print                   print
Replay         Replay                Replay                  replay
=============  ====================  ======================  ================

The makeup variant goes to ``extra["makeup"]`` (cosmetic / impersonation / obfuscation), the key to
``extra["spoof_key"]``. Tolerance (stems are not verified against a real copy): prefixes match case-insensitively
and the long folder-style forms (``Mask_TransparentMask_3``, ``Makeup_Cosmetic_2``, ``Print_7`` ...) are accepted;
videos may be ``.mov``, ``.mp4`` or ``.avi``; a stem whose type disagrees with its folder (``Live`` vs ``Spoof``) is
reported as unknown. A same-stem ``.face`` file (SiW-M v1 convention) goes to ``extra["face_file"]``, read by
:func:`read_faces`.

Records: one per video (``frame=-1``, ``extra["media"]="video"``); ``video`` = the path relative to ``root`` without
extension; ``subject`` = the stem (the release names no subjects).

Protocols, from the partition files in ``pro_3_text/`` (or ``protocols/``, ``PROTOCOL/``, or ``root``) when present;
list lines are sanitised because some are glued by missing newlines (``Partial_Mouth_23Live_891``):

- ``"1"`` (known attacks): ``trainlist_live.txt`` + ``trainlist_all.txt`` -> train, ``testlist_live.txt`` +
  ``testlist_all.txt`` -> test;
- ``"2_<key>"`` for each of the 14 keys (leave one type out; official ``--unknown`` names): live as protocol 1;
  spoof train = ``trainlist_all`` minus that type; test = every video of that type (the official code globs all
  of them). Unlike the official code, types are matched by exact prefix (its substring test also drops
  ``Mask_Paper`` and ``Partial_Paperglass`` from training when ``Print``/``Paper`` is left out);
- ``"3"`` (cross-domain): ``train_A_pretrain.txt`` -> train, the union of ``test_{A_pretrain,B_spoof,C_race,
  D_age,E_ill}.txt`` -> test; ``"3_A"`` ... ``"3_E"``: the same training set with one target's test list each.

A video listed in both a train and a test list of one protocol is put in test (never trained on). The default
``split`` is protocol 1's, else protocol 3's, else ``"test"``.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from ..record import ATTACK, LIVE, SampleRecord
from . import IndexResult, LayoutError

NAME = "siw_m_v2"
DESCRIPTION = "SiW-Mv2 (ECCV 2022): Live/ and Spoof/<14 types>/ videos; protocols I, II (leave-one-type-out), III"
MEDIA = "video"
EXPECTED_LAYOUT = """\
<root>/
  Live/Live_<n>.mov
  Spoof/{Makeup_Cosmetic,Makeup_Impersonation,Makeup_Obfuscation,Mannequin,Silicone,Print,Replay,
         Partial_FunnyeyeGlasses,Partial_PaperGlasses,Partial_Eye,Partial_Mouth,
         Mask_HalfMask,Mask_PaperMask,Mask_TransparentMask}/<Prefix>_<n>.mov
  [pro_3_text/{trainlist_all,trainlist_live,testlist_all,testlist_live,train_A_pretrain,test_*}.txt]
"""

# key -> (canonical stem prefix, taxonomy name, extra)
SPOOF_TYPES: dict[str, tuple[str, str, dict]] = {
    "Co": ("Makeup_Co", "makeup", {"makeup": "cosmetic"}),
    "Im": ("Makeup_Im", "makeup", {"makeup": "impersonation"}),
    "Ob": ("Makeup_Ob", "makeup", {"makeup": "obfuscation"}),
    "Half": ("Mask_Half", "half_mask", {"mask": "half"}),
    "Mann": ("Mask_Mann", "mannequin", {}),
    "Paper": ("Mask_Paper", "paper_mask", {}),
    "Sil": ("Mask_Silicone", "silicone_mask", {}),
    "Trans": ("Mask_Trans", "transparent_mask", {}),
    "Eye": ("Partial_Eye", "partial_eye", {}),
    "Funnyeye": ("Partial_Funnyeye", "funny_eye", {}),
    "Mouth": ("Partial_Mouth", "partial_mouth", {}),
    "Paperglass": ("Partial_Paperglass", "paper_glasses", {}),
    "Print": ("Paper", "print", {}),
    "Replay": ("Replay", "replay", {}),
}
# lower-case stem prefix (canonical and folder-style long forms) -> key; "Live" -> None
_PREFIXES: dict[str, str | None] = {"live": None}
for _key, (_prefix, _, _) in SPOOF_TYPES.items():
    _PREFIXES[_prefix.lower()] = _key
_PREFIXES.update(
    {
        "makeup_cosmetic": "Co",
        "makeup_impersonation": "Im",
        "makeup_obfuscation": "Ob",
        "mask_halfmask": "Half",
        "mannequin": "Mann",
        "mask_mannequin": "Mann",
        "mask_papermask": "Paper",
        "silicone": "Sil",
        "mask_transparentmask": "Trans",
        "partial_funnyeyeglasses": "Funnyeye",
        "partial_paperglasses": "Paperglass",
        "print": "Print",
    }
)
_VIDEO_EXTS = {".mov", ".mp4", ".avi"}
_STEM = re.compile(r"^(?P<prefix>[A-Za-z_]+?)_(?P<num>\d+)$")
# list tokens: any known prefix followed by _<n>; longest prefixes first so "Mask_Paper_3" is not read as "Paper_3"
_TOKEN = re.compile(
    r"(" + "|".join(sorted((re.escape(p) for p in _PREFIXES), key=len, reverse=True)) + r")_(\d+)", re.IGNORECASE
)
_LIST_DIRS = ("pro_3_text", "protocols", "protocol", "PROTOCOL")
_P3_TESTS = {"A": "test_A_pretrain", "B": "test_B_spoof", "C": "test_C_race", "D": "test_D_age", "E": "test_E_ill"}


def _canonical(stem: str) -> tuple[str | None, str] | None:
    """(key or None for live, canonical stem) for a video stem; None when it follows no SiW-Mv2 naming."""
    m = _STEM.match(stem)
    if not m or m["prefix"].lower() not in _PREFIXES:
        return None
    key = _PREFIXES[m["prefix"].lower()]
    prefix = "Live" if key is None else SPOOF_TYPES[key][0]
    return key, f"{prefix}_{int(m['num'])}"


def read_list(path: Path) -> list[str]:
    """Canonical stems in an official partition file; glued lines (``Partial_Mouth_23Live_891``) are split."""
    out = []
    for m in _TOKEN.finditer(Path(path).read_text(errors="replace")):
        parsed = _canonical(f"{m[1]}_{m[2]}")
        if parsed is not None:
            out.append(parsed[1])
    return out


def read_faces(path: str | Path) -> dict[int, tuple[float, float, float, float]]:
    """Per-frame boxes from a SiW-M ``.face`` file: one ``left top right bottom`` line per frame (an optional leading
    frame number is accepted); returned as ``{frame: (x, y, w, h)}``. All-zero lines (no detection) are skipped."""
    boxes = {}
    for i, line in enumerate(Path(path).read_text().splitlines()):
        values = [float(v) for v in line.replace(",", " ").split()]
        if len(values) == 5:
            frame, values = int(values[0]), values[1:]
        elif len(values) == 4:
            frame = i
        else:
            continue
        x1, y1, x2, y2 = values
        if x2 > x1 and y2 > y1:
            boxes[frame] = (x1, y1, x2 - x1, y2 - y1)
    return boxes


def _find_lists(root: Path) -> dict[str, list[str]]:
    """List name (file stem) -> canonical stems, from the first folder that holds any official partition file."""
    wanted = {
        "trainlist_all",
        "trainlist_live",
        "testlist_all",
        "testlist_live",
        "train_A_pretrain",
        *_P3_TESTS.values(),
    }
    for folder in [root / d for d in _LIST_DIRS] + [root]:
        if not folder.is_dir():
            continue
        found = {f.stem: read_list(f) for f in sorted(folder.glob("*.txt")) if f.stem in wanted}
        if found:
            return found
    return {}


def _assign(protocols: dict[str, dict[str, str]], name: str, stems, split: str, conflicts: list[str]) -> None:
    members = protocols.setdefault(name, {})
    for stem in stems:
        previous = members.get(stem)
        if previous is not None and previous != split:
            conflicts.append(f"{name}:{stem}")
            split_now = "test"
        else:
            split_now = split
        members[stem] = split_now


def _protocols(lists: dict[str, list[str]], stems_by_key: dict[str | None, list[str]]) -> dict[str, dict[str, str]]:
    """protocol -> {canonical stem: split}."""
    out: dict[str, dict[str, str]] = {}
    conflicts: list[str] = []
    get = lists.get
    if any(n in lists for n in ("trainlist_all", "trainlist_live", "testlist_all", "testlist_live")):
        _assign(out, "1", get("trainlist_live", []) + get("trainlist_all", []), "train", conflicts)
        _assign(out, "1", get("testlist_live", []) + get("testlist_all", []), "test", conflicts)
        for key, (prefix, _, _) in SPOOF_TYPES.items():
            name = f"2_{key}"
            spoof_train = [s for s in get("trainlist_all", []) if s.rsplit("_", 1)[0] != prefix]
            _assign(out, name, get("trainlist_live", []) + spoof_train, "train", conflicts)
            _assign(out, name, get("testlist_live", []) + stems_by_key.get(key, []), "test", conflicts)
    if "train_A_pretrain" in lists:
        tests = {x: get(f, []) for x, f in _P3_TESTS.items() if f in lists}
        _assign(out, "3", lists["train_A_pretrain"], "train", conflicts)
        _assign(out, "3", [s for stems in tests.values() for s in stems], "test", conflicts)
        for x, stems in tests.items():
            _assign(out, f"3_{x}", lists["train_A_pretrain"], "train", conflicts)
            _assign(out, f"3_{x}", stems, "test", conflicts)
    if conflicts:
        warnings.warn(
            f"{NAME}: {len(conflicts)} videos are listed in both a train and a test list of one protocol; they were "
            f"put in test (e.g. {conflicts[:3]})",
            stacklevel=3,
        )
    return out


def index(root: Path, *, domain: str | None = None) -> IndexResult:
    """Index the release at ``root`` (see the module docstring); no media is opened. ``domain``: the records'
    domain name (default: the dataset name)."""
    root = Path(root).absolute()
    domain = domain or NAME
    if not root.is_dir():
        raise LayoutError(NAME, root, "directory does not exist", EXPECTED_LAYOUT)
    tops = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    if "live" not in tops and "spoof" not in tops:
        raise LayoutError(NAME, root, "no Live/ or Spoof/ folder found", EXPECTED_LAYOUT)

    found: list[tuple[Path, str | None, str]] = []  # (file, key, canonical stem)
    unknown: list[str] = []
    list_dirs = {d.lower() for d in _LIST_DIRS}
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir() and entry.name.lower() not in ("live", "spoof", *list_dirs):
            unknown.append(f"{entry.name}/ (folder outside Live/ and Spoof/; not read)")
        elif entry.is_file() and entry.suffix.lower() in _VIDEO_EXTS:
            unknown.append(f"{entry.name} (video outside Live/ and Spoof/; not read)")
    for top_name in ("live", "spoof"):
        top = tops.get(top_name)
        if top is None:
            continue
        files = [f for f in sorted(top.rglob("*")) if f.is_file() and not f.name.startswith(".")]
        videos = {f.with_suffix("") for f in files if f.suffix.lower() in _VIDEO_EXTS}
        for f in files:
            ext = f.suffix.lower()
            if ext == ".face" and f.with_suffix("") in videos:
                continue  # read with its video
            parsed = _canonical(f.stem) if ext in _VIDEO_EXTS else None
            if parsed is None or (parsed[0] is None) != (top_name == "live"):
                unknown.append(f.relative_to(root).as_posix())
                continue
            found.append((f, *parsed))

    stems_by_key: dict[str | None, list[str]] = {}
    for _, key, stem in found:
        stems_by_key.setdefault(key, []).append(stem)
    protocols = _protocols(_find_lists(root), stems_by_key)

    records = []
    for f, key, stem in found:
        member = {name: members[stem] for name, members in protocols.items() if stem in members}
        split = member.get("1") or member.get("3") or "test"
        extra: dict = {"media": "video", "protocols": member}
        if key is None:
            label, attack = LIVE, "live"
        else:
            _, attack, type_extra = SPOOF_TYPES[key]
            label = ATTACK
            extra.update(spoof_key=key, **type_extra)
        face = next((f.with_suffix(s) for s in (".face", ".FACE") if f.with_suffix(s).is_file()), None)
        if face is not None:
            extra["face_file"] = str(face)
        records.append(
            SampleRecord(
                path=str(f),
                label=label,
                attack=attack,
                domain=domain,
                subject=stem,
                video=f.relative_to(root).with_suffix("").as_posix(),
                split=split,
                frame=-1,
                extra=extra,
            )
        )
    if not records:
        detail = f"; unrecognised entries: {unknown[:3]}" if unknown else ""
        raise LayoutError(NAME, root, f"no videos in the SiW-Mv2 naming found{detail}", EXPECTED_LAYOUT)
    return IndexResult(records=records, unknown=unknown)
