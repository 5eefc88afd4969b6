"""``fasvlm prepare``: index a raw release, sample video frames, crop faces, write a manifest.

    fasvlm prepare --dataset replay_attack --root RAW/replayattack --out data/prepared/replay_attack

What ``--out DIR`` holds afterwards:

- ``manifest.parquet``: one :class:`~fasvlm.data_modules.record.SampleRecord` per crop; ``path`` is relative to DIR
  (``crops/...``). Video frames keep the adapter's ``video`` id and get ``frame`` = the frame index in the video.
  ``extra`` adds ``crop`` (the source of the face: "box" shipped by the release | "detector" (dlib) | "haar" |
  "center" | "full", tried in that order, see :mod:`fasvlm.data_modules.faces`), ``detector`` (which one found it:
  "release", "dlib", "dlib_cnn", "haar"), ``align`` ("none" | "five_point") and ``landmarks`` (dlib's 5 points in raw
  pixels, with ``--align five_point``), ``source`` (the raw file relative to ``--root``), ``source_bbox`` (the face
  box in raw pixels), ``num_frames`` for videos, and ``channel`` when it is not RGB. ``bbox`` is the face box in crop
  pixels (for aligned crops: the bounding box of the warped box; None for centre and full crops).
- ``crops/<raw path relative to --root, suffix dropped>/<frame:05d>.webp`` for videos (and for several records that
  share one raw file), ``crops/<raw path, suffix dropped>.webp`` for images and frame files (``--format``: lossless
  WebP by default, or png / jpg). Face crops are ``--size`` plus ``--pad`` context on each side (224 -> 278 px), so
  that the training crop's jitter stays inside them and the DataModule's workers only decode them
  (docs/data_path.md); centre and whole-image crops are ``--size``.
- ``summary.json`` (counts per split/label/attack, crop sources overall and per split and label (``crop_by_split``),
  alignment, failures, the adapter's ``index_report`` (e.g. list conflicts, missing images, protocols that cannot be
  built), settings including ``detector_order``), ``failures.csv`` (path, video,
  reason: unreadable media, no face with ``--no-face skip``), ``unknown_files.txt`` (files that match no naming rule of
  the adapter), and ``.prepare/`` (settings and the done-list that makes a second run skip finished items).

``--show-layout`` prints the dataset's expected tree and options and exits (docs/datasets.md has, per dataset, where
to obtain it, its licence and the folder to pass as ``--root``). ``--index-only`` writes the adapter's records as they are (absolute raw paths, videos as one record with
``frame = -1``) without opening any media.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import importlib
import json
import os
import re
import shlex
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from . import faces as _faces
from . import video as _video
from .adapters import LayoutError, adapter_names, check_options, get_adapter
from .record import SampleRecord, count_by, resolve_bbox, write_manifest
from .workers import worker_context

__all__ = [
    "PrepareOptions", "PrepareResult", "PrepareError", "prepare", "build_parser", "main", "show_layout",
    "resolve_detector", "detector_order", "encode_image", "read_image",
]

MANIFEST = "manifest.parquet"
SUMMARY = "summary.json"
FAILURES = "failures.csv"
UNKNOWN = "unknown_files.txt"
STATE_DIR = ".prepare"
CHANNELS = ("rgb", "depth", "ir")
# Releases whose images are already face crops (reference datasets.md section 0: "none needed (faces already
# cropped)", "background removed", "320x256 crops"): ``--crop auto`` resizes them whole. An adapter may set
# ``PRECROPPED = True/False`` to override.
PRECROPPED_DATASETS = frozenset({"wmca", "casia_surf", "casia_cefa", "hifimask", "padisi_face"})
FORMATS = ("png", "jpg", "webp")  # webp is lossless (docs/data_path.md)
# Context stored around each face crop on every side, as a fraction of --size: 1.5 x the training crop's jitter
# (faces.CROP_JITTER = 0.08), so that the DataModule's jittered windows stay inside the stored crop and its workers
# only decode it (224 -> 278 px).
DEFAULT_PAD = 0.12
ALIGNS = ("none", "five_point")


class PrepareError(ValueError):
    """A problem the user fixes by changing the command (message says how)."""


@dataclass(frozen=True)
class PrepareOptions:
    """Settings of one ``prepare`` run; the CLI flags map one to one."""

    index_only: bool = False
    # frame rule (fasvlm.data_modules.video): None = "ssdg" for videos, "all" for frame folders and images
    frames: str | None = None
    num_frames: int = 10  # k of --frames uniform
    max_frame: int | None = None  # sample only among the first K frames (SiW protocol 1 trains on the first 60)
    size: int = 224
    margin: float = 0.2
    pad: float = DEFAULT_PAD  # context around face crops on each side, fraction of size (0: crops of exactly size)
    channels: str = "rgb"
    detector: str = "auto"  # faces.DETECTORS: auto (dlib with the faces extra, else haar) | dlib | dlib_cnn | haar | none
    align: str = "none"  # "none" (square box crop with --margin) | "five_point" (similarity to the template; dlib)
    align_padding: float = _faces.FIELD_PADDING  # template padding of --align five_point (InstructFLIP: 0.37)
    no_face: str = "center"  # "center" (crop the centre, flagged) | "skip" (listed in failures.csv)
    crop: str = "auto"  # "auto" (full for PRECROPPED_DATASETS, else face) | "face" | "full"
    image_format: str = "webp"  # lossless; docs/data_path.md has the format study
    jpeg_quality: int = 95
    workers: int = 0  # 0 or 1: in this process
    limit: int | None = None  # first N items only (smoke runs)
    retry_failed: bool = False
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        checks = [
            (self.frames is None or self.frames in _video.FRAME_RULES, f"--frames must be one of {_video.FRAME_RULES}"),
            (self.num_frames > 0, "--num-frames must be positive"),
            (self.max_frame is None or self.max_frame > 0, "--max-frame must be positive"),
            (self.size > 0, "--size must be positive"),
            (self.margin > -1.0, "--margin must be > -1 (0.2 = 20% larger than the face box)"),
            (0.0 <= self.pad <= 1.0, "--pad must be in [0, 1] (0.12 = 12% of --size on each side)"),
            (self.channels in CHANNELS, f"--channels must be one of {CHANNELS}"),
            (self.detector in _faces.DETECTORS, f"--detector must be one of {_faces.DETECTORS}"),
            (self.align in ALIGNS, f"--align must be one of {ALIGNS}"),
            (self.align_padding >= 0, "--align-padding must be >= 0"),
            (self.no_face in ("center", "skip"), "--no-face must be center or skip"),
            (self.crop in ("auto", "face", "full"), "--crop must be auto, face or full"),
            (self.image_format in FORMATS, f"--format must be one of {FORMATS}"),
        ]
        for ok, message in checks:
            if not ok:
                raise PrepareError(message)


@dataclass
class PrepareResult:
    out: Path
    records: list[SampleRecord]
    failures: list[tuple[str, str, str]]
    unknown: list[str]
    processed: int  # items whose media were read in this run
    skipped: int  # items restored from the done-list of an earlier run
    summary: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------------- jobs


@dataclass
class _Job:
    """One raw media file to read: a video (several frames) or an image/frame file, shared by ``records``."""

    key: str
    kind: str  # "video" | "image" | "media" (a container the adapter's read_media opens: WMCA HDF5, PADISI joblib)
    source: str  # absolute path of the file read (RGB, or the depth/IR file)
    rel_source: str  # ``source`` relative to --root
    crop_base: str  # relative to --out, no suffix
    per_frame: bool  # crops are <crop_base>/<frame:05d>.<fmt> (videos, containers, files shared by several frames)
    records: list[SampleRecord]


@dataclass
class _Outcome:
    key: str
    records: list[SampleRecord]
    failures: list[tuple[str, str, str]]


def _is_video(rec: SampleRecord) -> bool:
    return rec.extra.get("media") == "video" or rec.frame == -1 or _video.is_video_path(rec.path)


def _abs(path: str, root: Path) -> Path:
    p = Path(path)
    return p if p.is_absolute() else root / p


def _relative(path: Path, root: Path, fallback: str) -> str:
    rel = os.path.relpath(path, root)
    if rel.startswith(".."):
        return "_external/" + _safe(fallback)
    return Path(rel).as_posix()


def _channel_path(rec: SampleRecord, channel: str) -> str | None:
    return rec.path if channel == "rgb" else rec.extra.get(channel)


def _select_frames(records: list[SampleRecord], options: PrepareOptions) -> list[SampleRecord]:
    """Apply --frames/--max-frame to frame-folder releases: the rule picks among each video's frame records."""
    if options.frames in (None, "all") and options.max_frame is None:
        return records
    rule = options.frames or "all"
    groups: dict[str, list[int]] = {}
    for i, rec in enumerate(records):
        if not _is_video(rec):
            groups.setdefault(rec.video, []).append(i)
    keep = set(range(len(records)))
    for members in groups.values():
        members.sort(key=lambda i: records[i].frame)
        chosen = {members[p] for p in _video.sample_indices(len(members), rule, options.num_frames, options.max_frame)}
        keep -= set(members) - chosen
    return [rec for i, rec in enumerate(records) if i in keep]


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def _build_jobs(records: list[SampleRecord], root: Path, options: PrepareOptions, media_hook: bool) -> list[_Job]:
    """Group records by the media file (and frame) they need; ``media_hook``: the adapter reads its own containers."""
    jobs: dict[str, _Job] = {}
    shared: Counter[str] = Counter()
    for rec in records:
        channel_path = _channel_path(rec, options.channels)
        if channel_path is None:
            continue  # reported by the caller
        # containers (HDF5, joblib) are read by the adapter's read_media, which picks the channel itself
        source = _abs(rec.path if media_hook else channel_path, root)
        rel = _relative(source, root, rec.sample_id)
        kind = "media" if media_hook else "video" if _is_video(rec) else "image"
        key = {"video": rel, "image": f"{rel}#{rec.frame}"}.get(kind, f"{rel}#{rec.video}#{rec.frame}")
        if key in jobs:  # the same file and frame listed twice (e.g. two records): read once
            jobs[key].records.append(rec)
            continue
        if kind != "video":
            shared[rel] += 1
        base = "crops/" + (rel.rsplit(".", 1)[0] if "." in Path(rel).name else rel)
        jobs[key] = _Job(key, kind, str(source), rel, base, kind != "image", [rec])
    bases = Counter(job.crop_base for job in jobs.values() if job.kind == "image")
    for job in jobs.values():
        if job.kind == "image" and bases[job.crop_base] > 1:
            job.crop_base = "crops/" + job.rel_source  # a.jpg and a.png side by side: keep the suffix in the name
        if shared[job.rel_source] > 1:
            if job.kind == "image":
                job.per_frame = True  # several frames stored in one file: one crop per frame
            elif job.kind == "media":
                job.crop_base += "/" + _safe(job.records[0].video)  # one container holds many samples (PADISI)
    return list(jobs.values())


