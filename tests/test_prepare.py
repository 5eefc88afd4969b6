"""`fasvlm prepare` (frame sampling, face crops, resume, failures) and the protocol configs in conf/data/."""

from __future__ import annotations

import csv
import importlib
import io
import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from fasvlm.data_modules import faces, prepare, video
from fasvlm.data_modules.adapters import adapter_names, get_adapter
from fasvlm.data_modules.prepare import PrepareError, PrepareOptions, main
from fasvlm.data_modules.record import read_manifest

REPO = Path(__file__).resolve().parents[1]
FAST = dict(size=32, progress=False)


def _write_video(path: Path, n: int, size=(64, 48), box=None) -> Path:
    """n frames whose grey level is 10 * index (so a decoded frame tells its index); a white "face" at ``box``."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(n):
            img = np.full((h, w, 3), (10 * i) % 250, np.uint8)
            if box is not None:
                x, y, bw, bh = box
                img[y : y + bh, x : x + bw] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


# ------------------------------------------------------------------------------------------------ frame sampling


@pytest.mark.parametrize(
    "n, expected",
    [(100, [6, 56]), (20, [6, 16]), (13, [6, 12]), (8, [6, 7]), (7, [6]), (3, [2]), (1, [0]), (0, [])],
)
def test_ssdg_rule(n, expected):
    assert video.ssdg_indices(n) == expected


def test_uniform_and_limits():
    assert video.uniform_indices(10, 3) == [1, 5, 8]
    assert video.uniform_indices(100, 4) == [12, 37, 62, 87]
    assert video.uniform_indices(2, 5) == [0, 1]
    assert video.sample_indices(300, "ssdg", max_frame=60) == [6, 36]
    assert video.sample_indices(5, "all") == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="valid rules"):
        video.sample_indices(5, "every")


def test_read_video_frames_picks_the_right_frames(tmp_path):
    path = _write_video(tmp_path / "v.avi", 20)
    n, frames = video.read_video_frames(path, video.ssdg_indices)
    assert n == 20 and sorted(frames) == [6, 16]
    for index, image in frames.items():
        assert image.shape == (48, 64, 3) and image.dtype == np.uint8
        assert abs(float(image.mean()) - 10 * index) < 4  # the grey level encodes the frame index
    # the OpenCV fallback gives the same frames
    n2, frames2 = video._read_cv2(path, video.ssdg_indices)
    assert n2 == 20 and sorted(frames2) == [6, 16]
    assert abs(float(frames2[16].mean()) - 160) < 4


def test_display_rotation_turns_frames_upright():
    image = np.zeros((2, 3))
    image[0, 0] = 1  # a marker in the top-left corner of a landscape frame
    assert video._upright(image, 90).shape == (3, 2) and video._upright(image, 90)[2, 0] == 1  # counter-clockwise
    assert video._upright(image, -90)[0, 1] == 1 and video._upright(image, 0) is image


def test_corrupt_video_raises_video_read_error(tmp_path):
    bad = tmp_path / "bad.avi"
    bad.write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(video.VideoReadError, match="pyav.*cv2"):
        video.read_video_frames(bad, video.ssdg_indices)
    good = _write_video(tmp_path / "good.avi", 20).read_bytes()
    (tmp_path / "cut.avi").write_bytes(good[: len(good) // 3])
    with pytest.raises(video.VideoReadError):
        video.read_video_frames(tmp_path / "cut.avi", video.ssdg_indices)


# --------------------------------------------------------------------------------------------------- face crops


def test_crop_geometry_margin_padding_and_box_in_crop():
    image = np.zeros((100, 200, 3), np.uint8)
    image[20:60, 50:90] = 255  # a 40x40 "face"
    crop, box = faces.crop_box(image, (50, 20, 40, 40), size=40, margin=0.0)
    assert crop.shape == (40, 40, 3) and crop.min() == 255
    assert box == pytest.approx((0, 0, 40, 40))
    crop, box = faces.crop_box(image, (50, 20, 40, 40), size=80, margin=1.0)  # side 80 around the face
    assert box == pytest.approx((20, 20, 40, 40))
    assert crop[25:55, 25:55].min() == 255 and crop[:15].max() == 0
    # a face at the border: the square leaves the image and is padded, never stretched
    crop, box = faces.crop_box(image, (0, 0, 20, 40), size=40, margin=0.0)
    assert crop.shape == (40, 40, 3) and box == pytest.approx((10, 0, 20, 40))
    assert faces.clean_box((-5, -5, 20, 20), 200, 100) == (0, 0, 15, 15)
    assert faces.clean_box((10, 10, 2, 50), 200, 100) is None
    assert faces.clean_box((300, 10, 20, 20), 200, 100) is None
    assert faces.crop_center(image, 24).shape == (24, 24, 3)
    assert faces.nearest_box({3: (1, 1, 5, 5), 9: (2, 2, 5, 5)}, 7) == (2, 2, 5, 5)
    assert faces.nearest_box({3: (1, 1, 5, 5)}, 30) is None


def test_haar_detector_finds_nothing_on_a_flat_image():
    assert faces.HaarFaceDetector().detect(np.full((120, 160, 3), 128, np.uint8)) is None


# ------------------------------------------------------------------------------------ a fake adapter for prepare

# A minimal adapter over a release described by <root>/index.json; written to a file so that worker processes can
# import it by name like a registered adapter.
_FAKE_ADAPTER = """
import json
import sys
from pathlib import Path

