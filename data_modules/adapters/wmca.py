"""WMCA, Wide Multi-Channel presentation Attack (Idiap, TIFS 2019): preprocessed face crops in HDF5.

Layout (official README; reference notes, section 10)::

    preprocessed-face-station_RGB/<dd.mm.yy>/<client>_<session>_<presenter>_<type>_<pai>.hdf5
    preprocessed-face-station_CDIT/<dd.mm.yy>/<same name>.hdf5        (optional)
    documentation/{attack,bonafide}_illustration_files.csv

Each file holds groups ``Frame_<i>`` with a dataset ``array`` stored CHW uint8: RGB files (3, 128, 128), face-cropped
and aligned; CDIT files (4, 128, 128) = [colour (gray), depth, infrared, thermal]. Each station folder may sit one or
two levels down (the two zips unpack as ``WMCA_preprocessed_RGB/WMCA/...``); ``.h5`` is accepted as well.

Indexing reads file names only: one record per HDF5 file, ``frame=-1``, ``extra["media"]="hdf5"``. The file is a
container of frames that video/image readers cannot open: :func:`read_media` (the hook for ``fasvlm prepare``) and
:func:`read_frames` read it, importing h5py there, never at import time. The RGB arrays are stored in RGB order (the
two published loaders that write JPEGs with OpenCV both swap them to BGR first). The matching CDIT file goes to
``extra["cdit"]`` and, since depth and IR are channels 1 and 2 of it, also to ``extra["depth"]`` / ``extra["ir"]`` /
``extra["thermal"]`` with ``extra["cdit_channels"]`` naming the channels. Faces are already cropped: ``bbox`` None.

Labels from the name only (bob.db.batl convention): ``type_id`` 0 bona fide, 1 facial disguise, 2 fake face,
3 photo, 4 video (5 makeup, HQ-WMCA). The PAI id is mapped with the ``BATL_CONFIG`` table:

=========  =============  ===========================================  ================  ============
type       pai            PAI                                          taxonomy          LOO group
=========  =============  ===========================================  ================  ============
1          1, 4-7         funny-eyes glasses                           funny_eye         glasses
1          15, 16         paper glasses                                paper_glasses     glasses
1          2              plastic Halloween mask                       mask_3d           rigidmask
1          13, 14         transparent mask                             transparent_mask  rigidmask
1          8-12           wig                                          wig               (none)
2          1-7            mannequin head                               fake_head         fakehead
2          8-11           papercraft mask                              paper_mask        papermask
2          12-17          custom wearable (rigid) mask                 mask_3d           rigidmask
2          18, 75-99      flexible silicone mask                       silicone_mask     flexiblemask
3          5, 10, 15      electronic photo (on a screen)               replay            replay
3          other 1-14     printed photo                                print             prints
4          1-18           video replay                                 replay            replay
5          1-139          makeup                                       makeup            (none)
=========  =============  ===========================================  ================  ============

Names whose type/PAI is not in the table are reported as unknown. ``extra`` keeps ``client``, ``session``,
``presenter``, ``type_id``, ``pai_id``, ``loo_group`` and ``date``; bona fide ``pai`` 1/2 (own/unisex glasses) sets
``extra["glasses"]``.

Protocols: ``grandtest`` and the seven unseen-attack protocols ``LOO_<group>`` (fakehead, flexiblemask, glasses,
papermask, prints, replay, rigidmask). The grandtest split (by client) ships only as protocol files, not in the data
zips, so the adapter reads them when they lie in ``root``, ``root/protocols``, ``root/documentation`` or beside the
station folders:

- a grandtest csv such as ``WMCA_Grandtest.txt`` (bob-style, header ``,client_id,filepath,group,label``; any file
  with ``grandtest`` in its name and a path and group column);
- bob csv protocol folders ``<protocol>/{train,dev,eval}.csv`` (``grandtest`` or ``LOO_*``) with a path column.

Rows are matched by file name (and date folder when the row has one); their label column is ignored. When
``LOO_<g>`` has no file of its own it is derived from grandtest as bob.pad.face defines it: train and dev are
grandtest's without the attacks of group g; the test set is grandtest's eval bona fide plus group g attacks. Groups
dev/devel -> "val", eval -> "test". Without protocol files every record gets split ``"test"`` and no protocol.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from ..record import ATTACK, LIVE, SampleRecord
from . import IndexResult, LayoutError, search_dirs

NAME = "wmca"
DESCRIPTION = "WMCA (Idiap, TIFS 2019): preprocessed 128x128 face crops in HDF5 (RGB + CDIT); grandtest, LOO_*"
MEDIA = "video"
EXPECTED_LAYOUT = """\
<root>/
  preprocessed-face-station_RGB/<dd.mm.yy>/<client>_<session>_<presenter>_<type>_<pai>.hdf5
  preprocessed-face-station_CDIT/<dd.mm.yy>/<same name>.hdf5      (optional: depth, IR, thermal)
  [WMCA_Grandtest.txt | protocols/<grandtest|LOO_*>/{train,dev,eval}.csv]   (optional: protocol files)
