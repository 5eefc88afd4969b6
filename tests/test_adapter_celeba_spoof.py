"""CelebA-Spoof adapter: protocol-2 camera quality of training images, list conflicts, missing images (issue 15
finding 4), on a release in the official layout (``Data/``, ``metas/protocol2/test_on_*_quality_device``)."""

import json

from conftest import write_celeba_layout

from fasvlm.data_modules.adapters import index_dataset

_DIRS = {"low": "low", "medium": "middle", "high": "high"}


def _write_protocol2(root, groups: dict[str, str], splits: dict[str, str], extra_test: dict[str, list[str]] = ()):
    """The official protocol-2 lists: test_on_X/test = test images of group X; test_on_X/train = training images of
    the other two groups (so a training image is in two train lists and no test list)."""
    extra_test = dict(extra_test)
    for q, folder in _DIRS.items():
        d = root / "metas" / "protocol2" / f"test_on_{folder}_quality_device"
        d.mkdir(parents=True, exist_ok=True)
        test = [k for k, g in groups.items() if g == q and splits[k] == "test"] + extra_test.get(q, [])
        train = [k for k, g in groups.items() if g != q and splits[k] == "train"]
        (d / "test_label.json").write_text(json.dumps({k: [0] * 44 for k in test}))
        (d / "train_label.json").write_text(json.dumps({k: [0] * 44 for k in train}))


def _release(tmp_path):
    root = tmp_path / "CelebA_Spoof"
    labels = write_celeba_layout(root, n_train_subjects=3, n_test_subjects=2, per_subject=3, size=16)
    splits = {k: s for s, content in labels.items() for k in content}
    keys = sorted(splits)
    groups = {k: ("low", "medium", "high")[i % 3] for i, k in enumerate(keys)}
    return root, splits, groups


def test_training_images_get_their_camera_quality_by_elimination(tmp_path):
    root, splits, groups = _release(tmp_path)
    _write_protocol2(root, groups, splits)
    result = index_dataset("celeba_spoof", root)
    assert result.report == {}
    got = {r.path: r.camera_quality for r in result.records}
    assert len(got) == len(splits)
    for key, group in groups.items():
        assert got[str(root / key)] == group, key
    train = [r for r in result.records if r.split == "train"]
    assert {r.camera_quality for r in train} == {"low", "medium", "high"}  # not only the test images
    some = next(r for r in train if r.camera_quality == "medium")
    assert some.extra["protocols"]["protocol2_low"] == "train" and "protocol2_middle" not in some.extra["protocols"]


def test_images_in_two_groups_test_lists_are_reported_not_guessed(tmp_path):
    root, splits, groups = _release(tmp_path)
    low_test = sorted(k for k, g in groups.items() if g == "low" and splits[k] == "test")
    _write_protocol2(root, groups, splits, extra_test={"high": low_test})  # also in the high test list
    result = index_dataset("celeba_spoof", root)
    conflict = result.report["protocol2_conflicts"]
    assert conflict["count"] == len(low_test) > 0 and conflict["examples"] == low_test[:5]
    assert "None" in conflict["rule"]
    recs = {r.path: r for r in result.records}
    for key in low_test:
        rec = recs[str(root / key)]
        assert rec.camera_quality is None  # before issue 15 these silently became "high"
        assert rec.extra["protocols"]["protocol2_low"] == rec.extra["protocols"]["protocol2_high"] == "test"
    others = [k for k in splits if k not in low_test]
    assert all(recs[str(root / k)].camera_quality == groups[k] for k in others)


def test_label_entries_without_their_image_are_counted_and_never_indexed(tmp_path):
    root, splits, _ = _release(tmp_path)
    gone = sorted(splits)[:2]
    for key in gone:
        (root / key).unlink()
    result = index_dataset("celeba_spoof", root)
    assert len(result.records) == len(splits) - 2
    assert not {str(root / k) for k in gone} & {r.path for r in result.records}
    assert result.report["missing_images"]["count"] == 2 and result.report["missing_images"]["examples"] == gone


def test_prepare_writes_the_index_report_to_the_summary(tmp_path, capsys):
    from fasvlm.data_modules.prepare import main

    root, splits, groups = _release(tmp_path)
    low_test = sorted(k for k, g in groups.items() if g == "low" and splits[k] == "test")
    _write_protocol2(root, groups, splits, extra_test={"high": low_test})
    (root / sorted(splits)[0]).unlink()
    out = tmp_path / "out"
    assert main(["--dataset", "celeba_spoof", "--root", str(root), "--out", str(out), "--index-only",
                 "--no-progress"]) == 0
    report = json.loads((out / "summary.json").read_text())["index_report"]
    assert report["missing_images"]["count"] == 1
    assert report["protocol2_conflicts"]["count"] == len(low_test)
    err = capsys.readouterr().err
    assert "missing_images" in err and "protocol2_conflicts" in err
