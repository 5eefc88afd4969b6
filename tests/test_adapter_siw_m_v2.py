"""SiW-Mv2 adapter on a fake release in the official layout."""

from __future__ import annotations

from collections import Counter

import pytest

from fasvlm.data_modules.adapters import LayoutError, index_dataset
from fasvlm.data_modules.adapters.siw_m_v2 import SPOOF_TYPES, read_faces, read_list
from fasvlm.data_modules.synthetic.releases import siw_m_v2 as release

TAXONOMY = {
    "Co": "makeup", "Im": "makeup", "Ob": "makeup", "Half": "half_mask", "Mann": "mannequin", "Paper": "paper_mask",
    "Sil": "silicone_mask", "Trans": "transparent_mask", "Eye": "partial_eye", "Funnyeye": "funny_eye",
    "Mouth": "partial_mouth", "Paperglass": "paper_glasses", "Print": "print", "Replay": "replay",
}  # fmt: skip


def _members(recs, protocol, split):
    return {r.subject for r in recs if r.extra["protocols"].get(protocol) == split}


def test_index_labels_and_attack_types(tmp_path):
    expected = release.make_release(tmp_path, subjects=4)
    result = index_dataset("siw_m_v2", tmp_path)
    recs = result.records
    assert result.unknown == []
    assert len(recs) == expected["records"]
    assert Counter(r.label for r in recs) == {0: expected["live"], 1: expected["attack"]}
    assert {(r.frame, r.extra["media"]) for r in recs} == {(-1, "video")}
    by_stem = {r.subject: r for r in recs}
    for key, stems in expected["stems"].items():
        for stem in stems:
            r = by_stem[stem]
            assert r.attack == ("live" if key is None else TAXONOMY[key])
            assert r.extra.get("spoof_key") == key
    assert by_stem["Makeup_Im_1"].extra["makeup"] == "impersonation"
    assert set(SPOOF_TYPES) == set(TAXONOMY)
    assert by_stem["Paper_2"].video == "Spoof/Print/Paper_2"


def test_protocols_from_partition_files(tmp_path):
    expected = release.make_release(tmp_path, subjects=4)
    recs = index_dataset("siw_m_v2", tmp_path).records
    lists, stems = expected["lists"], expected["stems"]
    # protocol I
    assert _members(recs, "1", "train") == set(lists["trainlist_live"] + lists["trainlist_all"])
    assert _members(recs, "1", "test") == set(lists["testlist_live"] + lists["testlist_all"])  # glued line split
    assert {r.split for r in recs} == {"train", "test"}
    assert all(r.split == r.extra["protocols"]["1"] for r in recs)
    # protocol II, 14 leave-one-type-out protocols named by the official keys
    assert {p for r in recs for p in r.extra["protocols"] if p.startswith("2_")} == {f"2_{k}" for k in SPOOF_TYPES}
    print_train = _members(recs, "2_Print", "train")
    assert print_train == set(lists["trainlist_live"]) | {
        s for s in lists["trainlist_all"] if not s.startswith("Paper_")
    }
    assert {"Mask_Paper_1", "Partial_Paperglass_1"} <= print_train  # exact prefix, not the official substring test
    assert _members(recs, "2_Print", "test") == set(lists["testlist_live"] + stems["Print"])
    assert _members(recs, "2_Trans", "test") == set(lists["testlist_live"] + stems["Trans"])
    # protocol III
    test_lists = ("test_A_pretrain", "test_B_spoof", "test_C_race", "test_D_age", "test_E_ill")
    assert _members(recs, "3", "train") == set(lists["train_A_pretrain"])
    assert _members(recs, "3", "test") == {s for name in test_lists for s in lists[name]}
    assert _members(recs, "3_B", "test") == set(lists["test_B_spoof"])
    assert _members(recs, "3_B", "train") == set(lists["train_A_pretrain"])


def test_face_file_and_reader(tmp_path):
    release.make_release(tmp_path, subjects=2, lists=False)
    recs = index_dataset("siw_m_v2", tmp_path).records
    live = next(r for r in recs if r.subject == "Live_100")
    assert live.extra["face_file"].endswith("Live/Live_100.face")
    assert read_faces(live.extra["face_file"]) == {0: (10.0, 20.0, 40.0, 50.0), 2: (12.0, 22.0, 40.0, 50.0)}
    assert all("face_file" not in r.extra for r in recs if r.subject != "Live_100")
    assert {(r.split, len(r.extra["protocols"])) for r in recs} == {("test", 0)}  # no partition files


def test_read_list_sanitises_glued_lines(tmp_path):
    f = tmp_path / "l.txt"
    f.write_text("Partial_Mouth_23Live_891\nMask_Paper_3\nPartial_Paperglass_12\n\nPaper_7\n")
    assert read_list(f) == ["Partial_Mouth_23", "Live_891", "Mask_Paper_3", "Partial_Paperglass_12", "Paper_7"]


def test_unknown_and_tolerated_names(tmp_path):
    expected = release.make_release(tmp_path, subjects=2, lists=False)
    (tmp_path / "Spoof" / "Replay" / "notes.txt").write_text("x")
    (tmp_path / "Live" / "Replay_99.mov").write_bytes(b"x")  # a spoof stem in Live/
    (tmp_path / "Spoof" / "Mask_TransparentMask" / "Mask_TransparentMask_9.MP4").write_bytes(b"x")
    result = index_dataset("siw_m_v2", tmp_path, domain="siwm")
    assert set(result.unknown) == {"Spoof/Replay/notes.txt", "Live/Replay_99.mov"}
    assert len(result.records) == expected["records"] + 1
    long_form = next(r for r in result.records if r.path.endswith("Mask_TransparentMask_9.MP4"))
    assert (long_form.attack, long_form.subject, long_form.domain) == ("transparent_mask", "Mask_Trans_9", "siwm")


def test_top_folders_other_than_live_and_spoof_are_reported(tmp_path):
    """Issue 15 finding 5: a folder beside Live/ and Spoof/ (e.g. an extra ``Spoof_extra/`` or ``Live_old/``) is
    reported as unknown, not silently skipped; the partition-file folder and list files are not."""
    expected = release.make_release(tmp_path, subjects=2, lists=True)
    for rel in ("Live_old/Live_5.mov", "Spoof_extra/Print/Paper_3.mov", "pro_3_text/extra_notes.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    (tmp_path / "Live_7.mov").write_bytes(b"x")  # a video at the top
    result = index_dataset("siw_m_v2", tmp_path)
    assert sorted(result.unknown) == ["Live_7.mov (video outside Live/ and Spoof/; not read)",
                                      "Live_old/ (folder outside Live/ and Spoof/; not read)",
                                      "Spoof_extra/ (folder outside Live/ and Spoof/; not read)"]
    assert len(result.records) == expected["records"]


def test_wrong_root_raises_layout_error(tmp_path):
    (tmp_path / "videos").mkdir()
    with pytest.raises(LayoutError) as err:
        index_dataset("siw_m_v2", tmp_path)
    assert str(tmp_path) in str(err.value) and "Spoof/" in str(err.value)


def test_real_media_decodes(tmp_path):
    import av

    release.make_release(tmp_path, subjects=2, media="real", lists=False)
    rec = index_dataset("siw_m_v2", tmp_path).records[0]
    with av.open(rec.path) as container:
        assert sum(1 for _ in container.decode(video=0)) == 3