# -------------------------------------------------------------------------------------------------------- workers


class _Worker:
    """Per-process state: the adapter (for ``read_faces``), the lazily built detectors and the settings."""

    def __init__(self, adapter: ModuleType, options: PrepareOptions, crop_mode: str, out: Path):
        self.adapter, self.options, self.crop_mode, self.out = adapter, options, crop_mode, out
        self._detectors: list[tuple[str, Any]] | None = None
        self._landmarks: _faces.FiveLandmarks | None = None
        read_faces = getattr(adapter, "read_faces", None)
        self._read_faces = functools.lru_cache(maxsize=64)(read_faces) if read_faces else None

    @property
    def detectors(self) -> list[tuple[str, Any]]:
        """``(crop flag, detector)`` in the order tried: the chosen detector ("detector"), then Haar ("haar")."""
        if self._detectors is None:
            name = self.options.detector  # resolved by prepare(): never "auto" here
            chain: list[tuple[str, Any]] = []
            if name in ("dlib", "dlib_cnn"):
                chain.append(("detector", _faces.make_detector(name)))
            if name != "none":
                chain.append(("haar", _faces.HaarFaceDetector()))
            self._detectors = chain
        return self._detectors

    @property
    def landmarks(self) -> _faces.FiveLandmarks:
        if self._landmarks is None:
            self._landmarks = _faces.FiveLandmarks()
        return self._landmarks

    def face_boxes(self, rec: SampleRecord) -> tuple[dict[int, Any], str | None]:
        face_file = rec.extra.get("face_file")
        if not face_file or self._read_faces is None:
            return {}, None
        try:
            return dict(self._read_faces(str(face_file))), None
        except Exception as err:  # a broken face file falls back to the detector, and says so in the manifest
            return {}, f"{type(err).__name__}: {err}"

    def find_face(self, image: np.ndarray, box) -> tuple[_faces.Face | None, str]:
        """The face to crop and its source flag: the shipped box, else each detector in turn; (None, "none")."""
        h, w = image.shape[:2]
        found = _faces.clean_box(box, w, h)
        if found is not None:
            return _faces.Face(found, None, 1.0, "release"), "box"
        for flag, detector in self.detectors:
            faces = detector.detect_faces(image)
            if faces:
                return faces[0], flag
        return None, "none"

    def crop(self, image: np.ndarray, box) -> tuple[np.ndarray | None, str, Any, Any, dict[str, Any]]:
        """(crop, flag, box in crop pixels, box in raw pixels, manifest extras); crop None when --no-face skip found
        no face. Extras: ``detector`` (which detector found the face) and ``align`` ("five_point" | "none")."""
        size = self.options.size
        if self.crop_mode == "full":
            return _faces.resize_full(image, size), "full", None, None, {}
        face, flag = self.find_face(image, box)
        if face is None:
            if self.options.no_face == "skip":
                return None, "none", None, None, {}
            return _faces.crop_center(image, size), "center", None, None, {"align": "none"}
        info: dict[str, Any] = {"detector": face.detector, "align": "none"}
        if self.options.align == "five_point":
            if face.landmarks is None:
                face = _faces.with_landmarks(face, self.landmarks(image, face.box))
            crop, matrix = _faces.align_array(image, face, size, self.options.align_padding)
            info.update(align="five_point", landmarks=[[round(float(v), 1) for v in p] for p in face.landmarks])
            return crop, flag, _faces.transform_box(face.box, matrix), face.box, info
        crop, crop_box = _faces.crop_box(image, face.box, size, self.options.margin, self.options.pad)
        return crop, flag, crop_box, face.box, info

    def write(self, rel: str, image: np.ndarray) -> None:
        path = self.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        data = encode_image(image, path.suffix[1:], self.options.jpeg_quality, where=path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)

    def output(self, job: _Job, rel: str, frame: int | None, flag: str, crop_box, raw_box, extra: dict) -> list:
        out = []
        for rec in job.records:
            new_extra = dict(rec.extra)
            new_extra.pop("bbox_space", None)  # the new bbox is in crop pixels
            new_extra.update(extra)
            new_extra.update(crop=flag, source=job.rel_source, media="image")
            if raw_box is not None:
                new_extra["source_bbox"] = [round(float(v), 2) for v in raw_box]
            if self.options.channels != "rgb":
                new_extra["channel"] = self.options.channels
            bbox = None if crop_box is None else tuple(round(float(v), 2) for v in crop_box)
            out.append(
                dataclasses.replace(
                    rec, path=rel, frame=rec.frame if frame is None else frame, bbox=bbox, extra=new_extra
                )
            )
        return out

    def run(self, job: _Job) -> _Outcome:
        try:
            if job.kind == "video":
                return self._run_video(job)
            return self._run_media(job) if job.kind == "media" else self._run_image(job)
        except ModuleNotFoundError:
            raise  # a missing optional dependency (h5py for WMCA) fails every item: stop and say so
        except Exception as err:  # never crash a long run on one item; the reason goes to failures.csv
            return _Outcome(job.key, [], [(job.source, job.records[0].video, f"error: {type(err).__name__}: {err}")])

    def _run_video(self, job: _Job) -> _Outcome:
        o = self.options
        rec0 = job.records[0]
        rule = o.frames or "ssdg"
        asked: list[int] = []  # the frame counts sampling was asked for: the header's first, then the decoded one

        def pick(n: int) -> list[int]:
            asked.append(n)
            return _video.sample_indices(n, rule, o.num_frames, o.max_frame)

        try:
            n, frames = _video.read_video_frames(job.source, pick)
        except _video.VideoReadError as err:
            return _Outcome(job.key, [], [(job.source, rec0.video, f"unreadable video: {err}")])
        if not frames:
            return _Outcome(job.key, [], [(job.source, rec0.video, "no frames: the video is empty")])
        outcome = self._crop_frames(job, frames, {"num_frames": n, "source_media": "video"})
        if asked and n < asked[0]:  # listed, frames kept: sampled again from the frames that decode
            outcome.failures.append((job.source, rec0.video, f"truncated video: header {asked[0]} frames, "
                                     f"{n} decodable; sampled frames {sorted(frames)} of those"))
        return outcome

    def _run_media(self, job: _Job) -> _Outcome:
        """A container read by the adapter's ``read_media(record, channel) -> {frame: HxWx3 uint8}``."""
        o = self.options
        rec0 = job.records[0]
        try:
            frames = self.adapter.read_media(rec0, o.channels)
        except ModuleNotFoundError:
            raise
        except Exception as err:
            return _Outcome(job.key, [], [(job.source, rec0.video, f"unreadable media: {type(err).__name__}: {err}")])
        keys = sorted(frames)
        if rec0.frame >= 0:  # one sample of the container
            pick = [rec0.frame] if rec0.frame in frames else keys if len(keys) == 1 else []
        else:  # a sequence of frames, sampled like a frame folder
            positions = _video.sample_indices(len(keys), o.frames or "all", o.num_frames, o.max_frame)
            pick = [keys[p] for p in positions]
        if not pick:
            return _Outcome(job.key, [], [(job.source, rec0.video, f"no frames: frame {rec0.frame} not in the file")])
        chosen = {i: np.ascontiguousarray(frames[i]) for i in pick}
        return self._crop_frames(job, chosen, {"num_frames": len(keys), "source_media": rec0.extra.get("media")})

    def _crop_frames(self, job: _Job, frames: dict[int, np.ndarray], extra: dict[str, Any]) -> _Outcome:
        rec0 = job.records[0]
        boxes, face_error = self.face_boxes(rec0)
        if face_error:
            extra["face_file_error"] = face_error
        records, failures = [], []
        for index, image in frames.items():
            box = _record_box(rec0, image)
            if box is None:
                box = _faces.nearest_box(boxes, index)
            crop, flag, crop_box, raw_box, info = self.crop(image, box)
            if crop is None:
                failures.append((job.source, rec0.video, f"no face in frame {index}"))
                continue
            rel = f"{job.crop_base}/{index:05d}.{self.options.image_format}"
            self.write(rel, crop)
            records += self.output(job, rel, index, flag, crop_box, raw_box, {**extra, **info})
        return _Outcome(job.key, records, failures)

    def _run_image(self, job: _Job) -> _Outcome:
        o = self.options
        rec0 = job.records[0]
        try:
            image = read_image(job.source)
        except Exception as err:
            return _Outcome(job.key, [], [(job.source, rec0.video, f"unreadable image: {type(err).__name__}: {err}")])
        extra: dict[str, Any] = {}
        box = _record_box(rec0, image)
        if box is None:
            boxes, face_error = self.face_boxes(rec0)
            box = _faces.nearest_box(boxes, rec0.frame, max_gap=0)
            if face_error:
                extra["face_file_error"] = face_error
        crop, flag, crop_box, raw_box, info = self.crop(image, box)
        extra.update(info)
        if crop is None:
            return _Outcome(job.key, [], [(job.source, rec0.video, "no face")])
        if job.per_frame:
            rel = f"{job.crop_base}/{rec0.frame:05d}.{o.image_format}"
        else:
            rel = f"{job.crop_base}.{o.image_format}"
        self.write(rel, crop)
        return _Outcome(job.key, self.output(job, rel, None, flag, crop_box, raw_box, extra), [])


