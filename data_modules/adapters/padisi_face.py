"""PADISI-Face (USC ISI, ICCV 2021): 2,029 preprocessed face samples (1,105 bona fide, 924 attacks), 360 people.

Layout (official repo ``vimal-isi-edu/PADISI_USC_Dataset``, README_FACE.md; reference notes, section 15): the csv
files come from the repo, the media from the approved download::

    padisi_USC_FACE_ground_truth.csv                          (also found under data/face_partitions/)
    padisi_USC_FACE_dataset_partition_3folds_part{0,1,2}.csv
    padisi_USC_FACE_dataset_partition_all_test.csv
    padisi_USC_FACE_preprocessed.bz2                          COLOR: one joblib dict for all samples
    <folder>/ID_<transaction_id>_<trial_id>_<trial_name>.npz  MULTI-SPECTRAL: one file per sample

The COLOR joblib holds ``data`` (2029, 3, 320, 256) floats in [0, 1], **BGR**, ``identifiers``
(``ID_<transaction_id>_<trial_id>_<trial_name>``), ``labels``, ``pai_codes``; each npz holds ``data``
(1, 22, 320, 256): channels 0-2 BGR, 3 NIR, 4 depth, 5 thermal, 6-10 NIR-left, 11-15 NIR-right, 16-21 SWIR.
Indexing never opens them: one record per ground-truth row whose media exists. ``path`` is the COLOR joblib when
present (``extra["media"]="joblib"``), else the sample's npz (``extra["media"]="npz"``);
``extra["identifier"]`` names the sample inside the joblib and ``extra["npz"]`` holds the npz path when there is
one; the multi-spectral channels ``extra["ir"]`` (RealSense NIR, channel 3), ``extra["depth"]`` (4) and
``extra["thermal"]`` (5) then point at that npz too. Neither container is an image file: :func:`read_media` (the
hook for ``fasvlm prepare``) and :func:`load_color` turn them into HWC uint8 images (RGB; the stored order is BGR).
Faces are pre-cropped (320x256): ``bbox`` None. The joblib is a pickle: it is read by :func:`safe_joblib_load`,
which admits numpy arrays and plain containers only (anything else is an error naming the file; nothing runs).

Labels from the ground-truth code only: ``m00000`` bona fide; ``m5<CC><SS>`` attack with PAI code CC and species SS.
PAI codes -> taxonomy: 01 partial funny eyes -> ``funny_eye``, 02 paper -> ``print``, 03 mask mannequin ->
``mannequin``, 04 mask half -> ``half_mask``, 05 mask transparent -> ``transparent_mask``,
06 makeup -> ``makeup``, 07 mask silicone -> ``silicone_mask``, 08 partial paper glasses -> ``paper_glasses``,
09 tattoo -> ``tattoo``. Rows with another code are reported in ``IndexResult.unknown``.

Protocols: ``"fold0"``, ``"fold1"``, ``"fold2"`` (the 3-fold partitions; valid -> "val") and ``"all_test"``;
``split`` is fold 0's. ``subject`` is ``participant_id``; ``video`` the identifier; demographics, trial name,
glasses and expression go to ``extra``.
"""

from __future__ import annotations

import csv
import functools
import re
from pathlib import Path

from ..record import ATTACK, LIVE, SampleRecord
from . import IndexResult, LayoutError

NAME = "padisi_face"
DESCRIPTION = "PADISI-Face (ICCV 2021): preprocessed COLOR joblib / multi-spectral npz, 9 PAI codes, 3 folds + all_test"
MEDIA = "image"
EXPECTED_LAYOUT = """\
<root>/
  padisi_USC_FACE_ground_truth.csv                         (or data/face_partitions/...)
  padisi_USC_FACE_dataset_partition_3folds_part{0,1,2}.csv
  padisi_USC_FACE_dataset_partition_all_test.csv
  padisi_USC_FACE_preprocessed.bz2                         (COLOR, joblib)  and/or
  <folder>/ID_<transaction_id>_<trial_id>_<trial_name>.npz (MULTI-SPECTRAL)
"""

