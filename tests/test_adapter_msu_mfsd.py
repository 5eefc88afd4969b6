"""MSU-MFSD adapter against fake releases in the official layout (index only, placeholder media).

The release layout (``scene01/real``, ``scene01/attack``, subject lists at the top) is the one of the real file list
(e.g. the MSU-MFSD preprocessing scripts of public FAS repositories read ``<MSU>/scene01/real`` and
``<MSU>/train_sub_list.txt``); the official subject ids below are the published lists."""

from collections import Counter

import pytest

from fasvlm.data_modules.adapters import LayoutError, index_dataset
from fasvlm.data_modules.adapters.msu_mfsd import read_faces
from fasvlm.data_modules.synthetic.releases.msu_mfsd import make_release
from fasvlm.data_modules.synthetic.releases.replay_attack import BOX


def test_official_counts(tmp_path):
    expected = make_release(tmp_path, subjects="all", faces=False)
    result = index_dataset("msu_mfsd", tmp_path)
    assert result.unknown == []
    assert len(result.records) == expected["videos"] == 280
    assert Counter((r.split, r.label) for r in result.records) == {
        ("train", 0): 30, ("train", 1): 90, ("test", 0): 40, ("test", 1): 120}
    assert Counter(r.attack for r in result.records) == {"live": 70, "print": 70, "pad": 70, "phone": 70}
    assert sum(r.extra["needs_rotation"] for r in result.records) == 6


def test_records_and_faces(tmp_path):
    make_release(tmp_path, subjects=(3, 13))
    records = {r.video: r for r in index_dataset("msu_mfsd", tmp_path).records}
    assert len(records) == 16
    live = records["real/real_client003_android_SD_scene01"]
    assert (live.label, live.attack, live.subject, live.split, live.frame) == (0, "live", "3", "train", -1)
    assert live.extra["camera"] == "android" and live.extra["needs_rotation"] is True
    assert live.path.endswith(".mp4") and live.illumination is None
    assert records["real/real_client003_laptop_SD_scene01"].extra["needs_rotation"] is False
    ipad = records["attack/attack_client013_laptop_SD_ipad_video_scene01"]
    assert (ipad.label, ipad.attack, ipad.split, ipad.subject) == (1, "pad", "test", "13")
    assert ipad.path.endswith(".mov") and ipad.extra["instrument"] == "ipad_video"
    assert records["attack/attack_client013_android_SD_iphone_video_scene01"].attack == "phone"
    assert records["attack/attack_client013_android_SD_printed_photo_scene01"].attack == "print"
    faces = read_faces(ipad.extra["face_file"])
    assert 1 not in faces and faces[0] == BOX and len(faces) == 9


def test_release_layout_on_disk(tmp_path):
    """Issue 15 finding 1: the synthetic release writes the real layout, and --root <release> reads it."""
    make_release(tmp_path, subjects=(2, 1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.txt", "scene01", "test_sub_list.txt",
                                                          "train_sub_list.txt"]
    assert (tmp_path / "scene01/real/real_client002_android_SD_scene01.mp4").is_file()
    assert (tmp_path / "scene01/real/real_client002_android_SD_scene01.face").is_file()
    assert (tmp_path / "scene01/attack/attack_client001_laptop_SD_printed_photo_scene01.mov").is_file()
    result = index_dataset("msu_mfsd", tmp_path)
    assert result.unknown == [] and len(result.records) == 16
    assert Counter(r.split for r in result.records) == {"train": 8, "test": 8}


@pytest.mark.parametrize("layout", ["release", "flat"])
def test_same_records_from_release_flat_and_scene_root(tmp_path, layout):
    """The flat copy and --root <release>/scene01 (lists one level up) give the same records as the release."""
    make_release(tmp_path, subjects=(3, 13), layout=layout)
    records = index_dataset("msu_mfsd", tmp_path).records
    data = tmp_path / "scene01" if layout == "release" else tmp_path
    assert {r.video for r in records} == {p.relative_to(data).with_suffix("").as_posix()
                                          for p in data.glob("*/*.m*")}
    if layout == "release":
        scene = index_dataset("msu_mfsd", tmp_path / "scene01").records
        key = [(r.video, r.split, r.label, r.attack, r.path) for r in records]
        assert sorted(key) == sorted((r.video, r.split, r.label, r.attack, r.path) for r in scene)


def test_unknown_files_reported(tmp_path):
    make_release(tmp_path, subjects=(2,), faces=False)
    data = tmp_path / "scene01"
    (data / "real/attack_client002_android_SD_printed_photo_scene01.mp4").write_bytes(b"x")  # wrong folder
    (data / "attack/attack_client002_android_SD_paper_mask_scene01.mp4").write_bytes(b"x")  # no such instrument
    (data / "real/real_client004_android_SD_scene01.mp4").write_bytes(b"x")  # subject 4 in no list
    result = index_dataset("msu_mfsd", tmp_path)
    assert len(result.records) == 8
    assert sorted(result.unknown) == ["scene01/attack/attack_client002_android_SD_paper_mask_scene01.mp4",
                                      "scene01/real/attack_client002_android_SD_printed_photo_scene01.mp4",
                                      "scene01/real/real_client004_android_SD_scene01.mp4"]


def test_wrong_root_and_missing_list_raise_layout_error(tmp_path):
    with pytest.raises(LayoutError, match="scene01/real/") as err:
        index_dataset("msu_mfsd", tmp_path)
    assert err.value.path == tmp_path
    make_release(tmp_path, subjects=(2,), faces=False)
    (tmp_path / "test_sub_list.txt").unlink()
    with pytest.raises(LayoutError, match="subject list") as err:
        index_dataset("msu_mfsd", tmp_path)
    assert err.value.path == tmp_path / "test_sub_list.txt"


def test_real_media_decodes(tmp_path):
    av = pytest.importorskip("av")
    make_release(tmp_path, subjects=(1,), media="real", frames=2, faces=False)
    for record in index_dataset("msu_mfsd", tmp_path).records[:2]:
        with av.open(record.path) as container:
            assert sum(1 for _ in container.decode(video=0)) == 2