def _record_box(rec: SampleRecord, image: np.ndarray):
    """The record's own box in pixels of ``image`` (scaled from ``extra["bbox_space"]`` as CelebA-Spoof's code does)."""
    if rec.bbox is None:
        return None
    return resolve_bbox(rec, image.shape[1], image.shape[0])


def encode_image(image: np.ndarray, image_format: str, jpeg_quality: int = 95, *, where: Path | None = None) -> bytes:
    """RGB uint8 ``(H, W, 3)`` as the bytes of a ``png`` (zlib level 3), ``jpg`` (``jpeg_quality``) or lossless
    ``webp`` file."""
    import cv2

    params = {"png": [cv2.IMWRITE_PNG_COMPRESSION, 3], "jpg": [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality],
              "webp": [cv2.IMWRITE_WEBP_QUALITY, 101]}  # WebP quality above 100 = lossless
    if image_format not in params:
        raise PrepareError(f"unknown crop format {image_format!r}; valid: {', '.join(FORMATS)}")
    ok, buf = cv2.imencode("." + image_format, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params[image_format])
    if not ok:
        raise OSError(f"cannot encode {where or 'a crop'} as {image_format}")
    return buf.tobytes()


def read_image(path: str | Path) -> np.ndarray:
    """An image file as RGB uint8 ``(H, W, 3)``; 16-bit depth maps are scaled to 0-255, grey is replicated."""
    from PIL import Image

    with Image.open(path) as im:
        if im.mode.startswith("I") or im.mode == "F":
            arr = np.asarray(im, dtype=np.float32)
            top = float(arr.max()) or 1.0
            grey = np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8)
            return np.repeat(grey[..., None], 3, axis=2)
        return np.asarray(im.convert("RGB"))