GROUND_TRUTH = "padisi_USC_FACE_ground_truth.csv"
COLOR_FILE = "padisi_USC_FACE_preprocessed.bz2"
PARTITIONS = {
    "fold0": "padisi_USC_FACE_dataset_partition_3folds_part0.csv",
    "fold1": "padisi_USC_FACE_dataset_partition_3folds_part1.csv",
    "fold2": "padisi_USC_FACE_dataset_partition_3folds_part2.csv",
    "all_test": "padisi_USC_FACE_dataset_partition_all_test.csv",
}
PAI_CODES = {
    "01": "funny_eye",
    "02": "print",
    "03": "mannequin",
    "04": "half_mask",
    "05": "transparent_mask",
    "06": "makeup",
    "07": "silicone_mask",
    "08": "paper_glasses",
    "09": "tattoo",
}
_PARTITION_SPLITS = {"train": "train", "valid": "val", "val": "val", "test": "test"}
_CODE = re.compile(r"^m5(\d{2})(\d{2})$")
_TRIAL = re.compile(r"^FACE_(?:(NEUTRAL|SMILE|FROWN)_)?(WITH|WITHOUT)_GLASS")
_CSV_DIRS = ("", "data/face_partitions", "face_partitions", "partitions", "csv")


def identifier(transaction_id: str, trial_id: str, trial_name: str) -> str:
    """The sample identifier used by the joblib and the npz file names."""
    return f"ID_{transaction_id}_{trial_id}_{trial_name}"


NPZ_CHANNELS = {"ir": 3, "depth": 4, "thermal": 5}


def _to_uint8_hwc(chw):
    """(C, H, W) floats in [0, 1] -> (H, W, C) uint8."""
    import numpy as np

    return np.ascontiguousarray((np.clip(chw, 0, 1) * 255).round().astype(np.uint8).transpose(1, 2, 0))


class UnsafePickleError(ValueError):
    """A pickle/joblib file names something other than numpy arrays and plain containers; nothing of it was run."""


# (module, name) the restricted unpickler resolves: numpy arrays, dtypes and scalars (numpy 1 and 2 module paths),
# and the few builtins that plain containers and bytes need under pickle protocols < 4. Everything else (os.system,
# subprocess.Popen, builtins.eval, any class) is refused before it is called.
SAFE_GLOBALS = frozenset({
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "bytearray"), ("builtins", "complex"),
    ("_codecs", "encode"), ("collections", "OrderedDict"),
})
_COMPRESSION = ((b"BZh", "bz2"), (b"\x1f\x8b", "gzip"), (b"\xfd7zXZ\x00", "lzma"), (b"\x5d\x00\x00", "lzma"))


def _open_decompressed(path: Path):
    """The joblib file's pickle stream: bz2, gzip, xz/lzma (detected from the magic bytes) or uncompressed."""
    import bz2
    import gzip
    import lzma

    with open(path, "rb") as f:
        magic = f.read(6)
    kind = next((k for prefix, k in _COMPRESSION if magic.startswith(prefix)), None)
    if kind == "bz2":
        return bz2.open(path, "rb")
    if kind == "gzip":
        return gzip.open(path, "rb")
    if kind == "lzma":
        return lzma.open(path, "rb")
    if magic.startswith(b"ZF"):
        raise UnsafePickleError(f"{path}: joblib's pre-0.10 zlib format is not read; re-save it with joblib.dump")
    return open(path, "rb")


