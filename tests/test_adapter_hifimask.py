"""HiFiMask adapter on a fake crop release in the official naming."""

from __future__ import annotations

from collections import Counter

import pytest

from fasvlm.data_modules.adapters import LayoutError, index_dataset
from fasvlm.data_modules.synthetic.releases import hifimask as release

_SPLIT = {"train": "train", "dev": "val", "test": "test"}


def _by_video(recs):
    return {r.video.split("/")[-1]: r for r in recs}


def test_index_labels_materials_and_style(tmp_path):
    expected = release.make_release(tmp_path, frames=3)
    result = index_dataset("hifimask", tmp_path)
    recs = result.records
    assert result.unknown == []
    assert len(recs) == expected["records"]
    per_type = Counter(v[1] for v in expected["videos"].values())
    by_attack = Counter(r.attack for r in recs)
    assert by_attack == {
        "live": per_type[0] * 3,
        "transparent_mask": per_type[1] * 3,
        "plaster_mask": per_type[2] * 3,
        "resin_mask": per_type[3] * 3,
    }
    assert {r.frame for r in recs} == {0, 1, 2}
    videos = _by_video(recs)
    r = videos["2_01_2_1_1_1"]
    assert (r.label, r.subject, r.illumination, r.environment) == (1, "2_01", "normal", "indoor")
    assert (r.extra["sensor"], r.extra["camera"], r.extra["skin"]) == ("iPhone11", 1, "white")
    r = videos["2_01_0_4_0_3"]
    assert (r.label, r.illumination, r.environment, r.extra["sensor"]) == (0, None, "outdoor", "MI10")
    assert videos["2_01_1_2_2_8"].illumination == "dark"
    assert videos["2_01_3_6_5_6"].environment is None
    for name, (split, *_rest) in expected["videos"].items():
        assert videos[name].split == _SPLIT[split]
        assert videos[name].extra["protocols"]["1"] == _SPLIT[split]


def test_derived_protocols(tmp_path):
    expected = release.make_release(tmp_path, frames=1)
    videos = _by_video(index_dataset("hifimask", tmp_path).records)
    for name, (split, type_id, *_setting) in expected["videos"].items():
        protocols = videos[name].extra["protocols"]
        for k in (1, 2, 3):
            if split == "test":
                assert protocols.get(f"2_{k}") == ("test" if type_id in (0, k) else None)
            else:
                assert protocols.get(f"2_{k}") == (None if type_id == k else _SPLIT[split])
        assert "3" not in protocols  # never derived (issue 15 finding 2)


def test_protocol_3_without_its_lists_is_reported_unavailable(tmp_path):
    release.make_release(tmp_path, frames=1)
    result = index_dataset("hifimask", tmp_path)
    assert not any("3" in r.extra["protocols"] for r in result.records)
    assert "CASIA_HiFiMask@p3_video_{train,dev,test}.txt" in result.report["unavailable_protocols"]["3"]


def test_protocol_3_comes_only_from_its_lists(tmp_path):
    """The official P3 keeps transparent masks of only some subjects: membership follows the lists exactly, also
    where a type/scene/light/sensor filter would say otherwise."""
    expected = release.make_release(tmp_path, frames=1, p3_lists=True)
    result = index_dataset("hifimask", tmp_path)
    assert "unavailable_protocols" not in result.report
    got = {r.video.split("/")[-1]: r.extra["protocols"].get("3") for r in result.records}
    assert {n: s for n, s in got.items() if s is not None} == {n: _SPLIT[s] for n, s in expected["p3"].items()}
    # subject 2 (train) has transparent masks in P1 but not in P3; subject 1 keeps them
    assert got["3_02_1_1_1_1"] is None and got["2_01_1_1_1_1"] == "train"
    assert got["3_02_0_1_1_1"] == "train"


def test_lists_win_over_derivation(tmp_path):
    expected = release.make_release(tmp_path, frames=1, p2_1_list=True)
    videos = _by_video(index_dataset("hifimask", tmp_path).records)
    assert "2_1" not in videos[expected["p2_1_left_out"]].extra["protocols"]
    # P2.1 now comes only from its (train-only) list: no derived val/test membership
    assert {v.extra["protocols"].get("2_1") for v in videos.values()} == {"train", None}
    assert any(v.extra["protocols"].get("2_2") == "test" for v in videos.values())


def test_without_lists_everything_is_test(tmp_path):
    expected = release.make_release(tmp_path, frames=1, lists=False)
    recs = index_dataset("hifimask", tmp_path, domain="hifi2").records
    assert len(recs) == expected["records"]
    assert {(r.split, r.domain, len(r.extra["protocols"])) for r in recs} == {("test", "hifi2", 0)}


def test_challenge_layout_and_unknown(tmp_path):
    expected = release.make_release(tmp_path, frames=1, lists=False, challenge=True)
    (tmp_path / "Data" / "2_01_0_1_1_1" / "Thumbs.db").write_bytes(b"x")
    (tmp_path / "Data" / "1_01_9_1_1_1").mkdir()
    (tmp_path / "Data" / "1_01_9_1_1_1" / "0000.png").write_bytes(b"x")
    result = index_dataset("hifimask", tmp_path)
    assert len(result.records) == expected["records"]
    assert set(result.unknown) == {
        "val/0000/ (anonymised challenge folder)",
        "Data/2_01_0_1_1_1/Thumbs.db",
        "Data/1_01_9_1_1_1/0000.png",
    }
    challenge = {r.video: r for r in result.records if r.video.startswith("train/")}
    assert {v.split("/")[1] for v in challenge} == set(expected["challenge_videos"])
    assert all(r.split == "train" and r.extra["protocols"] == {"3": "train"} for r in challenge.values())
    assert challenge["train/2_41_3_4_0_2"].attack == "resin_mask"


def test_wrong_root_raises_layout_error(tmp_path):
    (tmp_path / "Data" / "video_1").mkdir(parents=True)
    with pytest.raises(LayoutError) as err:
        index_dataset("hifimask", tmp_path)
    assert str(tmp_path) in str(err.value) and "<Skin>_<Subject>" in str(err.value)


def test_real_media_decodes(tmp_path):
    from PIL import Image

    release.make_release(tmp_path, groups={"test": (5,)}, frames=1, media="real", lists=False)
    rec = index_dataset("hifimask", tmp_path).records[0]
    with Image.open(rec.path) as im:
        assert im.format == "PNG" and im.size == (8, 8)
