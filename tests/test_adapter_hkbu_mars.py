"""HKBU-MARs adapter against fake copies (index only, placeholder media)."""

from collections import Counter

import pytest

from fasvlm.data_modules.adapters import LayoutError, index_dataset
from fasvlm.data_modules.synthetic.releases.hkbu_mars import make_release


def test_v1_plus_counts_makers_and_loo_protocols(tmp_path):
    expected = make_release(tmp_path, subjects=range(1, 13))
    result = index_dataset("hkbu_mars", tmp_path)
    assert result.unknown == []
    records = result.records
    assert len(records) == expected["videos"] == 48
    counts = Counter((r.subject, "live" if r.label == 0 else "attack") for r in records)
    assert {s: {k: counts[(s, k)] for k in ("live", "attack")} for s in expected["by_subject"]} == \
        expected["by_subject"]
    assert Counter(r.attack for r in records) == {"live": 24, "mask_3d": 24}
    assert Counter(r.extra.get("mask_maker") for r in records) == {None: 24, **expected["by_maker"]}
    assert {r.split for r in records} == {"test"}
    for k in range(1, 13):
        fold = Counter(r.extra["protocols"][f"loo_{k:02d}"] for r in records)
        assert fold == {"test": 4, "train": 44}
    rec = {r.video: r for r in records}["mask/REAL-f/09/09_2"]
    assert (rec.label, rec.attack, rec.subject, rec.frame, rec.extra["media"]) == (1, "mask_3d", "09", -1, "video")
    assert rec.extra["mask_maker"] == "real-f" and rec.extra["protocols"]["loo_09"] == "test"
    assert {r.split for r in index_dataset("hkbu_mars", tmp_path, split="train").records} == {"train"}


def test_v2_layout(tmp_path):
    make_release(tmp_path, subjects=(3, 4), version="v2")
    records = index_dataset("hkbu_mars", tmp_path).records
    assert Counter((r.subject, r.label) for r in records) == {("03", 0): 42, ("03", 1): 42, ("04", 0): 42,
                                                              ("04", 1): 42}
    rec = {r.video: r for r in records}["attack/04/07_06_4"]
    assert (rec.extra["camera"], rec.extra["light"], rec.attack) == (7, 6, "mask_3d")
    assert set(rec.extra["protocols"]) == {"loo_03", "loo_04"}


def test_v2_released_names_with_one_digit_subject(tmp_path):
    """Issue 15 finding 3: the release writes ``attack/09/01_01_9`` (one-digit subject in the stem) and two-digit
    subjects as ``12``; camera and light must be read from both, and a padded ``01_01_09`` still works."""
    for rel in ("attack/09/01_01_9.avi", "real/09/03_05_9.avi", "attack/12/07_06_12.avi", "real/02/02_02_02.avi"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    result = index_dataset("hkbu_mars", tmp_path)
    assert result.unknown == []
    got = {r.video: (r.subject, r.label, r.extra.get("camera"), r.extra.get("light")) for r in result.records}
    assert got == {"attack/09/01_01_9": ("09", 1, 1, 1), "real/09/03_05_9": ("09", 0, 3, 5),
                   "attack/12/07_06_12": ("12", 1, 7, 6), "real/02/02_02_02": ("02", 0, 2, 2)}


def test_unknown_files_reported(tmp_path):
    make_release(tmp_path, subjects=(1,))
    (tmp_path / "real/01/notes.txt").write_text("x")
    for rel in ("other/01/01_1.avi",  # no class folder
                "real/nosubject.avi",  # no subject
                "real/02/01_01_03.avi"):  # V2 stem names another subject than its folder
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    result = index_dataset("hkbu_mars", tmp_path)
    assert len(result.records) == 4
    assert sorted(result.unknown) == ["other/01/01_1.avi", "real/01/notes.txt", "real/02/01_01_03.avi",
                                      "real/nosubject.avi"]


def test_wrong_root_raises_layout_error(tmp_path):
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos/clip.avi").write_bytes(b"x")
    with pytest.raises(LayoutError, match="real/ or mask/") as err:
        index_dataset("hkbu_mars", tmp_path)
    assert err.value.path == tmp_path


def test_real_media_decodes(tmp_path):
    av = pytest.importorskip("av")
    make_release(tmp_path, subjects=(1,), media="real", takes=1, frames=2)
    with av.open(index_dataset("hkbu_mars", tmp_path).records[0].path) as container:
        assert sum(1 for _ in container.decode(video=0)) == 2