def safe_joblib_load(path: str | Path):
    """``joblib.load`` restricted to numpy arrays and plain containers (dict, list, tuple, str, numbers, bytes).

    joblib writes arrays as ``NumpyArrayWrapper`` records followed by their raw bytes; its ``NumpyUnpickler`` is
    subclassed here so that ``find_class`` resolves only :data:`SAFE_GLOBALS` and that wrapper (object-dtype arrays,
    which would hold a nested pickle, are refused too). Anything else raises :class:`UnsafePickleError` naming the
    file and the global; as the global is refused before it is called, nothing of the file runs.
    """
    import inspect
    import pickle

    import numpy as np
    from joblib import numpy_pickle

    path = Path(path)

    class _SafeArrayWrapper(numpy_pickle.NumpyArrayWrapper):
        def read(self, unpickler, *args, **kwargs):
            if np.dtype(self.dtype).hasobject or self.subclass is not np.ndarray:
                raise UnsafePickleError(f"{path}: refused an object-dtype or subclassed array in the joblib file")
            return super().read(unpickler, *args, **kwargs)

    class _Restricted(numpy_pickle.NumpyUnpickler):
        def find_class(self, module, name):
            if (module, name) == ("joblib.numpy_pickle", "NumpyArrayWrapper"):
                return _SafeArrayWrapper
            if (module, name) in SAFE_GLOBALS:
                return super().find_class(module, name)
            raise UnsafePickleError(
                f"{path}: refused to load: it references {module}.{name}, but a PADISI-Face COLOR file holds only "
                "numpy arrays and plain containers (dict, list, str, numbers). Use the file of the official download."
            )

    # joblib >= 1.5 takes ensure_native_byte_order; earlier versions do not
    takes = "ensure_native_byte_order" in inspect.signature(numpy_pickle.NumpyUnpickler.__init__).parameters
    native = {"ensure_native_byte_order": True} if takes else {}
    with _open_decompressed(path) as stream:
        try:
            return _Restricted(str(path), stream, **native).load()
        except UnsafePickleError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
            raise UnsafePickleError(f"{path}: not a readable joblib file ({type(err).__name__}: {err})") from err


@functools.lru_cache(maxsize=1)
def _color_bundle(path: str) -> tuple[object, dict[str, int]]:
    """The COLOR joblib (every sample; loaded once per process, through :func:`safe_joblib_load`) and its
    identifier -> row index."""
    bundle = safe_joblib_load(path)
    if not isinstance(bundle, dict) or "data" not in bundle or "identifiers" not in bundle:
        raise UnsafePickleError(f"{path}: expected a dict with 'data' and 'identifiers' (the PADISI-Face COLOR file)")
    return bundle["data"], {ident: i for i, ident in enumerate(bundle["identifiers"])}


def load_color(path: str | Path, identifiers=None) -> dict[str, object]:
    """HWC uint8 **RGB** images keyed by identifier, from the COLOR joblib (``.bz2``) or one multi-spectral ``.npz``.

    The joblib holds every sample; it is loaded once per process and kept (pass the ``identifiers`` you need, None =
    all). Needs joblib for the ``.bz2`` (installed with scikit-learn).
    """
    import numpy as np

    path = Path(path)
    if path.suffix.lower() == ".npz":
        with np.load(path) as npz:
            data = npz["data"]
        return {path.stem: _to_uint8_hwc(data[0, 2::-1])}  # BGR -> RGB
    data, rows = _color_bundle(str(path))
    wanted = rows if identifiers is None else identifiers
    return {ident: _to_uint8_hwc(np.asarray(data[rows[ident]])[::-1]) for ident in wanted}


def read_media(rec: SampleRecord, channel: str = "rgb") -> dict[int, object]:
    """``{0: HxWx3 uint8}`` for a PADISI-Face record: RGB from the joblib or npz, or one multi-spectral channel
    (``"ir"``, ``"depth"``, ``"thermal"``, from the npz) replicated to three channels."""
    import numpy as np

    ident = rec.extra["identifier"]
    if channel == "rgb":
        return {0: load_color(rec.path, [ident])[ident]}
    if channel not in NPZ_CHANNELS:
        raise ValueError(f"unknown PADISI-Face channel {channel!r}; valid: rgb, {', '.join(NPZ_CHANNELS)}")
    if "npz" not in rec.extra:
        raise FileNotFoundError(f"{ident}: no multi-spectral .npz file for channel {channel!r}")
    with np.load(rec.extra["npz"]) as npz:
        plane = npz["data"][0, NPZ_CHANNELS[channel]]
    return {0: np.repeat(_to_uint8_hwc(plane[None]), 3, axis=2)}


def _find_csv(root: Path, name: str) -> Path | None:
    for d in _CSV_DIRS:
        p = root / d / name
        if p.is_file():
            return p
    return None