from fasvlm.data_modules.adapters import IndexResult, LayoutError
from fasvlm.data_modules.record import SampleRecord

NAME = "fake_fas"
DESCRIPTION = "test release"
MEDIA = "video"
EXPECTED_LAYOUT = "<root>/index.json"


def index(root, **options):
    path = Path(root) / "index.json"
    if not path.is_file():
        raise LayoutError(NAME, root, "index.json missing", EXPECTED_LAYOUT)
    data = json.loads(path.read_text())
    records = []
    for row in data["records"]:
        row = dict(row)
        row["path"] = str(Path(root) / row["path"])
        if row.get("bbox") is not None:
            row["bbox"] = tuple(row["bbox"])
        records.append(SampleRecord(**row))
    return IndexResult(records, data.get("unknown", []))


def read_faces(path):
    out = {}
    for line in Path(path).read_text().splitlines():
        f, x, y, w, h = (int(v) for v in line.split())
        out[f] = (x, y, w, h)
    return out
"""


@pytest.fixture
def fake_adapter(tmp_path, monkeypatch):
    mod_dir = tmp_path / "adapter_mod"
    mod_dir.mkdir()
    (mod_dir / "fake_fas_adapter.py").write_text(textwrap.dedent(_FAKE_ADAPTER))
    monkeypatch.syspath_prepend(str(mod_dir))
    module = importlib.import_module("fake_fas_adapter")
    yield module
    sys.modules.pop("fake_fas_adapter", None)


def _rec(path, video_id, label=0, split="train", frame=-1, bbox=None, **extra):
    return {
        "path": path,
        "label": label,
        "attack": "live" if label == 0 else "print",
        "domain": "fake_fas",
        "subject": "1",
        "video": video_id,
        "split": split,
        "frame": frame,
        "bbox": bbox,
        "extra": {"media": "video", **extra} if frame == -1 else extra,
    }


def _release(root: Path, records, unknown=()):
    root.mkdir(parents=True, exist_ok=True)
    (root / "index.json").write_text(json.dumps({"records": records, "unknown": list(unknown)}))
    return root


def _failures(out: Path) -> list[dict]:
    with (out / "failures.csv").open() as f:
        return list(csv.DictReader(f))


@pytest.fixture
def mixed_release(tmp_path):
    """A good video with a shipped box, one with per-frame boxes, one with no box, a corrupt one, and an image."""
    root = tmp_path / "raw"
    _write_video(root / "live/boxed.avi", 20, box=(20, 10, 20, 24))
    _write_video(root / "live/perframe.avi", 12, box=(8, 8, 16, 16))
    (root / "faces").mkdir(parents=True)
    (root / "faces/perframe.txt").write_text("".join(f"{i} 8 8 16 16\n" for i in range(12) if i != 6))
    _write_video(root / "attack/nobox.avi", 10)
    (root / "attack/corrupt.avi").write_bytes(b"\x00not a video" * 100)
    Image.fromarray(np.full((40, 50, 3), 90, np.uint8)).save(root / "img.png")
    records = [
        _rec("live/boxed.avi", "live/boxed", bbox=[20, 10, 20, 24], protocols={"p": "train"}),
        _rec("live/perframe.avi", "live/perframe", face_file=str(root / "faces/perframe.txt")),
        _rec("attack/nobox.avi", "attack/nobox", label=1, split="test"),
        _rec("attack/corrupt.avi", "attack/corrupt", label=1, split="test"),
        _rec("img.png", "img", label=1, split="test", frame=0),
    ]
    return _release(root, records, unknown=["stray.bin"])


# --------------------------------------------------------------------------------------------------- prepare runs


def test_failures_are_listed_and_the_run_finishes(fake_adapter, mixed_release, tmp_path):
    out = tmp_path / "out"
    options = PrepareOptions(detector="none", no_face="skip", **FAST)
    result = prepare.prepare(fake_adapter, mixed_release, out, options)

    failures = {(Path(r["path"]).name, r["reason"].split(":")[0]) for r in _failures(out)}
    assert failures == {
        ("corrupt.avi", "unreadable video"),
        ("nobox.avi", "no face in frame 6"),
        ("nobox.avi", "no face in frame 9"),
        ("img.png", "no face"),
    }
    recs = read_manifest(out / "manifest.parquet")
    assert {(r.video, r.frame) for r in recs} == {("live/boxed", 6), ("live/boxed", 16), ("live/perframe", 6)} | {
        ("live/perframe", 11)
    }
    assert all(r.extra["crop"] == "box" for r in recs)
    # frame 6 of the per-frame file is missing: the nearest annotated frame's box is used
    assert next(r for r in recs if r.video == "live/perframe" and r.frame == 6).extra["source_bbox"] == [8, 8, 16, 16]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failures"] == 4
    assert summary["failures_by_reason"] == {"no face": 3, "unreadable video": 1}
    assert summary["unknown_files"] == 1 and (out / "unknown_files.txt").read_text() == "stray.bin\n"
    assert result.processed == 5 and result.skipped == 0


def test_crops_manifest_and_flags(fake_adapter, mixed_release, tmp_path, monkeypatch):
    out = tmp_path / "out"
    prepare.prepare(fake_adapter, mixed_release, out, PrepareOptions(detector="none", size=40, progress=False))
    recs = read_manifest(out / "manifest.parquet")
    by_video = {}
    for r in recs:
        by_video.setdefault(r.video, []).append(r)
    assert sorted(r.frame for r in by_video["live/boxed"]) == [6, 16]  # SSDG on 20 frames
    assert sorted(r.frame for r in by_video["attack/nobox"]) == [6, 9]  # SSDG on 10 frames: 6 and min(6 + 5, 9)
    assert {r.extra["crop"] for r in by_video["attack/nobox"]} == {"center"}
    assert by_video["img"][0].extra["crop"] == "center" and by_video["img"][0].bbox is None
    for r in recs:
        path = Path(r.path)
        assert path.is_file() and path.is_relative_to(out / "crops")
        # face crops keep the jitter margin around the 40 px crop (--pad 0.12: 5 px a side); centre crops do not
        side = 50 if r.extra["crop"] == "box" else 40
        with Image.open(path) as im:
            assert im.size == (side, side) and im.mode == "RGB"
        assert r.extra["media"] == "image" and r.frame >= 0
    boxed = by_video["live/boxed"][0]
    assert boxed.extra["source"] == "live/boxed.avi" and boxed.extra["num_frames"] == 20
    assert boxed.extra["source_bbox"] == [20, 10, 20, 24]
    # the crop is a square of side max(w, h) * 1.2 centred on the face (plus the pad, at the same scale): the face box
    # sits in the middle of the crop
    x, y, w, h = boxed.bbox
    assert (x + w / 2, y + h / 2) == pytest.approx((25, 25), abs=1.0)
    assert h == pytest.approx(40 / 1.2, abs=1.0) and w == pytest.approx(40 / 1.2 * 20 / 24, abs=1.0)
    with Image.open(boxed.path) as im:
        centre = np.asarray(im)[20:30, 20:30]
    assert centre.min() > 230  # the white face is in the middle of the crop
    # manifest paths are relative to the output directory
    import pandas as pd

    assert all(p.startswith("crops/") for p in pd.read_parquet(out / "manifest.parquet")["path"])
    assert not _failures(out) or {r["reason"].split(":")[0] for r in _failures(out)} == {"unreadable video"}


def test_detector_flag(fake_adapter, mixed_release, tmp_path, monkeypatch):
    calls = []

    def detect(self, image):
        calls.append(image.shape)
        return (10.0, 10.0, 20.0, 20.0)

    monkeypatch.setattr(faces.HaarFaceDetector, "detect", detect)
    out = tmp_path / "out"
    prepare.prepare(fake_adapter, mixed_release, out, PrepareOptions(detector="haar", **FAST))
    recs = read_manifest(out / "manifest.parquet")
    flags = {(r.video, r.frame): r.extra["crop"] for r in recs}
    assert flags[("attack/nobox", 6)] == flags[("img", 0)] == "haar"
    assert {r.extra["detector"] for r in recs if r.extra["crop"] == "haar"} == {"haar"}
    assert flags[("live/boxed", 6)] == "box"  # a shipped box wins over the detector
    assert len(calls) == 3  # 2 frames of nobox + the image; boxed videos never run the detector


class _ScriptedDetector:
    """Stands in for dlib: finds a face only in images whose mean is above ``threshold``."""

    name = "dlib"

    def __init__(self, threshold):
        self.threshold, self.calls = threshold, 0

    def detect_faces(self, image):
        self.calls += 1
        if image.mean() <= self.threshold:
            return []
        return [faces.Face((4.0, 4.0, 30.0, 30.0), None, 2.0, "dlib")]


def test_detector_order_release_box_then_detector_then_haar_then_centre(fake_adapter, mixed_release, tmp_path,
                                                                         monkeypatch):
    """Order: shipped box -> detector (dlib) -> Haar -> flagged centre crop; the manifest says which produced each
    crop and summary.json counts them per split and label (runs with or without the faces extra: dlib is scripted)."""
    scripted = _ScriptedDetector(threshold=80)  # nobox frames 6 and 9 have grey 60 and 90: 9 found by "dlib"
    monkeypatch.setattr(faces, "dlib_available", lambda: True)
    monkeypatch.setattr(faces, "make_detector", lambda name, **kw: scripted)
    haar_calls = []

    def haar(self, image):  # Haar finds the face of the image (grey 90 + ...) only after dlib missed frame 6
        haar_calls.append(float(image.mean()))
        return (5.0, 5.0, 20.0, 20.0) if image.mean() < 70 else None

    monkeypatch.setattr(faces.HaarFaceDetector, "detect", haar)
    out = tmp_path / "out"
    result = prepare.prepare(fake_adapter, mixed_release, out, PrepareOptions(detector="dlib", **FAST))
    flags = {(r.video, r.frame): (r.extra["crop"], r.extra.get("detector")) for r in result.records}
    assert flags[("live/boxed", 6)] == ("box", "release")
    assert flags[("attack/nobox", 9)] == ("detector", "dlib")
    assert flags[("attack/nobox", 6)] == ("haar", "haar")  # dlib found nothing, Haar did
    assert flags[("img", 0)] == ("detector", "dlib")  # grey 90
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["detector"] == "dlib"
    assert summary["settings"]["detector_order"] == ["box", "dlib", "haar", "center"]
    by_split = summary["crop_by_split"]
    assert by_split["test"]["attack"] == {"detector": 2, "haar": 1}
    assert by_split["train"]["live"]["box"] == sum(1 for r in result.records if r.extra["crop"] == "box")
    assert sum(n for lab in by_split.values() for c in lab.values() for n in c.values()) == len(result.records)


def test_detector_auto_and_align_without_the_faces_extra(fake_adapter, mixed_release, tmp_path, monkeypatch):
    monkeypatch.setattr(faces, "dlib_available", lambda: False)
    assert prepare.resolve_detector("auto") == "haar"
    for options in (dict(detector="dlib"), dict(detector="haar", align="five_point")):
        with pytest.raises(PrepareError, match=r"fasvlm\[faces\]"):
            prepare.prepare(fake_adapter, mixed_release, tmp_path / "o", PrepareOptions(**options, **FAST))
    monkeypatch.setattr(faces, "dlib_available", lambda: True)
    assert prepare.resolve_detector("auto") == "dlib"
    with pytest.raises(PrepareError, match="--align must be one of"):
        PrepareOptions(align="three_point")


def test_resume_skips_finished_items(fake_adapter, mixed_release, tmp_path):
    out = tmp_path / "out"
    options = PrepareOptions(detector="none", **FAST)
    first = prepare.prepare(fake_adapter, mixed_release, out, options)
    assert first.processed == 5 and first.skipped == 0
    crops = sorted((out / "crops").rglob("*.webp"))
    stamps = {p: p.stat().st_mtime_ns for p in crops}
    manifest1 = read_manifest(out / "manifest.parquet")

    second = prepare.prepare(fake_adapter, mixed_release, out, options)
    assert second.processed == 0 and second.skipped == 5  # the corrupt video is not retried by default
    assert {p: p.stat().st_mtime_ns for p in crops} == stamps
    assert read_manifest(out / "manifest.parquet") == manifest1
    assert len(_failures(out)) == 1  # the earlier failure is still reported

    crops[0].unlink()  # a lost crop is redone, and only its item
    third = prepare.prepare(fake_adapter, mixed_release, out, options)
    assert third.processed == 1 and crops[0].is_file()
    retry = prepare.prepare(
        fake_adapter, mixed_release, out, PrepareOptions(detector="none", retry_failed=True, **FAST)
    )
    assert retry.processed == 1  # only the corrupt video

    with pytest.raises(PrepareError, match="size: 32 -> 48"):
        prepare.prepare(fake_adapter, mixed_release, out, PrepareOptions(detector="none", size=48, progress=False))
    again = prepare.prepare(
        fake_adapter, mixed_release, out, PrepareOptions(detector="none", size=48, overwrite=True, progress=False)
    )
    assert again.processed == 5
    with Image.open(read_manifest(out / "manifest.parquet")[0].path) as im:
        assert im.size in ((48, 48), (60, 60))  # a centre crop, or a face crop with the jitter margin (--pad 0.12)


def test_interrupted_run_resumes_from_the_done_list(fake_adapter, mixed_release, tmp_path):
    out = tmp_path / "out"
    options = PrepareOptions(detector="none", **FAST)
    prepare.prepare(fake_adapter, mixed_release, out, options)
    done = out / ".prepare/done.jsonl"
    lines = done.read_text().splitlines(keepends=True)
    done.write_text("".join(lines[:2]) + lines[2][:10])  # a crash cut the third line
    (out / "manifest.parquet").unlink()
    resumed = prepare.prepare(fake_adapter, mixed_release, out, options)
    assert resumed.skipped == 2 and resumed.processed == 3
    assert len(read_manifest(out / "manifest.parquet")) == 7


def test_index_only_opens_no_media(fake_adapter, mixed_release, tmp_path, monkeypatch):
    import av
    import cv2

    def boom(*args, **kwargs):
        raise AssertionError("media opened during --index-only")

    monkeypatch.setattr(video, "read_video_frames", boom)
    monkeypatch.setattr(prepare, "read_image", boom)
    monkeypatch.setattr(av, "open", boom)
    monkeypatch.setattr(cv2, "VideoCapture", boom)
    monkeypatch.setattr(Image, "open", boom)
    out = tmp_path / "out"
    result = prepare.prepare(fake_adapter, mixed_release, out, PrepareOptions(index_only=True, progress=False))
    monkeypatch.undo()
    recs = read_manifest(out / "manifest.parquet")
    assert len(recs) == 5 and result.processed == 0
    assert sum(r.frame == -1 for r in recs) == 4
    assert all(Path(r.path).is_absolute() and Path(r.path).parent.is_dir() for r in recs)
    assert not (out / "crops").exists()
    assert json.loads((out / "summary.json").read_text())["index_only"] is True


def test_frame_folders_channels_and_sampling(fake_adapter, tmp_path):
    root = tmp_path / "raw"
    records = []
    for i in range(20):
        for channel, value in (("color", 200), ("depth", 60)):
            p = root / f"vid/{channel}/{i:04d}.jpg"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((30, 40, 3), value, np.uint8)).save(p)
        records.append(
            _rec(f"vid/color/{i:04d}.jpg", "vid", frame=i, label=1, depth=str(root / f"vid/depth/{i:04d}.jpg"))
        )
    _release(root, records)
    out = tmp_path / "out"
    prepare.prepare(fake_adapter, root, out, PrepareOptions(frames="uniform", num_frames=4, crop="full", **FAST))
    recs = read_manifest(out / "manifest.parquet")
    assert [r.frame for r in recs] == [2, 7, 12, 17]
    assert all(r.extra["crop"] == "full" for r in recs)
    with Image.open(recs[0].path) as im:
        assert abs(float(np.asarray(im).mean()) - 200) < 3

    out_depth = tmp_path / "out_depth"
    prepare.prepare(fake_adapter, root, out_depth, PrepareOptions(channels="depth", crop="full", **FAST))
    recs = read_manifest(out_depth / "manifest.parquet")
    assert len(recs) == 20 and all(r.extra["channel"] == "depth" for r in recs)  # frame folders: all frames
    assert all("/depth/" in r.path for r in recs)
    with Image.open(recs[0].path) as im:
        assert abs(float(np.asarray(im).mean()) - 60) < 3
    with pytest.raises(PrepareError, match="no 'ir' channel"):
        prepare.prepare(fake_adapter, root, tmp_path / "out_ir", PrepareOptions(channels="ir", **FAST))


def test_parallel_workers_match_in_process(fake_adapter, mixed_release, tmp_path):
    options = dict(detector="none", **FAST)
    serial = prepare.prepare(fake_adapter, mixed_release, tmp_path / "a", PrepareOptions(workers=0, **options))
    parallel = prepare.prepare(fake_adapter, mixed_release, tmp_path / "b", PrepareOptions(workers=2, **options))
    assert [(r.video, r.frame, r.path, r.extra["crop"]) for r in parallel.records] == [
        (r.video, r.frame, r.path, r.extra["crop"]) for r in serial.records
    ]
    for r in serial.records:
        a = np.asarray(Image.open(tmp_path / "a" / r.path))
        b = np.asarray(Image.open(tmp_path / "b" / r.path))
        assert np.array_equal(a, b)


# A container adapter (like WMCA's HDF5): read_media(record, channel) returns the frames of an .npz file.
_CONTAINER_ADAPTER = (
    _FAKE_ADAPTER.replace('NAME = "fake_fas"', 'NAME = "fake_container"')
    + """