"""

LOO_GROUPS = ("fakehead", "flexiblemask", "glasses", "papermask", "prints", "replay", "rigidmask")
CDIT_CHANNELS = ("gray", "depth", "ir", "thermal")
_NAME = re.compile(r"^(\d+)_(\d+)_(\d+)_(\d)_(\d+)$")
_EXTS = {".hdf5", ".h5"}
_GROUPS = {"train": "train", "dev": "val", "devel": "val", "development": "val", "eval": "test", "test": "test"}
_PATH_COLUMNS = ("filepath", "path", "filename", "file", "file_path")


def pai_info(type_id: int, pai_id: int) -> tuple[str, str | None] | None:
    """(taxonomy name, LOO group) for a ``type_id``/``pai_id`` pair of the BATL table; None when not in the table."""
    if type_id == 0:
        return ("live", None) if pai_id in (0, 1, 2) else None
    if type_id == 1:
        if pai_id in (1, 4, 5, 6, 7):
            return "funny_eye", "glasses"
        if pai_id in (15, 16):
            return "paper_glasses", "glasses"
        if pai_id == 2:
            return "mask_3d", "rigidmask"
        if pai_id in (13, 14):
            return "transparent_mask", "rigidmask"
        if 8 <= pai_id <= 12:
            return "wig", None
        return None
    if type_id == 2:
        if 1 <= pai_id <= 7:
            return "fake_head", "fakehead"
        if 8 <= pai_id <= 11:
            return "paper_mask", "papermask"
        if 12 <= pai_id <= 17:
            return "mask_3d", "rigidmask"
        if pai_id == 18 or 75 <= pai_id <= 99:
            return "silicone_mask", "flexiblemask"
        return None
    if type_id == 3:
        if pai_id in (5, 10, 15):
            return "replay", "replay"
        return ("print", "prints") if 1 <= pai_id <= 14 else None
    if type_id == 4:
        return ("replay", "replay") if 1 <= pai_id <= 18 else None
    if type_id == 5:
        return ("makeup", None) if 1 <= pai_id <= 139 else None
    return None


def read_frames(path: str | Path, channels: str | None = None) -> list[tuple[int, object]]:
    """Frames of one WMCA HDF5 file as ``[(index, HxWxC uint8 array), ...]`` in frame order.

    Arrays are returned as stored, transposed from CHW to HWC (RGB files: 3 channels, in the stored order, which
    loaders disagree on (RGB or BGR); CDIT files: gray, depth, IR, thermal). ``channels`` picks CDIT channels by name,
    e.g. ``"depth"`` or ``"ir"``. Needs ``h5py`` (``pip install h5py``).
    """
    try:
        import h5py
    except ModuleNotFoundError as err:  # pragma: no cover - depends on the environment
        raise ModuleNotFoundError(
            "reading WMCA HDF5 files needs h5py: pip install h5py (indexing does not)", name="h5py"
        ) from err
    import numpy as np

    pick = None if channels is None else [CDIT_CHANNELS.index(c) for c in channels.split(",")]
    out = []
    with h5py.File(path, "r") as f:
        keys = [k for k in f.keys() if re.fullmatch(r"Frame_\d+", k)]
        for key in sorted(keys, key=lambda k: int(k.split("_")[1])):
            array = np.asarray(f[key]["array"])
            if pick is not None:
                array = array[pick]
            out.append((int(key.split("_")[1]), np.ascontiguousarray(array.transpose(1, 2, 0))))
    return out


def read_media(rec: SampleRecord, channel: str = "rgb") -> dict[int, object]:
    """``{frame index: HxWx3 uint8}`` for a WMCA record: the RGB file, or one CDIT channel (``"depth"``, ``"ir"``,
    ``"thermal"``, ``"gray"``) replicated to three channels. Needs h5py."""
    import numpy as np

    if channel == "rgb":
        frames = read_frames(rec.path)
    else:
        if channel not in CDIT_CHANNELS:
            raise ValueError(f"unknown WMCA channel {channel!r}; valid: rgb, {', '.join(CDIT_CHANNELS)}")
        if "cdit" not in rec.extra:
            raise FileNotFoundError(f"{rec.path}: no matching preprocessed-face-station_CDIT file for {channel!r}")
        frames = read_frames(rec.extra["cdit"], channels=channel)
    return {i: (np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a) for i, a in frames}


def _find_station(root: Path, station: str) -> Path | None:
    """``preprocessed-face-station_<station>`` in ``root`` or up to two levels below."""
    target = f"preprocessed-face-station_{station}".lower()
    return search_dirs(root, lambda d, children: next((c for c in children if c.name.lower() == target), None))


def _row_key(path_value: str) -> tuple[str | None, str]:
    parts = [p for p in path_value.strip().replace("\\", "/").split("/") if p]
    stem = Path(parts[-1]).stem if Path(parts[-1]).suffix.lower() in _EXTS else parts[-1]
    return (parts[-2] if len(parts) >= 2 else None), stem


def _read_csv(path: Path, group: str | None) -> list[tuple[tuple[str | None, str], str]]:
    """[((date, stem), split)] from a bob-style csv; ``group`` fixes the split for per-group files."""
    with open(path, newline="", errors="replace") as f:
        rows = list(csv.reader(f))
    if not rows:
        return []
    header = [h.strip().lower() for h in rows[0]]
    path_col = next((header.index(c) for c in _PATH_COLUMNS if c in header), None)
    group_col = header.index("group") if "group" in header else None
    if path_col is None or (group is None and group_col is None):
        return []
    out = []
    for row in rows[1:]:
        if len(row) <= path_col or not row[path_col].strip():
            continue
        value = group if group is not None else (row[group_col] if len(row) > group_col else "")
        split = _GROUPS.get(value.strip().lower())
        if split is not None:
            out.append((_row_key(row[path_col]), split))
    return out


def _protocol_files(root: Path, release_dir: Path) -> dict[str, list[tuple[tuple[str | None, str], str]]]:
    """protocol name -> [((date, stem), split)] from every protocol file found."""
    out: dict[str, list] = {}
    folders = (root, root / "protocols", root / "documentation", release_dir, release_dir / "protocols")
    for folder in dict.fromkeys(folders):  # in order, without repeats
        if not folder.is_dir():
            continue
        for f in sorted(folder.iterdir()):
            if f.is_file() and "grandtest" in f.name.lower() and f.suffix.lower() in (".txt", ".csv"):
                out.setdefault("grandtest", []).extend(_read_csv(f, None))
            elif f.is_dir() and (f.name.lower() == "grandtest" or f.name.lower().startswith("loo_")):
                name = "grandtest" if f.name.lower() == "grandtest" else "LOO_" + f.name[4:].lower()
                for g in sorted(f.glob("*.csv")):
                    if g.stem.lower() in _GROUPS:
                        out.setdefault(name, []).extend(_read_csv(g, g.stem.lower()))
    return {k: v for k, v in out.items() if v}


def index(root: Path, *, domain: str | None = None) -> IndexResult:
    """Index the release at ``root`` (see the module docstring); no media is opened. ``domain``: the records'
    domain name (default: the dataset name)."""
    root = Path(root).absolute()
    domain = domain or NAME
    rgb_dir = _find_station(root, "RGB")
    if rgb_dir is None:
        raise LayoutError(NAME, root, "no preprocessed-face-station_RGB folder found", EXPECTED_LAYOUT)
    cdit_dir = _find_station(root, "CDIT")
    cdit = {}
    if cdit_dir is not None:
        cdit = {
            f.relative_to(cdit_dir).with_suffix("").as_posix(): f
            for f in cdit_dir.rglob("*")
            if f.is_file() and f.suffix.lower() in _EXTS
        }
    # protocol -> ({(date, stem): split}, {stem: split}); rows without a date folder match by file name alone
    files = {
        name: (dict(rows), {stem: split for (_, stem), split in rows})
        for name, rows in _protocol_files(root, rgb_dir.parent).items()
    }

    records: list[SampleRecord] = []
    unknown: list[str] = []
    for f in sorted(rgb_dir.rglob("*")):
        if not f.is_file() or f.name.startswith("."):
            continue
        rel = f.relative_to(root).as_posix()
        m = _NAME.match(f.stem) if f.suffix.lower() in _EXTS else None
        info = pai_info(int(m[4]), int(m[5])) if m else None
        if info is None:
            unknown.append(rel)
            continue
        attack, group = info
        client, session, presenter = m[1], m[2], m[3]
        type_id, pai_id = int(m[4]), int(m[5])
        date = f.parent.name if f.parent != rgb_dir else None
        key_rel = f.relative_to(rgb_dir).with_suffix("").as_posix()

        protocols = {}
        for name, (by_path, by_stem) in files.items():
            split = by_path.get((date, f.stem)) or by_stem.get(f.stem)
            if split is not None:
                protocols[name] = split
        if "grandtest" in protocols:
            gt = protocols["grandtest"]
            for g in LOO_GROUPS:
                name = f"LOO_{g}"
                if name in files:
                    continue
                if gt in ("train", "val") and group != g:
                    protocols[name] = gt
                elif gt == "test" and (type_id == 0 or group == g):
                    protocols[name] = "test"
        extra = {
            "media": "hdf5",
            "protocols": protocols,
            "client": client,
            "session": session,
            "presenter": presenter,
            "type_id": type_id,
            "pai_id": pai_id,
            "loo_group": group,
        }
        if date is not None:
            extra["date"] = date
        if type_id == 0 and pai_id in (1, 2):
            extra["glasses"] = "medical" if pai_id == 1 else "unisex"
        other = cdit.get(key_rel)
        if other is not None:
            extra.update(cdit=str(other), depth=str(other), ir=str(other), thermal=str(other))
            extra["cdit_channels"] = list(CDIT_CHANNELS)
        records.append(
            SampleRecord(
                path=str(f),
                label=LIVE if attack == "live" else ATTACK,
                attack=attack,
                domain=domain,
                subject=client,
                video=key_rel,
                split=protocols.get("grandtest", "test"),
                frame=-1,
                extra=extra,
            )
        )
    if not records:
        detail = f"; unrecognised entries: {unknown[:3]}" if unknown else ""
        raise LayoutError(NAME, rgb_dir, f"no HDF5 file in the WMCA naming found{detail}", EXPECTED_LAYOUT)
    return IndexResult(records=records, unknown=unknown)
