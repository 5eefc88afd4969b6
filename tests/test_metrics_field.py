"""Paper mode against transcriptions of the field's evaluation drivers (issue 19, item 9).

The transcriptions below are written from the published files, read at:

* InstructFLIP: ``kunkunlin1221/InstructFLIP`` @ ``7f4db1e20299dd3b291d831c8a988cccc12a8e0c``,
  ``src/lightningmodule.py::on_validation_epoch_end`` (per-video ``np.mean(v).item()`` over a float32 array) and
  ``src/utils/statistic.py`` (``eval_state``, ``get_threshold``, ``get_EER_states``, ``get_HTER_at_thr``);
* FLIP: ``koushiksrivats/FLIP`` @ ``31f26dd32c7e725b88700558adc9bba427702307``, ``utils/evaluate.py::eval``
  (``sum(prob_dict[key]) / len(prob_dict[key])`` over the float32 items of ``softmax(...).numpy()[:, 1]``, then
  ``np.append`` into a float64 list); its ``utils/statistic.py`` is SSDG's, the same functions as InstructFLIP's
  copy (reference notes §4.1).

Only the arithmetic is kept (no model, no loss, no tables); each line that computes a number is the published line.
The cases are random: 1-8 frames per video, scores on a coarse float32 lattice so that per-video means land on and
next to grid thresholds (ties), frames of a video interleaved with other videos' (arrival order matters).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from field_statistic import get_EER_states, get_HTER_at_thr
from sklearn.metrics import roc_auc_score, roc_curve

from fasvlm.metrics import fas_metrics

# ------------------------------------------------------------------------------------------- statistic.py (verbatim)
# tests/field_statistic.py holds the transcription (shared with tests/test_metrics.py)


def _tail(preds, labels, grid_density):
    """The lines after the per-video means, common to both drivers."""
    auc = roc_auc_score(labels, preds)
    eer, threshold = get_EER_states(preds, labels, grid_density)
    hter = get_HTER_at_thr(preds, labels, threshold)
    fpr, tpr, _ = roc_curve(labels, preds)
    tpr_filtered = tpr[fpr <= 1 / 100]
    rate = 0
    if len(tpr_filtered):
        rate = tpr_filtered[-1]
    return {"hter": hter, "eer": eer, "auc": auc, "threshold": threshold, "tpr": rate}


def instructflip_driver(preds, labels, video_ids, grid_density):
    """``on_validation_epoch_end`` for one dataloader; ``preds`` is ``torch.cat(preds).float().cpu().numpy()``."""
    preds_dict = {}
    labels_dict = {}
    for i, video_id in enumerate(video_ids):
        if video_id not in preds_dict:
            preds_dict[video_id] = []
            labels_dict[video_id] = []
        preds_dict[video_id].append(preds[i])
        labels_dict[video_id].append(labels[i])
    preds_dict = {k: np.mean(v).item() for k, v in preds_dict.items()}
    labels_dict = {k: np.mean(v).item() for k, v in labels_dict.items()}
    preds = np.array(list(preds_dict.values()))
    labels = np.array(list(labels_dict.values()))
    return _tail(preds, labels, grid_density)


def flip_driver(prob, label, videoID, grid_density):  # noqa: N803
    """``utils/evaluate.py::eval`` after the forward passes; ``prob`` = ``softmax(cls_out)[:, 1]`` (float32)."""
    prob_dict = {}
    label_dict = {}
    for i in range(len(prob)):
        if videoID[i] in prob_dict.keys():
            prob_dict[videoID[i]].append(prob[i])
            label_dict[videoID[i]].append(label[i])
        else:
            prob_dict[videoID[i]] = []
            label_dict[videoID[i]] = []
            prob_dict[videoID[i]].append(prob[i])
            label_dict[videoID[i]].append(label[i])
    prob_list = []
    label_list = []
    for key in prob_dict.keys():
        avg_single_video_prob = sum(prob_dict[key]) / len(prob_dict[key])
        avg_single_video_label = sum(label_dict[key]) / len(label_dict[key])
        prob_list = np.append(prob_list, avg_single_video_prob)
        label_list = np.append(label_list, avg_single_video_label)
    return _tail(prob_list, label_list, grid_density)


# ---------------------------------------------------------------------------------------------------------- cases


def _case(rng: np.random.Generator):
    """Frame scores P(attack) (float32 values), attack labels, int video ids, in a random arrival order."""
    n_videos = int(rng.integers(6, 40))
    labels_v = rng.integers(0, 2, n_videos)
    labels_v[0], labels_v[1] = 0, 1  # both classes
    counts = rng.integers(1, 9, n_videos)
    lattice = int(rng.choice([7, 10, 20, 100, 1000]))
    scores, labels, vids = [], [], []
    for v in range(n_videos):
        centre = 0.65 if labels_v[v] else 0.35
        k = np.clip(np.round((centre + rng.normal(0, 0.25, counts[v])) * lattice), 0, lattice)
        scores.append((k / lattice).astype(np.float32))
        labels += [int(labels_v[v])] * int(counts[v])
        vids += [v * 7 + 3] * int(counts[v])
    s32 = np.concatenate(scores)
    perm = rng.permutation(s32.size)
    return s32[perm], np.asarray(labels, dtype=np.int64)[perm], np.asarray(vids, dtype=np.int64)[perm]


def _check(ours: dict, ref: dict) -> None:
    for key in ("hter", "eer", "auc", "threshold"):
        assert ours[key] == pytest.approx(float(ref[key]), abs=1e-9), key
    assert ours["tpr_at_fpr"][0.01] == pytest.approx(float(ref["tpr"]), abs=1e-9)


GRID = 200  # the drivers' Python loop over 10001 thresholds is slow; one case below runs the field's 10000


def test_instructflip_arithmetic_random_cases():
    rng = np.random.default_rng(19)
    n_differ_float64 = 0
    for _ in range(100):
        s32, y, vid = _case(rng)
        ref = instructflip_driver(s32, y, vid, GRID)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ours = fas_metrics(s32.astype(np.float64), y, vid, grid_density=GRID)
        assert ours["video_mean"] == "instructflip"  # the default of paper mode, positive="attack"
        _check(ours, ref)
        f64 = fas_metrics(s32.astype(np.float64), y, vid, grid_density=GRID, video_mean="float64")
        n_differ_float64 += any(
            abs(f64[k] - float(ref[k])) > 1e-9 for k in ("hter", "auc", "threshold")
        )
    # the old float64 arithmetic misses the field's numbers on some of these cases: the test can tell them apart
    assert n_differ_float64 > 0


def test_flip_arithmetic_random_cases():
    rng = np.random.default_rng(23)
    n_differ_float64 = 0
    for _ in range(100):
        s32, y, vid = _case(rng)
        prob_live = (1.0 - s32.astype(np.float64)).astype(np.float32)  # FLIP scores P(live), label 1 = live
        ref = flip_driver(prob_live, 1 - y, vid, GRID)
        ours = fas_metrics(s32.astype(np.float64), y, vid, positive="live", grid_density=GRID)
        assert ours["video_mean"] == "flip"
        _check(ours, ref)
        f64 = fas_metrics(s32.astype(np.float64), y, vid, positive="live", grid_density=GRID, video_mean="float64")
        n_differ_float64 += any(abs(f64[k] - float(ref[k])) > 1e-9 for k in ("hter", "auc", "threshold"))
    assert n_differ_float64 > 0


def test_explicit_video_mean_on_other_convention_and_full_grid():
    """Either arithmetic can be chosen in either convention; one case on the field's 10000-step grid."""
    rng = np.random.default_rng(5)
    s32, y, vid = _case(rng)
    ref = flip_driver(s32, y, vid, 10000)  # FLIP's arithmetic on P(attack), label 1 = attack
    _check(fas_metrics(s32.astype(np.float64), y, vid, video_mean="flip"), ref)
    ref = instructflip_driver(s32, y, vid, 10000)
    _check(fas_metrics(s32.astype(np.float64), y, vid), ref)


def test_video_mean_arithmetic_differs_where_it_should():
    """Three float32 frames whose sum depends on the order: the three modes give their own, documented means."""
    from fasvlm.metrics import video_level

    frames = np.array([0.1, 0.7, 0.2], dtype=np.float32)
    s = frames.astype(np.float64)
    y = np.ones(3, dtype=np.int64)
    vid = np.zeros(3, dtype=np.int64)
    got_if = video_level(s, y, vid, video_mean="instructflip")[0][0]
    got_flip = video_level(s, y, vid, video_mean="flip")[0][0]
    got_64 = video_level(s, y, vid, video_mean="float64")[0][0]
    assert got_if == np.mean(frames).item()
    assert got_flip == float(sum(list(frames)) / 3)
    assert got_64 == pytest.approx(float(np.sort(s).sum() / 3), abs=0)
    with pytest.raises(ValueError, match="video_mean must be one of"):
        video_level(s, y, vid, video_mean="float32")