def read_media(rec, channel="rgb"):
    import numpy as np

    if rec.extra.get("needs") == "h5py":
        raise ModuleNotFoundError("No module named 'h5py'", name="h5py")
    with np.load(rec.path if channel == "rgb" else rec.extra[channel]) as f:
        return dict(enumerate(f["frames"]))
"""
)


def test_containers_read_by_the_adapter_hook(tmp_path, monkeypatch):
    mod_dir = tmp_path / "adapter_mod"
    mod_dir.mkdir()
    (mod_dir / "fake_container_adapter.py").write_text(_CONTAINER_ADAPTER)
    monkeypatch.syspath_prepend(str(mod_dir))
    module = importlib.import_module("fake_container_adapter")
    root = tmp_path / "raw"
    root.mkdir()
    frames = np.stack([np.full((16, 16, 3), 10 * i, np.uint8) for i in range(20)])
    np.savez(root / "clip.npz", frames=frames)
    np.savez(root / "clip_depth.npz", frames=255 - frames)
    rec = _rec("clip.npz", "clip", label=1, media="hdf5", depth=str(root / "clip_depth.npz"))
    _release(root, [rec])
    out = tmp_path / "out"
    prepare.prepare(module, root, out, PrepareOptions(frames="uniform", num_frames=4, crop="full", **FAST))
    recs = read_manifest(out / "manifest.parquet")
    assert [r.frame for r in recs] == [2, 7, 12, 17]
    assert recs[1].path.endswith("crops/clip/00007.webp") and recs[1].extra["num_frames"] == 20
    assert abs(float(np.asarray(Image.open(recs[1].path)).mean()) - 70) < 2
    prepare.prepare(module, root, tmp_path / "d", PrepareOptions(channels="depth", crop="full", **FAST))
    recs = read_manifest(tmp_path / "d/manifest.parquet")
    assert len(recs) == 20 and abs(float(np.asarray(Image.open(recs[0].path)).mean()) - 255) < 2

    _release(root, [dict(rec, extra={**rec["extra"], "needs": "h5py"})])
    with pytest.raises(PrepareError, match="h5py"):
        prepare.prepare(module, root, tmp_path / "e", PrepareOptions(crop="full", **FAST))
    sys.modules.pop("fake_container_adapter", None)


def test_padisi_samples_in_one_joblib_get_their_own_crops(tmp_path):
    from fasvlm.data_modules.synthetic.releases.padisi_face import make_release

    raw = tmp_path / "padisi"
    make_release(raw, subjects=2, media="real", size=(32, 40))
    out = tmp_path / "out"
    result = prepare.prepare("padisi_face", raw, out, PrepareOptions(**FAST))
    assert not result.failures and result.records
    recs = read_manifest(out / "manifest.parquet")
    assert len({r.path for r in recs}) == len(recs) == len(result.records)
    assert {r.extra["crop"] for r in recs} == {"full"}  # PADISI ships face crops: resized whole
    for r in recs:
        with Image.open(r.path) as im:
            assert im.size == (32, 32)


def _celeba_release(root: Path) -> Path:
    """Two images in CelebA-Spoof's official layout, listed by every protocol's metas; boxes in 224x224 space."""
    live = [0] * 44
    spoof = [0] * 40 + [3, 1, 1, 1]  # A4, normal light, indoor, spoof
    images = {"Data/train/1/live/000001.jpg": live, "Data/test/2/spoof/494405.png": spoof}
    for rel in images:
        image = np.zeros((112, 112, 3), np.uint8)
        image[28:84, 28:84] = 255  # the face: (28, 28, 56, 56) in pixels = (56, 56, 112, 112) in 224 space
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / rel)
        (root / rel).with_name(Path(rel).stem + "_BB.txt").write_text("56 56 112 112 0.99\n")
    metas = ["intra_test", "protocol1"] + [f"protocol2/test_on_{q}_quality_device" for q in ("low", "middle", "high")]
    for meta in metas:
        (root / "metas" / meta).mkdir(parents=True)
        for split, rel in (("train", "Data/train/1/live/000001.jpg"), ("test", "Data/test/2/spoof/494405.png")):
            (root / "metas" / meta / f"{split}_label.json").write_text(json.dumps({rel: images[rel]}))
    return root


def test_celeba_spoof_images_are_cropped_from_their_224_space_boxes(tmp_path):
    raw = _celeba_release(tmp_path / "CelebA_Spoof")
    out = tmp_path / "out"
    prepare.prepare("celeba_spoof", raw, out, PrepareOptions(size=40, margin=0.0, pad=0.0, progress=False))
    recs = {r.split: r for r in read_manifest(out / "manifest.parquet")}
    assert set(recs) == {"train", "test"}
    for rec in recs.values():
        assert rec.extra["crop"] == "box" and rec.extra["source_bbox"] == [28, 28, 56, 56]
        assert "bbox_space" not in rec.extra  # the new bbox is in crop pixels
        assert rec.bbox == pytest.approx((0, 0, 40, 40))
        assert np.asarray(Image.open(rec.path)).min() > 240  # margin 0: the crop is the white face (JPEG edges)
    assert recs["test"].attack == "a4" and recs["test"].path.endswith("crops/Data/test/2/spoof/494405.webp")


# ---------------------------------------------------------------------------- the real adapter through the CLI


def test_cli_on_a_fake_replay_attack_release(tmp_path, capsys):
    from fasvlm.data_modules.synthetic.releases.replay_attack import make_release

    raw = tmp_path / "replay"
    expected = make_release(raw, subjects=(1,), media="real", enroll=False)
    (raw / "train/real/notes.txt").write_text("not a video")
    out = tmp_path / "prepared"
    assert (
        main(["--dataset", "replay_attack", "--root", str(raw), "--out", str(out), "--workers", "0", "--size", "32"])
        == 0
    )
    captured = capsys.readouterr()
    assert "live" in captured.out and "notes.txt" in (out / "unknown_files.txt").read_text()
    assert "warning" in captured.err
    recs = read_manifest(out / "manifest.parquet")
    assert len(recs) == 2 * expected["videos"]  # frames 6 and 9 of each 10-frame video
    assert {r.frame for r in recs} == {6, 9}
    assert {r.extra["crop"] for r in recs} == {"box"}  # the release's face-locations files
    summary = json.loads((out / "summary.json").read_text())
    assert summary["by_split"] == {"train": {"live": 2 * 4, "attack": 2 * 20}}
    assert summary["protocols"]["grandtest"] == {"train": 48}
    assert summary["protocols"]["print"] == {"train": 2 * 4 + 2 * 4}  # live + the 4 print attacks, 2 frames each

    # --index-only into another directory: one record per video, frame -1
    out2 = tmp_path / "index"
    assert main(["--dataset", "replay_attack", "--root", str(raw), "--out", str(out2), "--index-only"]) == 0
    recs = read_manifest(out2 / "manifest.parquet")
    assert len(recs) == expected["videos"] and {r.frame for r in recs} == {-1}

    # a directory that is not the release: a message naming the layout, exit status 2
    assert main(["--dataset", "replay_attack", "--root", str(tmp_path / "nope"), "--out", str(out2)]) == 2
    assert "Expected the official layout" in capsys.readouterr().err


def test_help_lists_datasets(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for name in adapter_names():
        assert name in text
    for flag in ("--frames", "--num-frames", "--size", "--margin", "--channels", "--workers", "--index-only"):
        assert flag in text
    with pytest.raises(SystemExit):
        main(["--dataset", "no_such_set", "--root", ".", "--out", "x"])
    assert "invalid choice" in capsys.readouterr().err


def test_show_layout_prints_the_tree_before_reading_anything(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing to read here; --root and --out are not needed
    for name in adapter_names():
        assert main(["--dataset", name, "--show-layout"]) == 0
        text = capsys.readouterr().out
        assert get_adapter(name).EXPECTED_LAYOUT.strip() in text and "--root" in text
        assert f"docs/datasets.md#{name.replace('_', '-')}" in text
    assert main(["--dataset", "msu_mfsd", "--show-layout"]) == 0
    assert "scene01/real/real_client001_android_SD_scene01.mp4" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SystemExit):
        main(["--dataset", "msu_mfsd"])
    assert "--root, --out" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------- adapter options


def test_every_adapter_index_takes_typed_keyword_options():
    """Issue 13: no ``**options``; every option is keyword-only, annotated and has a default (domain among them)."""
    import inspect

    from fasvlm.data_modules.adapters import index_options

    for name in adapter_names():
        params = list(inspect.signature(get_adapter(name).index).parameters.values())
        assert params[0].name == "root", name
        assert not any(p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) for p in params), name
        options = index_options(get_adapter(name))
        assert "domain" in options, name
        for opt in options.values():
            assert opt.kind == opt.KEYWORD_ONLY and opt.annotation is not inspect.Parameter.empty, (name, opt)
            assert opt.default is not inspect.Parameter.empty, (name, opt)


def test_unknown_adapter_option_is_an_error_listing_the_valid_ones(tmp_path, capsys):
    from fasvlm.data_modules.adapters import index_dataset
    from fasvlm.data_modules.datamodule import DomainSpec, FASDataModule
    from fasvlm.data_modules.synthetic.releases.casia_fasd import make_release

    make_release(tmp_path / "raw")
    with pytest.raises(TypeError, match=r"unknown adapter option\(s\) 'odd_qualty'.*odd_quality='normal'"):
        index_dataset("casia_fasd", tmp_path / "raw", odd_qualty="low")
    assert index_dataset("casia_fasd", tmp_path / "raw", odd_quality="low").records
    # fasvlm prepare --adapter-option: exit status 2 and the valid options named; nothing written
    code = main(["--dataset", "casia_fasd", "--root", str(tmp_path / "raw"), "--out", str(tmp_path / "out"),
                 "--adapter-option", "odd_qualty=low", "--index-only"])
    err = capsys.readouterr().err
    assert code == 2 and "odd_qualty" in err and "odd_quality='normal'" in err and "faces_dir=None" in err
    assert not (tmp_path / "out").exists()
    # DomainSpec.options of the data module
    spec = DomainSpec("c", dataset="casia_fasd", root=str(tmp_path / "raw"), split="test", options={"bogus": 1})
    dm = FASDataModule(sources=[spec], targets=[spec], batch_size=2, num_workers=0, image_size=32)
    with pytest.raises(TypeError, match="'bogus'.*valid options"):
        dm.setup("fit")


# ----------------------------------------------------------------------------------------------- conf/data YAMLs

DATA_CONFS = sorted((REPO / "conf/data").glob("*.yaml"))
EXPECTED_CONFS = {
    "mcio_m", "mcio_c", "mcio_i", "mcio_o", "one_to_eleven", "unified",
    "oulu_npu_p1", "oulu_npu_p2", "oulu_npu_p3", "oulu_npu_p4",
    "celeba_spoof_intra", "celeba_spoof_p1", "celeba_spoof_p2",
    "siw_p1", "siw_p2", "siw_p3", "replay_attack_grandtest",
}  # fmt: skip


def test_every_protocol_config_is_present():
    assert EXPECTED_CONFS <= {p.stem for p in DATA_CONFS}


def _domain_fields() -> set[str]:
    """DomainSpec's fields, read from datamodule.py's source (importing it would import Lightning: ~10 s here)."""
    import ast

    tree = ast.parse((REPO / "data_modules/datamodule.py").read_text())
    spec = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "DomainSpec")
    return {n.target.id for n in spec.body if isinstance(n, ast.AnnAssign)}


@pytest.mark.parametrize("path", DATA_CONFS, ids=[p.stem for p in DATA_CONFS])
def test_data_config_parses(path):
    text = path.read_text()
    assert text.startswith("#") and "fasvlm fit" in text.splitlines()[0]
    assert "fasvlm prepare" in text  # says how the manifests it reads are made
    conf = yaml.safe_load(text)
    assert set(conf) == {"data"}
    assert conf["data"]["class_path"] == "fasvlm.data_modules.FASDataModule"
    init = conf["data"]["init_args"]
    allowed = _domain_fields()
    assert init["sources"] and init["targets"]
    domains = init["sources"] + init["targets"] + (init.get("val_sources") or [])
    names = [t["name"] for t in init["targets"]]
    assert len(names) == len(set(names))
    for spec in domains:
        # every field is set: list items from two --config files merge field by field, so a missing field could be
        # inherited from the method config (e.g. its `dataset:` beside our `manifest:`)
        assert set(spec) == allowed, allowed ^ set(spec)
        assert (spec["manifest"] is None) != (spec["dataset"] is None)
        if spec["manifest"]:
            # a manifest, or the `datasets` folder `fasvlm prepare --hf` writes beside it
            assert spec["manifest"].startswith("data/prepared/")
            assert spec["manifest"].endswith(("/manifest.parquet", "/manifest.hf"))
        splits = [spec["split"]] if isinstance(spec["split"], str) else spec["split"]
        assert set(splits) <= {"train", "val", "test"}
        assert _dataset_of(spec) in adapter_names()


def _dataset_of(spec: dict) -> str:
    """The adapter name of a domain: ``dataset``, or the folder of data/prepared/<name>[_first60]/manifest.parquet;
    data/prepared/synthetic/<domain>/ holds `fasvlm synth`'s domains, written in the CelebA-Spoof layout."""
    if spec["dataset"]:
        return spec["dataset"]
    folder = spec["manifest"].split("/")[2]
    return "celeba_spoof" if folder == "synthetic" else folder.removesuffix("_first60")