_WORKER: _Worker | None = None


def _init_worker(adapter_module: str, options: PrepareOptions, crop_mode: str, out: str, sys_path: list[str]) -> None:
    global _WORKER
    for entry in reversed(sys_path):  # the parent's import path, so adapter modules outside the package import too
        if entry not in sys.path:
            sys.path.insert(0, entry)
    try:
        import cv2

        cv2.setNumThreads(1)  # the pool is the parallelism
    except ImportError:
        pass
    _WORKER = _Worker(importlib.import_module(adapter_module), options, crop_mode, Path(out))


def _work(job: _Job) -> _Outcome:
    assert _WORKER is not None, "worker not initialised"
    return _WORKER.run(job)


def _start_pool(n_jobs: int, adapter: ModuleType, options: PrepareOptions, crop_mode: str, out: Path):
    """A worker pool, or None to work in this process (``workers <= 1`` or a single item).

    Workers never fork from this process (:func:`~.workers.worker_context`); the fork server has imported this module
    (the package import, which pulls in Lightning, is paid once).
    """
    if options.workers <= 1 or n_jobs <= 1:
        return None
    ctx = worker_context(__name__)
    workers = min(options.workers, n_jobs)
    return ctx.Pool(workers, _init_worker, (adapter.__name__, options, crop_mode, str(out), list(sys.path)))