def _read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", errors="replace") as f:
        return [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in csv.DictReader(f)]


def index(root: Path, *, domain: str | None = None) -> IndexResult:
    """Index the release at ``root`` (see the module docstring); no media is opened. ``domain``: the records'
    domain name (default: the dataset name)."""
    root = Path(root).absolute()
    domain = domain or NAME
    if not root.is_dir():
        raise LayoutError(NAME, root, "directory does not exist", EXPECTED_LAYOUT)
    gt_path = _find_csv(root, GROUND_TRUTH)
    if gt_path is None:
        raise LayoutError(NAME, root, f"{GROUND_TRUTH} not found (copy it from the official repo)", EXPECTED_LAYOUT)
    color = next((p for p in sorted(root.rglob(COLOR_FILE)) if p.is_file()), None)
    npz = {p.stem: p for p in sorted(root.rglob("ID_*.npz")) if p.is_file()}
    if color is None and not npz:
        raise LayoutError(NAME, root, f"no media: neither {COLOR_FILE} nor ID_*.npz files found", EXPECTED_LAYOUT)

    partitions: dict[str, dict[str, str]] = {}
    for protocol, fname in PARTITIONS.items():
        p = _find_csv(root, fname)
        if p is None:
            continue
        for row in _read_rows(p):
            split = _PARTITION_SPLITS.get(row.get("partition_name", "").lower())
            if split is not None:
                ident = identifier(row["transaction_id"], row["trial_id"], row["trial_name"])
                partitions.setdefault(ident, {})[protocol] = split

    records: list[SampleRecord] = []
    unknown: list[str] = []
    known = set()
    for i, row in enumerate(_read_rows(gt_path)):
        try:
            ident = identifier(row["transaction_id"], row["trial_id"], row["trial_name"])
        except KeyError as err:
            raise LayoutError(NAME, gt_path, f"ground-truth csv lacks column {err}", EXPECTED_LAYOUT) from err
        known.add(ident)
        code = row.get("ground_truth", "")
        m = _CODE.match(code)
        if code == "m00000":
            label, attack, pai = LIVE, "live", {}
        elif m and m[1] in PAI_CODES:
            label, attack, pai = ATTACK, PAI_CODES[m[1]], {"pai_code": m[1], "pai_species": m[2]}
        else:
            unknown.append(f"{gt_path.name}:{i + 2} ({ident}: ground_truth {code!r})")
            continue
        sample_npz = npz.get(ident)
        if color is None and sample_npz is None:
            continue  # multi-spectral copy without this sample
        protocols = partitions.get(ident, {})
        extra = {
            "media": "joblib" if color is not None else "npz",
            "identifier": ident,
            "protocols": dict(protocols),
            "ground_truth": code,
            "trial_name": row.get("trial_name"),
            "transaction_id": row.get("transaction_id"),
            "trial_id": row.get("trial_id"),
            **pai,
        }
        t = _TRIAL.match(row.get("trial_name", ""))
        if t:
            extra["glasses"] = t[2] == "WITH"
            if t[1]:
                extra["expression"] = t[1].lower()
        for key in ("gender", "ethnicity", "race", "age"):
            if row.get(key):
                extra[key] = row[key]
        if sample_npz is not None:
            extra["npz"] = str(sample_npz)
            extra.update({channel: str(sample_npz) for channel in NPZ_CHANNELS})
        records.append(
            SampleRecord(
                path=str(color if color is not None else sample_npz),
                label=label,
                attack=attack,
                domain=domain,
                subject=row.get("participant_id") or ident,
                video=ident,
                split=protocols.get("fold0", "test"),
                frame=0,
                extra=extra,
            )
        )
    unknown.extend(p.relative_to(root).as_posix() for stem, p in npz.items() if stem not in known)
    if not records:
        detail = f"; unrecognised entries: {unknown[:3]}" if unknown else ""
        raise LayoutError(NAME, root, f"no ground-truth row has media{detail}", EXPECTED_LAYOUT)
    return IndexResult(records=records, unknown=unknown)