def _domains():
    for path in DATA_CONFS:
        init = yaml.safe_load(path.read_text())["data"]["init_args"]
        for spec in init["sources"] + init["targets"] + (init.get("val_sources") or []):
            yield path.stem, spec


@pytest.fixture(scope="module")
def fake_release_protocols(tmp_path_factory):
    """Protocol names found by indexing each adapter's fake release (placeholder media); None where none exists."""
    from fasvlm.data_modules.adapters import index_dataset

    cache: dict[str, set[str] | None] = {}

    def protocols(dataset: str) -> set[str] | None:
        if dataset not in cache:
            root = tmp_path_factory.mktemp(dataset)
            try:
                get_adapter(dataset)
                if dataset == "celeba_spoof":  # its fake data come from `fasvlm synth`; a hand-made release here
                    _celeba_release(root)
                else:
                    importlib.import_module(f"fasvlm.data_modules.synthetic.releases.{dataset}").make_release(root)
            except (NotImplementedError, ModuleNotFoundError):
                cache[dataset] = None
                return None
            records = index_dataset(dataset, root).records
            cache[dataset] = {p for r in records for p in r.extra.get("protocols", {})}
        return cache[dataset]

    return protocols


def test_config_protocols_exist_in_the_adapters(fake_release_protocols):
    checked, missing = 0, []
    for conf, spec in _domains():
        if not spec.get("protocol"):
            continue
        dataset = _dataset_of(spec)
        found = fake_release_protocols(dataset)
        if found is None:
            continue  # adapter or fake release not written yet
        checked += 1
        if spec["protocol"] not in found:
            missing.append((conf, dataset, spec["protocol"], sorted(found)))
    assert not missing
    assert checked == sum(1 for _, spec in _domains() if spec["protocol"])  # every adapter is written by now


