"""Acceptance (issue 15): ``fasvlm prepare`` on a synthetic video release that ships no face boxes, so the detector
runs; summary.json reports per split and label how many crops came from each source. The videos show a real
photograph (scikit-image's ``astronaut``), plus one faceless video per split. Runs with the faces extra (dlib finds
the faces: crop source ``detector``) and without it (``--detector auto`` is Haar: source ``haar``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fasvlm.data_modules import faces
from fasvlm.data_modules.prepare import PrepareOptions, main, prepare
from fasvlm.data_modules.record import read_manifest
from fasvlm.data_modules.synthetic.releases.msu_mfsd import make_release
from fasvlm.data_modules.synthetic.releases.replay_attack import write_video

pytest.importorskip("av")
pytest.importorskip("cv2")


@pytest.fixture(scope="module")
def photo_release(tmp_path_factory):
    data = pytest.importorskip("skimage.data")
    root = tmp_path_factory.mktemp("msu") / "MSU-MFSD"
    photo = data.astronaut()[40:296, 96:352]  # 256x256 around the face (about 90 px wide)
    make_release(root, subjects=(2, 1), media="real", faces=False, frames=8, photo=photo)
    # one faceless video per split (a flat patch on a gradient): no detector finds a face -> centre crop
    write_video(root / "scene01/attack/attack_client002_laptop_SD_printed_photo_scene01.mov", "real", frames=8)
    write_video(root / "scene01/attack/attack_client001_laptop_SD_printed_photo_scene01.mov", "real", frames=8)
    return root


def test_prepare_reports_crop_sources_per_split(photo_release, tmp_path):
    out = tmp_path / "out"
    result = prepare("msu_mfsd", photo_release, out, PrepareOptions(size=64, progress=False, workers=0))
    summary = json.loads((out / "summary.json").read_text())
    detector = "dlib" if faces.dlib_available() else "haar"
    found = "detector" if detector == "dlib" else "haar"
    assert summary["settings"]["detector"] == detector
    assert summary["settings"]["detector_order"] == ["box", *(["dlib"] if detector == "dlib" else []), "haar",
                                                     "center"]
    by_split = summary["crop_by_split"]
    assert set(by_split) == {"train", "test"}
    for split in ("train", "test"):
        # 2 live videos and 5 attack videos with the photograph, 1 faceless attack video; 2 SSDG frames each
        assert by_split[split]["live"] == {found: 4}
        assert by_split[split]["attack"] == {found: 10, "center": 2}
    recs = read_manifest(out / "manifest.parquet")
    assert len(recs) == len(result.records) == 32
    assert {r.extra.get("detector") for r in recs if r.extra["crop"] == found} == {detector}
    assert all(r.extra["align"] == "none" for r in recs)


@pytest.mark.skipif(not faces.dlib_available(), reason="needs the faces extra")
def test_prepare_five_point_alignment_through_the_cli(photo_release, tmp_path, capsys):
    out = tmp_path / "aligned"
    code = main(["--dataset", "msu_mfsd", "--root", str(photo_release), "--out", str(out), "--align", "five_point",
                 "--size", "224", "--workers", "0", "--limit", "2"])
    assert code == 0
    recs = read_manifest(out / "manifest.parquet")
    assert recs and all(r.extra["align"] == "five_point" and r.extra["crop"] == "detector" for r in recs)
    template = faces.five_point_template(224)
    for rec in recs:
        # the landmarks of the raw frame, mapped with the same fit, sit on the template (least squares over 3 points)
        eye_nose = faces.eye_nose(np.array(rec.extra["landmarks"]))
        matrix = faces.similarity_matrix(eye_nose, template)
        mapped = np.c_[eye_nose, np.ones(3)] @ matrix.T
        assert np.linalg.norm(mapped[:2] - template[:2], axis=1).max() < 4.0
        x, y, w, h = rec.bbox  # the detector box, in crop pixels, surrounds the template's eyes
        assert x < template[0, 0] and x + w > template[1, 0] and y < template[0, 1] < y + h
    summary = json.loads((out / "summary.json").read_text())
    assert summary["align"] == {"five_point": len(recs)} and summary["settings"]["align_padding"] == 0.37
    assert "crops:" in capsys.readouterr().out
