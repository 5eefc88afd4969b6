"""CelebA-Spoof (ECCV 2020) from its official release.

Layout (reference notes, section 1)::

    <root>/Data/{train,test}/<subject>/{live,spoof}/<image_id>.{jpg,png} + <image_id>_BB.txt
    <root>/metas/intra_test/{train,test}_label.json
    <root>/metas/protocol1/{train,test}_label.json                       (optional)
    <root>/metas/protocol2/test_on_{low,middle,high}_quality_device/{train,test}_label.json   (optional)

- Live/spoof from the folder (``live``/``spoof``); the spoof type, illumination and environment from the 44-value
  label vector (indices 40, 41, 42). A folder that disagrees with vector[43] is reported in ``unknown``.
- Protocols in ``extra["protocols"]``: ``intra_test``, ``protocol1``, ``protocol2_low``, ``protocol2_middle``,
  ``protocol2_high`` (each {name: "train" | "test"}). JSON keys are resolved from the root: a test list may point into
  ``Data/train`` (upstream issue #10), so the split comes from the list, never from the folder.
- Camera quality from protocol 2, by elimination over all six lists: ``test_on_X/test_label.json`` holds test images
  of sensor group X, and ``test_on_X/train_label.json`` holds training images of the *other two* groups. So each
  image starts with the candidates {low, medium, high}; a test list of X keeps only X, a train list of X removes X;
  one candidate left is its ``camera_quality`` (training images are listed in two train lists, which leaves their
  group). Images in no list, or with two candidates left, keep ``camera_quality=None``; the data module can fill
  them with the image-based rule :func:`fasvlm.data_modules.transforms.estimate_camera_quality`. **Conflicts**:
  about 1,200 test images of the release are listed in both the low and the high test list; no candidate is left, so
  they get ``camera_quality=None`` (no group is guessed) and ``IndexResult.report["protocol2_conflicts"]`` gives the
  count, examples and this rule. Their protocol membership is kept as the lists state it.
- Label entries whose image file is missing are never indexed; ``report["missing_images"]`` counts them with
  examples (one directory listing per folder, no media opened).
- Face boxes: ``<id>_BB.txt`` holds ``x y w h score`` in coordinates of the image resized to 224x224. They are stored
  as given in ``bbox`` with ``extra["bbox_space"] = [224, 224]``; :func:`fasvlm.data_modules.record.resolve_bbox`
  scales them to the decoded image and clamps (negative values, boxes past the border). Empty or malformed BB files
  give ``bbox=None`` and are counted in ``extra``-free form in the adapter's log. ``read_boxes=False`` skips the BB
  reads (they are text files, not media, so ``--index-only`` still reads them by default).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ..record import ATTACK, LIVE, SampleRecord
from ..taxonomy import CELEBA_SPOOF_TYPES, ENVIRONMENTS, ILLUMINATIONS
from . import IndexResult, LayoutError

NAME = "celeba_spoof"
DESCRIPTION = "CelebA-Spoof (images; intra_test, protocol1, protocol2 low/middle/high)"
MEDIA = "image"
EXPECTED_LAYOUT = """\
<root>/
  Data/{train,test}/<subject>/{live,spoof}/<image_id>.{jpg,png}   + <image_id>_BB.txt
  metas/intra_test/{train,test}_label.json        (required)
  metas/protocol1/{train,test}_label.json         (optional)
  metas/protocol2/test_on_{low,middle,high}_quality_device/{train,test}_label.json   (optional)"""

log = logging.getLogger(__name__)

_QUALITY_DIRS = {"low": "test_on_low_quality_device", "medium": "test_on_middle_quality_device",
                 "high": "test_on_high_quality_device"}
_P2_NAMES = {"low": "protocol2_low", "medium": "protocol2_middle", "high": "protocol2_high"}


def _load_json(path: Path) -> dict[str, list[int]]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err}); expected {{\"Data/.../<id>.jpg\": [44 ints], ...}}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object mapping image paths to 44-value label vectors")
    return data


def read_bb(path: Path) -> tuple[float, float, float, float] | None:
    """Parse a ``<id>_BB.txt``: ``x y w h score`` (224x224 space). None for a missing, empty or malformed file."""
    try:
        parts = path.read_text().split()
    except OSError:
        return None
    if len(parts) < 4:
        return None
    try:
        x, y, w, h = (float(v) for v in parts[:4])
    except ValueError:
        return None
    return (x, y, w, h)


def index(root: Path, *, domain: str | None = None, read_boxes: bool = True) -> IndexResult:
    root = Path(root)
    metas = root / "metas" / "intra_test"
    lists = {split: metas / f"{split}_label.json" for split in ("train", "test")}
    if not (root / "Data").is_dir():
        raise LayoutError(NAME, root / "Data", "no Data/ directory", EXPECTED_LAYOUT)
    missing = [str(p) for p in lists.values() if not p.is_file()]
    if missing:
        raise LayoutError(NAME, root, f"missing label lists {missing}", EXPECTED_LAYOUT)

    protocols: dict[str, dict[str, str]] = {}  # key -> {protocol: split}
    labels: dict[str, list[int]] = {}
    for split, path in lists.items():
        for key, vec in _load_json(path).items():
            labels[key] = vec
            protocols.setdefault(key, {})["intra_test"] = split
    p1 = root / "metas" / "protocol1"
    for split in ("train", "test"):
        if (p1 / f"{split}_label.json").is_file():
            for key in _load_json(p1 / f"{split}_label.json"):
                protocols.setdefault(key, {})["protocol1"] = split
    candidates: dict[str, set[str]] = {}  # key -> camera-quality groups the protocol-2 lists leave possible
    for q, sub in _QUALITY_DIRS.items():
        d = root / "metas" / "protocol2" / sub
        for split in ("train", "test"):
            if (d / f"{split}_label.json").is_file():
                for key in _load_json(d / f"{split}_label.json"):
                    protocols.setdefault(key, {})[_P2_NAMES[q]] = split
                    left = candidates.setdefault(key, set(_QUALITY_DIRS))
                    if split == "test":
                        left &= {q}
                    else:
                        left.discard(q)
    conflicts = sorted(k for k, left in candidates.items() if not left)
    quality = {k: next(iter(left)) for k, left in candidates.items() if len(left) == 1}

    records: list[SampleRecord] = []
    unknown: list[str] = []
    missing: list[str] = []
    listing: dict[Path, set[str]] = {}
    n_no_box = 0
    for key, vec in labels.items():
        folder = (root / key).parent
        if folder not in listing:
            try:
                listing[folder] = set(os.listdir(folder))
            except OSError:
                listing[folder] = set()
        if Path(key).name not in listing[folder]:
            missing.append(key)
            continue
        if not isinstance(vec, list) or len(vec) != 44:
            unknown.append(f"{key}: label vector has {len(vec) if isinstance(vec, list) else '?'} values, expected 44")
            continue
        parts = Path(key).parts
        # Data/<split>/<subject>/<live|spoof>/<id>.<ext>
        if len(parts) != 5 or parts[0] != "Data" or parts[3] not in ("live", "spoof"):
            unknown.append(f"{key}: path does not match Data/<split>/<subject>/<live|spoof>/<id>.<ext>")
            continue
        label = LIVE if parts[3] == "live" else ATTACK
        if int(vec[43]) != label:
            unknown.append(f"{key}: folder says {parts[3]} but label[43] = {vec[43]}")
            continue
        spoof_type = int(vec[40])
        if not 0 <= spoof_type < len(CELEBA_SPOOF_TYPES) or (spoof_type == 0) != (label == LIVE):
            unknown.append(f"{key}: spoof type {spoof_type} does not fit a {parts[3]} image")
            continue
        illum, env = int(vec[41]), int(vec[42])
        bbox = None
        if read_boxes:
            bbox = read_bb(root / Path(key).with_name(Path(key).stem + "_BB.txt"))
            n_no_box += bbox is None
        image_id = Path(key).stem
        records.append(
            SampleRecord(
                path=str(root / key),
                label=label,
                attack=CELEBA_SPOOF_TYPES[spoof_type],
                domain=domain or NAME,
                subject=parts[2],
                video=image_id,
                split=protocols[key]["intra_test"],
                frame=0,
                illumination=ILLUMINATIONS[illum - 1] if 1 <= illum <= 4 else None,
                environment=ENVIRONMENTS[env - 1] if 1 <= env <= 2 else None,
                camera_quality=quality.get(key),
                bbox=bbox,
                extra={"protocols": protocols[key], "bbox_space": [224, 224], "attributes": vec[:40]},
            )
        )
    if n_no_box:
        log.warning("%s: %d images have no usable face box (empty or malformed _BB.txt); they use the full image",
                    root, n_no_box)
    report: dict = {}
    if conflicts:
        report["protocol2_conflicts"] = {
            "count": len(conflicts), "examples": conflicts[:5],
            "rule": "listed in the test lists of two sensor groups (or in a train and the test list of one group): "
                    "camera_quality left None (not guessed); protocol-2 membership kept as listed"}
        log.warning("%s: %d images have conflicting protocol-2 camera-quality lists (e.g. %s); camera_quality left "
                    "None", root, len(conflicts), conflicts[:3])
    if missing:
        report["missing_images"] = {"count": len(missing), "examples": missing[:5],
                                    "rule": "label-file entries without their image are not indexed"}
        log.warning("%s: %d label-file entries have no image (e.g. %s); they are not indexed", root, len(missing),
                    missing[:3])
    return IndexResult(records=records, unknown=unknown, report=report)