def _results(pool, jobs: list[_Job], adapter: ModuleType, options: PrepareOptions, crop_mode: str, out: Path):
    if pool is None:
        worker = _Worker(adapter, options, crop_mode, out)
        return (worker.run(job) for job in jobs)
    chunk = max(1, min(16, len(jobs) // (pool._processes * 8)))
    return pool.imap_unordered(_work, jobs, chunksize=chunk)


# ---------------------------------------------------------------------------------------------------- state files


def resolve_detector(name: str) -> str:
    """``--detector auto`` -> ``dlib`` when the ``faces`` extra is installed, else ``haar``; other names as given."""
    return ("dlib" if _faces.dlib_available() else "haar") if name == "auto" else name


def detector_order(detector: str, crop_mode: str = "face") -> list[str]:
    """The sources tried for each crop, in order (summary.json ``settings.detector_order``)."""
    if crop_mode == "full":
        return ["full"]
    chain = ["box"] + ({"dlib": ["dlib"], "dlib_cnn": ["dlib_cnn"]}.get(detector, []))
    return chain + (["haar"] if detector != "none" else []) + ["center"]


def _resolve_faces(options: PrepareOptions, crop_mode: str) -> PrepareOptions:
    """Resolve ``--detector auto``; refuse dlib or ``--align five_point`` without the ``faces`` extra."""
    detector = resolve_detector(options.detector)
    needs_dlib = detector in ("dlib", "dlib_cnn") or (options.align == "five_point" and crop_mode != "full")
    if needs_dlib and not _faces.dlib_available():
        what = f"--detector {detector}" if detector in ("dlib", "dlib_cnn") else "--align five_point (landmarks)"
        raise PrepareError(f"{what} needs the faces extra (dlib-bin and face-recognition-models): "
                           "pip install 'fasvlm[faces]', or use --detector haar --align none")
    return dataclasses.replace(options, detector=detector)


def _settings(name: str, root: Path, options: PrepareOptions, crop_mode: str, adapter_options: dict) -> dict:
    return {
        "dataset": name,
        "root": str(root),
        "adapter_options": {k: adapter_options[k] for k in sorted(adapter_options)},
        "frames": options.frames,
        "num_frames": options.num_frames,
        "max_frame": options.max_frame,
        "size": options.size,
        "margin": options.margin,
        "pad": options.pad,
        "channels": options.channels,
        "detector": options.detector,
        "detector_order": detector_order(options.detector, crop_mode),
        "align": options.align,
        "align_padding": options.align_padding if options.align == "five_point" else None,
        "no_face": options.no_face,
        "crop": crop_mode,
        "format": options.image_format,
    }


# what a directory prepared before the --pad option (issue 20) holds: crops of exactly --size
SETTINGS_BEFORE_PAD = {"pad": 0.0}


def _check_state(out: Path, settings: dict, options: PrepareOptions) -> Path:
    state = out / STATE_DIR
    if options.overwrite:
        shutil.rmtree(state, ignore_errors=True)
        shutil.rmtree(out / "crops", ignore_errors=True)
    state.mkdir(parents=True, exist_ok=True)
    saved_path = state / "settings.json"
    if saved_path.is_file():
        saved = {**SETTINGS_BEFORE_PAD, **json.loads(saved_path.read_text())}
        diff = {k: (saved.get(k), v) for k, v in settings.items() if saved.get(k) != v}
        if diff:
            lines = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
            raise PrepareError(
                f"{out} was prepared with other settings ({lines}). Pass the earlier values to continue it (a "
                "directory prepared before --pad and WebP crops: --pad 0 --format png), use another --out, or pass "
                "--overwrite to delete the earlier crops and start again."
            )
    else:
        saved_path.write_text(json.dumps(settings, indent=2) + "\n")
    return state / "done.jsonl"


def _load_done(path: Path) -> dict[str, _Outcome]:
    done: dict[str, _Outcome] = {}
    if not path.is_file():
        return done
    with path.open("rb+") as f:  # a crash can cut the last line: end it so that new lines start clean
        f.seek(0, os.SEEK_END)
        if f.tell() > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")
    with path.open() as f:
        for line in f:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash; that item is simply redone
            records = [SampleRecord.from_row(row) for row in entry["records"]]
            done[entry["key"]] = _Outcome(entry["key"], records, [tuple(x) for x in entry["failures"]])
    return done


def _done_line(outcome: _Outcome) -> str:
    rows = []
    for rec in outcome.records:
        row = rec.to_row()
        row.pop("sample_id")
        rows.append(row)
    return json.dumps({"key": outcome.key, "records": rows, "failures": [list(x) for x in outcome.failures]}) + "\n"


def _finished(outcome: _Outcome, out: Path, retry_failed: bool) -> bool:
    if not outcome.records:
        return not retry_failed
    return all((out / rec.path).is_file() for rec in outcome.records)


def _write_failures(path: Path, failures: Iterable[tuple[str, str, str]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "video", "reason"])
        writer.writerows(failures)
    tmp.replace(path)


# --------------------------------------------------------------------------------------------------------- driver


def _resolve_adapter(dataset: str | ModuleType) -> ModuleType:
    return dataset if isinstance(dataset, ModuleType) else get_adapter(dataset)


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def prepare(
    dataset: str | ModuleType,
    root: str | Path,
    out: str | Path,
    options: PrepareOptions | None = None,
    adapter_options: dict[str, Any] | None = None,
) -> PrepareResult:
    """Index ``root`` with the adapter of ``dataset`` and write ``out`` (see the module docstring).

    ``dataset`` is a registered adapter name, or an adapter module (tests); worker processes re-import the module by
    its ``__name__``.
    """
    options = options or PrepareOptions()
    adapter_options = dict(adapter_options or {})
    started = time.perf_counter()
    adapter = _resolve_adapter(dataset)
    name = getattr(adapter, "NAME", adapter.__name__)
    root = Path(root).absolute()
    out = Path(out).absolute()
    if not root.is_dir():
        raise LayoutError(name, root, "directory does not exist", getattr(adapter, "EXPECTED_LAYOUT", ""))
    try:
        check_options(adapter, adapter_options)
    except TypeError as err:
        raise PrepareError(f"{err} (pass them as --adapter-option KEY=VALUE)") from err
    result = adapter.index(root, **adapter_options)
    out.mkdir(parents=True, exist_ok=True)
    warn = _console(stderr=True)
    unknown_path = out / UNKNOWN
    if result.unknown:
        unknown_path.write_text("".join(f"{u}\n" for u in result.unknown))
        warn.print(
            f"[yellow]warning:[/] {len(result.unknown)} files under {root} match no naming rule of {name}; "
            f"they are not in the manifest and are listed in {unknown_path}"
        )
    elif unknown_path.exists():
        unknown_path.unlink()
    for key, value in result.report.items():
        from rich.markup import escape

        warn.print(f"[yellow]warning:[/] {name} index: {key}: {escape(json.dumps(value))} (also in {out / SUMMARY})")

    if options.index_only:
        records = [dataclasses.replace(r, path=str(_abs(r.path, root))) for r in result.records]
        return _finish(out, name, root, records, [], result.unknown, 0, 0, options, {}, started, index_only=True,
                       report=result.report)

    crop_mode = options.crop
    if crop_mode == "auto":
        crop_mode = "full" if getattr(adapter, "PRECROPPED", name in PRECROPPED_DATASETS) else "face"
    if options.channels != "rgb" and not any(options.channels in r.extra for r in result.records):
        available = sorted({k for r in result.records for k in r.extra if k in CHANNELS})
        raise PrepareError(
            f"{name} records carry no {options.channels!r} channel (extra[{options.channels!r}]); "
            f"available: rgb{''.join(', ' + a for a in available)}"
        )
    options = _resolve_faces(options, crop_mode)
    settings = _settings(name, root, options, crop_mode, adapter_options)
    done_path = _check_state(out, settings, options)
    done = _load_done(done_path)

    missing_channel = [r for r in result.records if _channel_path(r, options.channels) is None]
    media_hook = callable(getattr(adapter, "read_media", None))
    jobs = _build_jobs(_select_frames(result.records, options), root, options, media_hook)
    if options.limit is not None:
        jobs = jobs[: options.limit]
    todo = [job for job in jobs if not (job.key in done and _finished(done[job.key], out, options.retry_failed))]
    skipped = len(jobs) - len(todo)

    outcomes: dict[str, _Outcome] = {job.key: done[job.key] for job in jobs if job.key in done}
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    pool = _start_pool(len(todo), adapter, options, crop_mode, out)
    try:
        with done_path.open("a") as done_file, Progress(*columns, console=warn, disable=not options.progress) as bar:
            task = bar.add_task(f"prepare {name}", total=len(todo))
            n_failed = 0
            for outcome in _results(pool, todo, adapter, options, crop_mode, out):
                outcomes[outcome.key] = outcome
                done_file.write(_done_line(outcome))
                done_file.flush()
                n_failed += len(outcome.failures)
                bar.update(task, advance=1, description=f"prepare {name} ({n_failed} failures)")
        if pool is not None:
            pool.close()
            pool.join()
    except ModuleNotFoundError as err:
        raise PrepareError(f"reading {name} media needs the Python package {err.name!r}: {err}") from err
    finally:
        if pool is not None:
            pool.terminate()

    records: list[SampleRecord] = []
    failures: list[tuple[str, str, str]] = []
    for job in jobs:
        outcome = outcomes[job.key]
        records += outcome.records
        failures += outcome.failures
    for rec in missing_channel:
        failures.append((rec.path, rec.video, f"no {options.channels} channel for this record"))
    return _finish(out, name, root, records, failures, result.unknown, len(todo), skipped, options, settings, started,
                   report=result.report)


def _finish(
    out: Path,
    name: str,
    root: Path,
    records: list[SampleRecord],
    failures: list[tuple[str, str, str]],
    unknown: list[str],
    processed: int,
    skipped: int,
    options: PrepareOptions,
    settings: dict,
    started: float,
    index_only: bool = False,
    report: dict | None = None,
) -> PrepareResult:
    write_manifest(records, out / MANIFEST)
    _write_failures(out / FAILURES, failures)
    summary = _summary(name, root, out, records, failures, unknown, processed, skipped, settings, index_only)
    summary["index_report"] = report or {}
    summary["elapsed_s"] = round(time.perf_counter() - started, 3)
    (out / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    if options.progress:
        _print_summary(summary)
    return PrepareResult(out, records, failures, unknown, processed, skipped, summary)


def _reason_kind(reason: str) -> str:
    """'unreadable video: pyav: ...' -> 'unreadable video'; 'no face in frame 56' -> 'no face'."""
    return re.sub(r" in frame \d+$", "", reason.split(":", 1)[0])


def _summary(name, root, out, records, failures, unknown, processed, skipped, settings, index_only) -> dict:
    by_split: dict[str, dict[str, int]] = {}
    for (split, label), n in count_by(records, "split", "label").items():
        by_split.setdefault(split, {"live": 0, "attack": 0})["live" if label == 0 else "attack"] += n
    protocols: dict[str, dict[str, int]] = {}
    for rec in records:
        for proto, split in (rec.extra.get("protocols") or {}).items():
            protocols.setdefault(str(proto), Counter())[str(split)] += 1
    reasons = Counter(_reason_kind(reason) for _, _, reason in failures)
    return {
        "dataset": name,
        "root": str(root),
        "manifest": str(out / MANIFEST),
        "index_only": index_only,
        "records": len(records),
        "videos": len({r.video for r in records}),
        "counts": [
            {"split": s, "label": lab, "attack": a, "count": n}
            for (s, lab, a), n in count_by(records, "split", "label", "attack").items()
        ],
        "by_split": by_split,
        "protocols": {p: dict(sorted(c.items())) for p, c in sorted(protocols.items())},
        "crop": dict(sorted(Counter(r.extra.get("crop", "none") for r in records).items())) if not index_only else {},
        "crop_by_split": {} if index_only else _crop_by_split(records),
        "align": {} if index_only else dict(sorted(Counter(r.extra.get("align", "none") for r in records).items())),
        "failures": len(failures),
        "failures_by_reason": dict(sorted(reasons.items())),
        "unknown_files": len(unknown),
        "items": {"processed": processed, "skipped_done": skipped},
        "settings": settings,
    }


def _crop_by_split(records: list[SampleRecord]) -> dict[str, dict[str, dict[str, int]]]:
    """{split: {"live"|"attack": {crop source: count}}}: how many crops came from the shipped box, the detector,
    Haar, the centre fallback (or whole-image resizes)."""
    out: dict[str, dict[str, Counter]] = {}
    for rec in records:
        by_label = out.setdefault(rec.split, {"live": Counter(), "attack": Counter()})
        by_label["live" if rec.label == 0 else "attack"][str(rec.extra.get("crop", "none"))] += 1
    return {split: {lab: dict(sorted(c.items())) for lab, c in v.items()} for split, v in sorted(out.items())}


def _print_summary(summary: dict) -> None:
    from rich.table import Table

    table = Table(title=f"{summary['dataset']}: {summary['records']} records, {summary['videos']} videos")
    for col in ("split", "label", "attack", "count"):
        table.add_column(col, justify="right" if col == "count" else "left")
    for row in summary["counts"]:
        table.add_row(row["split"], "attack" if row["label"] else "live", row["attack"], str(row["count"]))
    console = _console()
    console.print(table)
    if summary["crop"]:
        order = " -> ".join(summary["settings"].get("detector_order", []))
        console.print("crops: " + ", ".join(f"{k} {v}" for k, v in summary["crop"].items())
                      + (f"   (tried in order: {order})" if order else ""))
        for split, by_label in summary["crop_by_split"].items():
            console.print(f"  {split}: " + "; ".join(
                f"{lab} " + ", ".join(f"{k} {v}" for k, v in c.items()) for lab, c in by_label.items() if c))

    console.print(
        f"failures: {summary['failures']} {summary['failures_by_reason'] or ''} unknown files: "
        f"{summary['unknown_files']}  items processed: {summary['items']['processed']}, skipped (done earlier): "
        f"{summary['items']['skipped_done']}  ({summary['elapsed_s']} s)"
    )
    console.print(f"manifest: {summary['manifest']}")


# ------------------------------------------------------------------------------------------------------------ CLI


def show_layout(dataset: str) -> str:
    """What ``--show-layout`` prints: the adapter's expected tree, the folder to pass as ``--root`` and its options
    (read from the adapter module; no file is opened)."""
    from .adapters import index_options

    adapter = get_adapter(dataset)
    options = ", ".join(f"{k}={p.default!r}" for k, p in index_options(adapter).items())
    return (
        f"{dataset}: {getattr(adapter, 'DESCRIPTION', '')}\n"
        f"Expected tree (pass the folder shown as <root> with --root):\n{adapter.EXPECTED_LAYOUT.rstrip()}\n"
        f"Adapter options (--adapter-option KEY=VALUE): {options or 'none'}\n"
        f"Where to obtain it, its licence and notes: docs/datasets.md#{dataset.replace('_', '-')}"
    )


def _dataset_epilog() -> str:
    lines = ["datasets:"]
    for name in adapter_names():
        try:
            description = getattr(get_adapter(name), "DESCRIPTION", "")
        except Exception:  # an adapter that fails to import still shows its name
            description = "(adapter not available)"
        lines.append(f"  {name:<20} {description}")
    return "\n".join(lines)


def _parse_option(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def build_parser() -> argparse.ArgumentParser:
    names = adapter_names()
    parser = argparse.ArgumentParser(
        prog="fasvlm prepare",
        description="Index a raw FAS release in its official layout, sample video frames, crop faces, and write "
        "OUT/manifest.parquet (+ OUT/crops, summary.json, failures.csv). A second run resumes.",
        epilog=_dataset_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dataset", required=True, choices=names, metavar="NAME", help="one of: " + ", ".join(names))
    parser.add_argument("--root", type=Path, help="the release's top directory (official layout; --show-layout)")
    parser.add_argument("--out", type=Path, help="output directory, e.g. data/prepared/<dataset>")
    parser.add_argument(
        "--show-layout", action="store_true",
        help="print the dataset's expected tree and the folder to pass as --root, then exit (reads nothing)",
    )
    parser.add_argument("--index-only", action="store_true", help="only write the manifest of the index; open no media")
    parser.add_argument(
        "--frames",
        choices=_video.FRAME_RULES,
        default=None,
        help="frame rule: ssdg = frames 6 and 6+N//2 (SSDG/FLIP, MCIO), uniform = --num-frames evenly spread, all. "
        "Default: ssdg for videos, all frames for frame-folder releases",
    )
    parser.add_argument("--num-frames", type=int, default=10, help="k for --frames uniform (default 10)")
    parser.add_argument("--max-frame", type=int, default=None, help="sample only among the first K frames")
    parser.add_argument("--size", type=int, default=224, help="crop side in pixels (default 224)")
    parser.add_argument(
        "--margin", type=float, default=0.2, help="relative margin: crop side = max(w, h) * (1 + margin) (default 0.2)"
    )
    parser.add_argument(
        "--pad", type=float, default=DEFAULT_PAD,
        help=f"context kept around face crops on each side, fraction of --size (default {DEFAULT_PAD}: 224 px crops "
        "are stored at 278 px, so that the training crop's jitter stays inside the stored image and the loader only "
        "decodes it); 0: crops of exactly --size",
    )
    parser.add_argument("--channels", choices=CHANNELS, default="rgb", help="which channel of multi-modal releases")
    parser.add_argument(
        "--detector",
        choices=_faces.DETECTORS,
        default="auto",
        help="face detector when the release ships no box: dlib (HOG, faces extra), dlib_cnn (MMOD CNN, slower), "
        "haar (OpenCV), none; auto = dlib when the faces extra is installed, else haar. Haar is always the fallback "
        "after dlib, then the flagged centre crop",
    )
    parser.add_argument(
        "--align",
        choices=ALIGNS,
        default="none",
        help="none: square crop around the box (--margin); five_point: similarity transform of dlib's eye centres "
        "and nose to the field's MTCNN template (faces extra; see docs/datasets.md)",
    )
    parser.add_argument(
        "--align-padding", type=float, default=_faces.FIELD_PADDING,
        help=f"template padding of --align five_point (default {_faces.FIELD_PADDING}, InstructFLIP's)",
    )
    parser.add_argument(
        "--no-face",
        choices=("center", "skip"),
        default="center",
        help="no box and no detection: crop the centre (flagged crop=center) or skip (listed in failures.csv)",
    )
    parser.add_argument(
        "--crop",
        choices=("auto", "face", "full"),
        default="auto",
        help="face: box/detector/centre crop; full: resize whole images (releases of face crops); "
        f"auto: full for releases of face crops ({', '.join(sorted(PRECROPPED_DATASETS))}), else face",
    )
    parser.add_argument(
        "--format", dest="image_format", choices=FORMATS, default="webp",
        help="crop file format: webp (lossless, default), png (lossless, slower to decode) or jpg (--jpeg-quality; "
        "fastest to decode, but its artefacts are added to every crop, live or attack: docs/data_path.md)",
    )
    parser.add_argument("--jpeg-quality", type=int, default=95)
    parser.add_argument(
        "--workers", type=int, default=min(8, os.cpu_count() or 1), help="worker processes (0 = in this process)"
    )
    parser.add_argument("--limit", type=int, default=None, help="process only the first N items (smoke runs)")
    parser.add_argument("--retry-failed", action="store_true", help="retry items that failed in an earlier run")
    parser.add_argument("--overwrite", action="store_true", help="delete earlier crops and state in OUT first")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar or table")
    parser.add_argument(
        "--hf", action="store_true",
        help="also write OUT/manifest.hf: the manifest as a Hugging Face `datasets` folder (save_to_disk) with a "
        "dataset card; usable wherever a manifest is (data configs' `manifest:`)",
    )
    parser.add_argument(
        "--hf-image", choices=("embed", "path"), default="embed",
        help="with --hf: embed the crops in the Arrow files (Image feature; the folder needs no crop files) or store "
        "their paths only (default embed)",
    )
    parser.add_argument(
        "--adapter-option",
        action="append",
        default=[],
        type=_parse_option,
        metavar="KEY=VALUE",
        help="extra keyword for the adapter's index() (repeatable; VALUE parsed as JSON when it can be)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``fasvlm prepare``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.show_layout:
        print(show_layout(args.dataset))
        return 0
    missing = [flag for flag, value in (("--root", args.root), ("--out", args.out)) if value is None]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)} (or --show-layout)")
    try:
        options = PrepareOptions(
            index_only=args.index_only,
            frames=args.frames,
            num_frames=args.num_frames,
            max_frame=args.max_frame,
            size=args.size,
            margin=args.margin,
            pad=args.pad,
            channels=args.channels,
            detector=args.detector,
            align=args.align,
            align_padding=args.align_padding,
            no_face=args.no_face,
            crop=args.crop,
            image_format=args.image_format,
            jpeg_quality=args.jpeg_quality,
            workers=args.workers,
            limit=args.limit,
            retry_failed=args.retry_failed,
            overwrite=args.overwrite,
            progress=args.progress,
        )
        result = prepare(args.dataset, args.root, args.out, options, dict(args.adapter_option))
        if args.hf:
            from .hf_datasets import write_prepared

            command = "fasvlm prepare " + shlex.join(sys.argv[1:] if argv is None else argv)
            folder = write_prepared(result.out, result.records, result.summary, image=args.hf_image, command=command,
                                    description=getattr(get_adapter(args.dataset), "DESCRIPTION", ""),
                                    num_proc=args.workers, progress=options.progress)
            if options.progress:
                print(f"datasets folder: {folder}")
    except (PrepareError, LayoutError, NotImplementedError, FileExistsError) as err:
        print(f"fasvlm prepare: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
