"""PADISI-Face adapter on a fake release (repo csv files + COLOR joblib / multi-spectral npz)."""

from __future__ import annotations

from collections import Counter

import pytest

from fasvlm.data_modules.adapters import LayoutError, index_dataset
from fasvlm.data_modules.adapters.padisi_face import PAI_CODES, load_color, read_media
from fasvlm.data_modules.synthetic.releases import padisi_face as release


def test_index_labels_pai_codes_and_folds(tmp_path):
    expected = release.make_release(tmp_path, subjects=9)
    result = index_dataset("padisi_face", tmp_path)
    recs = result.records
    assert result.unknown == []
    assert len(recs) == expected["records"]
    assert Counter(r.label for r in recs) == {0: expected["live"], 1: expected["attack"]}
    assert {r.attack for r in recs if r.label} == set(PAI_CODES.values())  # all nine PAI codes
    assert len({r.subject for r in recs}) == expected["participants"]
    for r in recs:
        participant, code, folds = expected["samples"][r.video]
        assert (r.subject, r.extra["ground_truth"], r.extra["identifier"]) == (participant, code, r.video)
        assert r.extra["protocols"] == folds and r.split == folds["fold0"]
        assert r.extra["media"] == "joblib" and r.path.endswith("padisi_USC_FACE_preprocessed.bz2")
        assert r.extra["npz"].endswith(f"multi_channel/{r.video}.npz")
        assert r.extra["depth"] == r.extra["ir"] == r.extra["thermal"] == r.extra["npz"]
        assert r.frame == 0 and r.bbox is None
        if r.label:
            assert PAI_CODES[r.extra["pai_code"]] == r.attack and len(r.extra["pai_species"]) == 2
    smile = next(r for r in recs if r.extra["trial_name"] == "FACE_SMILE_WITH_GLASS")
    assert smile.extra["glasses"] is True and smile.extra["expression"] == "smile"
    assert {"train", "val", "test"} == {r.split for r in recs}


def test_npz_only_copy_and_repo_csv_folder(tmp_path):
    expected = release.make_release(tmp_path, subjects=3, forms=("npz",), csv_dir="data/face_partitions")
    recs = index_dataset("padisi_face", tmp_path, domain="padisi2").records
    assert len(recs) == expected["records"]
    assert all(r.extra["media"] == "npz" and r.path == r.extra["npz"] for r in recs)
    assert {r.domain for r in recs} == {"padisi2"}


def test_unknown_codes_and_files_reported(tmp_path):
    expected = release.make_release(tmp_path, subjects=2)
    gt = tmp_path / "padisi_USC_FACE_ground_truth.csv"
    gt.write_text(gt.read_text() + "aaaa,bbbb,FACE_NEUTRAL_WITHOUT_GLASS,FACE,m51201,p9,Male,x,y,30\n")
    (tmp_path / "face_data" / "preprocessed" / "multi_channel" / "ID_zz_yy_FACE_X.npz").write_bytes(b"PK")
    result = index_dataset("padisi_face", tmp_path)
    assert len(result.records) == expected["records"]
    n_rows = expected["records"] + 2  # header + rows; the appended row is the last line
    assert result.unknown == [
        f"padisi_USC_FACE_ground_truth.csv:{n_rows} (ID_aaaa_bbbb_FACE_NEUTRAL_WITHOUT_GLASS: ground_truth 'm51201')",
        "face_data/preprocessed/multi_channel/ID_zz_yy_FACE_X.npz",
    ]


def test_wrong_root_raises_layout_error(tmp_path):
    with pytest.raises(LayoutError) as err:
        index_dataset("padisi_face", tmp_path)
    assert str(tmp_path) in str(err.value) and "padisi_USC_FACE_ground_truth.csv" in str(err.value)
    release.make_release(tmp_path, subjects=1, forms=("npz",))
    for f in (tmp_path / "face_data" / "preprocessed" / "multi_channel").iterdir():
        f.unlink()
    with pytest.raises(LayoutError, match="no media"):
        index_dataset("padisi_face", tmp_path)


def test_real_media_load_color(tmp_path):
    release.make_release(tmp_path, subjects=2, media="real", size=(8, 6))
    recs = index_dataset("padisi_face", tmp_path).records
    images = load_color(recs[0].path, [r.video for r in recs[:2]])
    assert set(images) == {recs[0].video, recs[1].video}
    image = images[recs[0].video]
    assert image.shape == (8, 6, 3) and image.dtype.name == "uint8"
    assert image[0, 0, 2] == 255  # the stored blue channel (BGR index 0) ends up last (RGB)
    from_npz = load_color(recs[1].extra["npz"])[recs[1].video]
    assert (from_npz == images[recs[1].video]).all()
    assert (read_media(recs[0])[0] == image).all()
    depth = read_media(recs[1], "depth")[0]
    assert depth.shape == (8, 6, 3) and (depth == 26).all()  # channel 4 of sample 1: 0.1 -> 26
    with pytest.raises(ValueError, match="valid: rgb, ir, depth, thermal"):
        read_media(recs[0], "swir")


def test_indexing_imports_no_joblib(tmp_path):
    import subprocess
    import sys

    release.make_release(tmp_path, subjects=1)
    code = (
        "import sys; from fasvlm.data_modules.adapters import index_dataset; "
        f"n = len(index_dataset('padisi_face', {str(tmp_path)!r}).records); "
        "assert n > 0 and 'joblib' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


class _RunsAShellCommand:
    """Unpickling this calls os.system (a classic malicious pickle)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


class _RunsAProcess:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import subprocess

        return (subprocess.call, (["touch", str(self.marker)],))


@pytest.mark.parametrize("payload", [_RunsAShellCommand, _RunsAProcess])
def test_malicious_color_file_is_refused_and_nothing_runs(tmp_path, payload):
    """Issue 14 item 8: the COLOR joblib is a pickle; one whose reduce calls os.system / subprocess is refused with an
    error naming the file, and the command never runs."""
    joblib = pytest.importorskip("joblib")
    from fasvlm.data_modules.adapters.padisi_face import UnsafePickleError

    release.make_release(tmp_path, subjects=1, media="real", size=(4, 4))
    color = tmp_path / "face_data" / "preprocessed" / "padisi_USC_FACE_preprocessed.bz2"
    marker = tmp_path / "pwned"
    bundle = {"data": [payload(marker)], "identifiers": ["x"]}
    joblib.dump(bundle, color)  # bz2 by the suffix, as the release
    recs = index_dataset("padisi_face", tmp_path).records  # a new path: not in load_color's per-process cache
    with pytest.raises(UnsafePickleError, match="refused") as err:
        read_media(recs[0])
    assert str(color) in str(err.value) and ("posix.system" in str(err.value) or "subprocess.call" in str(err.value))
    assert not marker.exists()


def test_object_arrays_in_the_color_file_are_refused(tmp_path):
    joblib = pytest.importorskip("joblib")
    import numpy as np

    from fasvlm.data_modules.adapters.padisi_face import UnsafePickleError, safe_joblib_load

    path = tmp_path / "x.bz2"
    joblib.dump({"data": np.array([{"a": 1}], dtype=object)}, path)
    with pytest.raises(UnsafePickleError, match=str(path)):
        safe_joblib_load(path)
    joblib.dump({"data": np.zeros((2, 3), np.float32), "identifiers": ["a", "b"], "labels": [True, False]}, path)
    loaded = safe_joblib_load(path)
    assert loaded["identifiers"] == ["a", "b"] and loaded["data"].dtype == np.float32
