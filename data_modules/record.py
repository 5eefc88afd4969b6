"""The sample record: one row of a manifest (docs/design.md, "Contracts").

Every adapter yields :class:`SampleRecord` objects; ``fasvlm prepare`` writes them as the rows of
``manifest.parquet``; :class:`~fasvlm.data_modules.datamodule.FASDataModule` reads them back.

Label polarity is fixed project-wide: ``label 1 = attack``, ``label 0 = live``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "LIVE",
    "ATTACK",
    "SampleRecord",
    "MANIFEST_COLUMNS",
    "records_to_frame",
    "read_manifest",
    "write_manifest",
    "resolve_bbox",
    "count_by",
]

LIVE = 0
ATTACK = 1


@dataclass
class SampleRecord:
    """One frame or image.

    ``path`` is absolute, or relative to the manifest's directory. ``bbox`` is ``(x, y, w, h)`` in pixels of the
    stored image, or None. Style attributes use the taxonomy's names (:mod:`fasvlm.data_modules.taxonomy`) or None
    when the dataset does not say.
    """

    path: str
    label: int  # 0 live, 1 attack
    attack: str  # unified taxonomy name ("live" for bona fide)
    domain: str  # dataset name, e.g. "celeba_spoof"
    subject: str
    video: str  # groups frames of one video; image datasets: the image id
    split: str  # "train", "val", "test" (official split)
    frame: int = 0
    illumination: str | None = None
    environment: str | None = None
    camera_quality: str | None = None
    bbox: tuple[float, float, float, float] | None = None
    # Free-form, dataset specific (protocol membership, sensor, session, ...). Stored as JSON in the manifest.
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.label not in (LIVE, ATTACK):
            raise ValueError(f"label must be 0 (live) or 1 (attack), got {self.label!r} for {self.path}")
        if (self.label == LIVE) != (self.attack == "live"):
            raise ValueError(f"label {self.label} and attack {self.attack!r} disagree for {self.path}")

    @property
    def sample_id(self) -> str:
        """Unique id of the sample across datasets: ``<domain>/<video>/<frame>``."""
        return f"{self.domain}/{self.video}/{self.frame}"

    def to_row(self) -> dict[str, Any]:
        row = dataclasses.asdict(self)
        row["bbox"] = None if self.bbox is None else [float(v) for v in self.bbox]
        row["extra"] = json.dumps(self.extra, sort_keys=True)
        row["sample_id"] = self.sample_id
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> SampleRecord:
        kwargs = {f.name: row.get(f.name) for f in dataclasses.fields(cls)}
        bbox = kwargs.get("bbox")
        kwargs["bbox"] = None if bbox is None or _is_nan(bbox) else tuple(float(v) for v in bbox)
        extra = kwargs.get("extra")
        kwargs["extra"] = json.loads(extra) if isinstance(extra, str) and extra else {}
        kwargs["label"] = int(kwargs["label"])
        kwargs["frame"] = int(kwargs.get("frame") or 0)
        for key in ("illumination", "environment", "camera_quality"):
            if _is_nan(kwargs.get(key)):
                kwargs[key] = None
        return cls(**kwargs)


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and value != value


MANIFEST_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(SampleRecord)) + ("sample_id",)


def records_to_frame(records: Iterable[SampleRecord]):
    """Records -> pandas DataFrame with :data:`MANIFEST_COLUMNS`."""
    import pandas as pd

    rows = [r.to_row() for r in records]
    return pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))


def write_manifest(records: Iterable[SampleRecord], path: str | Path) -> Path:
    """Write records to ``path`` (parquet) atomically: a crash never leaves a half-written manifest."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    records_to_frame(records).to_parquet(tmp, index=False)
    tmp.replace(path)
    return path


def read_manifest(path: str | Path) -> list[SampleRecord]:
    """Read a manifest written by :func:`write_manifest`; relative paths resolve against its directory."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"manifest not found: {path}. Create it with `fasvlm prepare --dataset NAME --root RAW --out DIR` "
            "(it writes DIR/manifest.parquet) or `fasvlm synth`."
        )
    frame = pd.read_parquet(path)
    missing = [c for c in ("path", "label", "attack", "domain", "video", "split") if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: not a fasvlm manifest, missing columns {missing}; expected {list(MANIFEST_COLUMNS)}")
    records = []
    for row in frame.to_dict("records"):
        if row.get("bbox") is not None and not _is_nan(row["bbox"]):
            row["bbox"] = list(row["bbox"])
        rec = SampleRecord.from_row(row)
        if not Path(rec.path).is_absolute():
            rec.path = str(path.parent / rec.path)
        records.append(rec)
    return records


def count_by(records: Sequence[SampleRecord], *keys: str) -> dict[tuple, int]:
    """Counts of records grouped by the given attributes, e.g. ``count_by(recs, "split", "label")``."""
    out: dict[tuple, int] = {}
    for r in records:
        k = tuple(getattr(r, key) for key in keys)
        out[k] = out.get(k, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: tuple(str(x) for x in kv[0])))


def resolve_bbox(record: SampleRecord, width: int, height: int) -> tuple[int, int, int, int] | None:
    """The record's face box as integer ``(x, y, w, h)`` pixels of a decoded ``width x height`` image, or None.

    Boxes given in a reference space (``extra["bbox_space"] = [W0, H0]``, e.g. CelebA-Spoof's 224x224) are scaled
    as the official CelebA-Spoof code does (``int(v * W / 224)``), then clamped to the image. Degenerate boxes
    (w or h < 3 after clamping, as Intel's loader drops them) give None.
    """
    if record.bbox is None:
        return None
    x, y, w, h = record.bbox
    space = record.extra.get("bbox_space") if record.extra else None
    if space:
        sx, sy = width / float(space[0]), height / float(space[1])
        x, y, w, h = int(x * sx), int(y * sy), int(w * sx), int(h * sy)
    x1, y1 = max(0, int(x)), max(0, int(y))
    x2, y2 = min(width, int(x + w)), min(height, int(y + h))
    if x2 - x1 < 3 or y2 - y1 < 3:
        return None
    return (x1, y1, x2 - x1, y2 - y1)