def test_face_crops_are_stored_as_the_loader_carriers(fake_adapter, mixed_release, tmp_path):
    """Issue 20: face crops keep the jitter margin (--pad) in lossless WebP, so FASDataModule's workers hand them over
    as decoded (no resampling); a directory prepared before --pad continues only with its own settings."""
    import torch

    from fasvlm.data_modules.datamodule import FASDataset
    from fasvlm.data_modules.transforms import FaceCarrier, carrier_size

    out = tmp_path / "out"
    prepare.prepare(fake_adapter, mixed_release, out, PrepareOptions(detector="none", size=32, progress=False))
    boxed = [r for r in read_manifest(out / "manifest.parquet") if r.extra["crop"] == "box"]
    assert boxed and all(r.path.endswith(".webp") for r in boxed)
    for rec in boxed:
        item = FASDataset([rec], FaceCarrier(32))[0]
        with Image.open(rec.path) as im:
            assert im.size == (carrier_size(32),) * 2
            assert torch.equal(item["pixel_values"], torch.from_numpy(np.array(im.convert("RGB"))))
        assert abs(float(item["pixel_params"][2]) - 32) <= 2  # the face window, at training scale
    crop = np.random.default_rng(0).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    with Image.open(io.BytesIO(prepare.encode_image(crop, "webp"))) as im:
        assert np.array_equal(np.asarray(im.convert("RGB")), crop)  # lossless
    settings = out / ".prepare" / "settings.json"
    old = {k: v for k, v in json.loads(settings.read_text()).items() if k != "pad"}
    settings.write_text(json.dumps({**old, "format": "png"}))  # as written before issue 20
    with pytest.raises(PrepareError, match=r"pad: 0\.0 -> 0\.12, format: 'png' -> 'webp'"):
        prepare.prepare(fake_adapter, mixed_release, out, PrepareOptions(detector="none", size=32, progress=False))
