"""fasvlm.metrics against an independent loop port of the field's shared metric code (reference notes §4.1).

SSDG/ViTAF/FLIP ``utils/statistic.py`` (tests/field_statistic.py) and ``_ref_eval``, a line-by-line port of the
``utils/evaluate.py::eval`` driver (video dicts, ``roc_auc_score``, ``roc_curve``), kept deliberately naive.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import pytest
import torch
from field_statistic import get_EER_states, get_HTER_at_thr, get_threshold
from sklearn.metrics import roc_auc_score, roc_curve

from fasvlm.metrics import (
    FASMetrics,
    UndefinedFASMetricWarning,
    bpcer_threshold,
    eer_threshold,
    fas_metrics,
    paper_thresholds,
    roc_curve_points,
    stable_id,
)

# ---------------------------------------------------------------------------------------------------------------------
# Reference: the shared code, ported as a loop
# ---------------------------------------------------------------------------------------------------------------------


# statistic.py itself: tests/field_statistic.py (the transcription tests/test_metrics_field.py uses too)


def _ref_eval(scores, labels, video_ids, positive, grid_density, fpr_targets):
    """The evaluation driver; ``positive="live"`` is FLIP's convention (label' = 1 - label, prob' = 1 - prob)."""
    if positive == "live":
        labels = [1 - int(v) for v in labels]
        scores = [1.0 - float(v) for v in scores]
    prob_dict, label_dict = {}, {}
    for i in range(len(scores)):
        key = video_ids[i] if video_ids is not None else i
        if key in prob_dict:
            prob_dict[key].append(scores[i])
            label_dict[key].append(labels[i])
        else:
            prob_dict[key] = [scores[i]]
            label_dict[key] = [labels[i]]
    prob_list, label_list = [], []
    for key in prob_dict.keys():
        prob_list = np.append(prob_list, sum(prob_dict[key]) / len(prob_dict[key]))
        label_list = np.append(label_list, sum(label_dict[key]) / len(label_dict[key]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn >= 1.6: one class -> UndefinedMetricWarning and NaN
        auc_score = roc_auc_score(label_list, prob_list)
        fpr, tpr, _ = roc_curve(label_list, prob_list)
    eer, threshold = get_EER_states(prob_list, label_list, grid_density)
    hter = get_HTER_at_thr(prob_list, label_list, threshold)
    rates = {}
    for target in fpr_targets:
        tpr_filtered = tpr[fpr <= target]
        rates[target] = 0 if len(tpr_filtered) == 0 else tpr_filtered[-1]
    return {
        "eer": eer,
        "threshold": threshold,
        "hter": hter,
        "auc": auc_score,
        "tpr_at_fpr": rates,
        "n": len(prob_list),
    }


# ---------------------------------------------------------------------------------------------------------------------
# Random cases
# ---------------------------------------------------------------------------------------------------------------------


def _random_case(rng: np.random.Generator, grid_density: int):
    """Random sizes, score families with ties and exact grid hits, video grouping in shuffled frame order."""
    n_videos = int(rng.choice([1, 2, 3, 5, 8, 13, 21, 40, 90], p=[0.03, 0.05, 0.07, 0.15, 0.2, 0.2, 0.15, 0.1, 0.05]))
    family = rng.choice(["uniform", "dyadic", "grid", "constant", "extreme", "separated", "beta"])
    grouped = rng.random() < 0.7
    # Averages of 3+ frames are exact only for dyadic scores (reference notes: sequential vs sorted summation).
    max_frames = 4 if family in ("uniform", "dyadic", "beta", "extreme", "separated") else 2
    frames = rng.integers(1, max_frames + 1, n_videos) if grouped else np.ones(n_videos, dtype=int)
    p_attack = rng.choice([0.0, 1.0, rng.uniform(0.1, 0.9)], p=[0.03, 0.03, 0.94])
    v_label = (rng.random(n_videos) < p_attack).astype(np.int64)
    labels = np.repeat(v_label, frames)
    n = labels.size
    if family == "uniform":
        scores = rng.random(n)
    elif family == "beta":
        scores = np.where(labels == 1, rng.beta(3, 2, n), rng.beta(2, 3, n))
    elif family == "dyadic":
        d = int(rng.choice([2, 4, 16, 64]))
        scores = rng.integers(0, d + 1, n) / float(d)
    elif family == "grid":  # exactly the grid's own thresholds, 0.0 + i * 1.0 / float(g)
        scores = np.array([0.0 + int(i) * 1.0 / float(grid_density) for i in rng.integers(0, grid_density + 1, n)])
    elif family == "constant":
        scores = np.full(n, rng.choice([0.0, 0.5, 1.0, rng.random()]))
    elif family == "extreme":
        scores = rng.choice([0.0, 1.0], n).astype(np.float64)
    else:  # separated: perfect or inverted classifier
        hi = rng.uniform(0.5, 1.0, n)
        lo = rng.uniform(0.0, 0.5, n)
        scores = np.where(labels == 1, hi, lo) if rng.random() < 0.7 else np.where(labels == 1, lo, hi)
    video_ids = np.repeat([f"v{i:03d}" for i in range(n_videos)], frames)
    perm = rng.permutation(n)
    return scores[perm], labels[perm], (video_ids[perm] if grouped else None)


def _assert_same(ours: dict, ref: dict, ctx: str) -> None:
    assert ours["n"] == ref["n"], ctx
    assert ours["threshold"] == ref["threshold"], ctx  # the same grid float, exactly
    if math.isnan(ref["auc"]):  # one class: the shared code's EER/HTER of 1.0 is its empty-class artefact -> NaN
        assert math.isnan(ours["eer"]) and math.isnan(ours["hter"]), ctx
    else:
        for key in ("eer", "hter"):
            assert abs(ours[key] - ref[key]) <= 1e-9, (ctx, key, ours[key], ref[key])
    if math.isnan(ref["auc"]):
        assert math.isnan(ours["auc"]), ctx
        assert all(math.isnan(v) for v in ours["tpr_at_fpr"].values()), ctx  # documented: undefined on one class
    else:
        assert abs(ours["auc"] - ref["auc"]) <= 1e-9, (ctx, ours["auc"], ref["auc"])
        for target, rate in ref["tpr_at_fpr"].items():
            assert abs(ours["tpr_at_fpr"][target] - rate) <= 1e-9, (ctx, target, ours["tpr_at_fpr"], rate)


def _run_cases(seed: int, n_cases: int, grid_density_choices) -> None:
    rng = np.random.default_rng(seed)
    for case in range(n_cases):
        g = int(rng.choice(grid_density_choices))
        scores, labels, video_ids = _random_case(rng, g)
        positive = "live" if rng.random() < 0.5 else "attack"
        targets = (0.01, float(rng.choice([0.0, 0.05, 0.1, 0.2, 0.5, rng.random()])))
        ref = _ref_eval(scores, labels, video_ids, positive, g, targets)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedFASMetricWarning)
            # the reference averages in float64, sequentially: the float32 field arithmetic is tested against
            # transcriptions of each driver in test_metrics_field.py
            ours = fas_metrics(scores, labels, video_ids, positive=positive, grid_density=g, fpr_targets=targets,
                               video_mean="float64")
        assert ours["hter"] == ours["eer"] or (math.isnan(ours["hter"]) and math.isnan(ours["eer"]))
        _assert_same(ours, ref, f"seed={seed} case={case} g={g} positive={positive}")


# 10,000 random cases in all (4 x 2,494 + 24): most on coarse grids (the loop reference is the slow part), 24 on the
# full 10,002-threshold grid; the `slow` variant adds 500 more on fine grids.
@pytest.mark.parametrize("chunk", range(4))
def test_paper_mode_equals_shared_code_on_random_cases(chunk):
    _run_cases(seed=1000 + chunk, n_cases=2494, grid_density_choices=[7, 10, 20, 50, 100])


def test_paper_mode_equals_shared_code_on_full_grid():
    _run_cases(seed=7, n_cases=24, grid_density_choices=[10000])


@pytest.mark.slow
def test_paper_mode_equals_shared_code_on_full_grid_many():
    _run_cases(seed=8, n_cases=500, grid_density_choices=[1000, 10000])


# ---------------------------------------------------------------------------------------------------------------------
# Targeted checks
# ---------------------------------------------------------------------------------------------------------------------


def test_thresholds_are_the_loop_floats():
    loop = get_threshold(None, 10000)
    grid = paper_thresholds(10000)
    assert grid.size == 10002
    assert all(a == b for a, b in zip(grid.tolist(), loop))
    # the float behaviour matters: 0.0 + 3 * 1.0 / 10000.0 is not 3 * 0.0001
    assert grid[3] == 3 / 10000.0 and grid[3] != 3 * 0.0001


def test_score_on_a_threshold_is_predicted_positive():
    # 0.3 is a grid point; `>=` puts the attack at 0.3 on the positive side and the scan keeps the LAST best threshold
    out = fas_metrics(np.array([0.3, 0.2999]), np.array([1, 0]))
    assert out["eer"] == 0.0
    assert out["threshold"] == 0.3


def test_roc_curve_points_equal_sklearn_including_drop_intermediate():
    rng = np.random.default_rng(3)
    for _ in range(200):
        n = int(rng.integers(2, 60))
        y = rng.integers(0, 2, n)
        y[0], y[1] = 0, 1
        s = rng.integers(0, rng.integers(2, 12), n) / 11.0  # many ties, many collinear points
        fpr, tpr, thr = roc_curve(y, s)
        f2, t2, th2 = roc_curve_points(s, y)
        np.testing.assert_array_equal(fpr, f2)
        np.testing.assert_array_equal(tpr, t2)
        np.testing.assert_array_equal(thr, th2)


def test_tpr_at_fpr_follows_dropped_intermediate_points():
    # fps/tps counts 1,2,3 / 5,6,7 are collinear: sklearn drops the middle point, so at FPR <= 2/3 the last kept
    # point is the first one; the shared code sees exactly that curve.
    s = np.array([0.9] * 5 + [0.8, 0.8, 0.7, 0.7, 0.6, 0.6, 0.1])
    y = np.array([1] * 5 + [1, 0, 1, 0, 1, 0, 1])
    ref = _ref_eval(s, y, None, "attack", 10000, (2 / 3,))
    out = fas_metrics(s, y, fpr_targets=(2 / 3,))
    assert out["tpr_at_fpr"][2 / 3] == ref["tpr_at_fpr"][2 / 3]


def test_flip_convention_changes_tpr_only():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 400)
    s = np.clip(rng.normal(0.35 + 0.3 * y, 0.15), 0, 1)
    a = fas_metrics(s, y, fpr_targets=(0.01, 0.05), grid_density=1000)
    b = fas_metrics(s, y, fpr_targets=(0.01, 0.05), positive="live", grid_density=1000)
    assert abs(a["auc"] - b["auc"]) < 1e-12
    assert a["tpr_at_fpr"] != b["tpr_at_fpr"]
    assert b["positive"] == "live" and a["n_attack"] == b["n_attack"]


def test_one_class_constant_and_nan_inputs():
    with pytest.warns(UndefinedFASMetricWarning, match="no live"):
        out = fas_metrics(np.array([0.2, 0.9, 0.4]), np.array([1, 1, 1]))
    ref = _ref_eval(np.array([0.2, 0.9, 0.4]), np.array([1, 1, 1]), None, "attack", 10000, (0.01,))
    assert math.isnan(out["auc"]) and math.isnan(out["tpr_at_fpr"][0.01])
    # undefined = NaN (issue 19): the shared code's EER/HTER of 1.0 here is its empty-class convention, not a rate
    assert ref["eer"] == 1.0 and math.isnan(out["eer"]) and math.isnan(out["hter"])
    assert out["threshold"] == ref["threshold"] == 1.1
    assert math.isnan(out["bpcer"]) and out["apcer"] == 1.0  # no live items: BPCER undefined; APCER is defined
    assert all(math.isnan(v) for v in (*out["bpcer_at_apcer"].values(), *out["apcer_at_bpcer"].values()))
    with pytest.warns(UndefinedFASMetricWarning, match="no attack"):
        honest = fas_metrics([0.1, 0.7], [0, 0], mode="honest", threshold=0.5)
    assert honest["bpcer"] == 0.5 and math.isnan(honest["apcer"]) and math.isnan(honest["hter"])
    const = fas_metrics(np.full(6, 0.5), np.array([0, 1, 0, 1, 0, 1]))
    assert const["auc"] == 0.5 and const["eer"] == 0.5
    with pytest.raises(ValueError, match="NaN"):
        fas_metrics(np.array([0.1, np.nan]), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fas_metrics(np.array([0.1, 3.0]), np.array([0, 1]))
    with pytest.raises(ValueError, match="empty"):
        fas_metrics(np.array([]), np.array([]))
    with pytest.raises(ValueError, match="labels must be 0"):
        fas_metrics(np.array([0.1, 0.2]), np.array([0, 2]))
    with pytest.raises(ValueError, match="both live and attack"):
        fas_metrics(np.array([0.1, 0.2]), np.array([0, 1]), ["v", "v"])
    with pytest.raises(ValueError, match="honest"):
        fas_metrics(np.array([0.1, 0.2]), np.array([0, 1]), threshold=0.5)
    with pytest.raises(ValueError, match="threshold"):
        fas_metrics(np.array([0.1, 0.2]), np.array([0, 1]), mode="honest")


def test_torch_inputs_equal_numpy_inputs():
    rng = np.random.default_rng(11)
    s = rng.random(50)
    y = rng.integers(0, 2, 50)
    a = fas_metrics(s, y)
    b = fas_metrics(torch.from_numpy(s), torch.from_numpy(y))
    assert a == b


def _loop_iso(scores, labels, types, thr):
    """ISO/IEC 30107-3 by hand: attacks accepted as bona fide per type, bona fide rejected."""
    per = {}
    for t in sorted({t for t, lab in zip(types, labels) if lab == 1}):
        items = [s for s, lab, tt in zip(scores, labels, types) if lab == 1 and tt == t]
        per[t] = sum(1 for s in items if not s >= thr) / len(items)
    live = [s for s, lab in zip(scores, labels) if lab == 0]
    bpcer = sum(1 for s in live if s >= thr) / len(live)
    return per, max(per.values()), bpcer


def test_honest_mode_iso_metrics_per_attack_and_video():
    rng = np.random.default_rng(2)
    n_v = 60
    v_label = rng.integers(0, 2, n_v)
    v_type = np.where(v_label == 1, rng.choice(["print", "replay", "mask"], n_v), "live")
    frames = 2
    s = np.clip(np.repeat(0.3 + 0.35 * v_label, frames) + rng.normal(0, 0.2, n_v * frames), 0, 1)
    vids = np.repeat([f"v{i}" for i in range(n_v)], frames)
    labels = np.repeat(v_label, frames)
    types = np.repeat(v_type, frames)
    thr = eer_threshold(s[::3], labels[::3])  # "chosen on other data"
    out = fas_metrics(s, labels, vids, mode="honest", threshold=thr, attack_types=types)
    vs = [(s[2 * i] + s[2 * i + 1]) / 2 for i in range(n_v)]
    per, apcer, bpcer = _loop_iso(vs, v_label, v_type, thr)
    assert out["threshold"] == thr and out["mode"] == "honest" and out["n"] == n_v and out["n_frames"] == 2 * n_v
    assert out["apcer_per_attack"] == pytest.approx(per, abs=1e-12)
    assert out["apcer"] == pytest.approx(apcer) and out["bpcer"] == pytest.approx(bpcer)
    assert out["acer"] == pytest.approx((apcer + bpcer) / 2)
    n_att = int(v_label.sum())
    apcer_all = sum(1 for v, lab in zip(vs, v_label) if lab == 1 and v < thr) / n_att
    assert out["hter"] == pytest.approx((apcer_all + bpcer) / 2)
    assert out["eer"] == fas_metrics(s, labels, vids)["eer"]
    # FLIP convention: the same decisions with score' = 1 - score and threshold' = 1 - threshold (away from ties)
    flipped = fas_metrics(
        s, labels, vids, mode="honest", threshold=1 - thr + 1e-12, attack_types=types, positive="live"
    )
    assert flipped["bpcer"] == pytest.approx(out["bpcer"]) and flipped["apcer"] == pytest.approx(out["apcer"])


def test_bpcer_threshold_meets_target_on_grid():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 500)
    s = np.clip(rng.normal(0.3 + 0.4 * y, 0.15), 0, 1)
    grid = paper_thresholds(10000)
    for target in (0.0, 0.01, 0.1, 0.5):
        thr = bpcer_threshold(s, y, target)
        live = s[y == 0]
        assert (live >= thr).mean() <= target
        i = int(np.flatnonzero(grid == thr)[0])
        assert i == 0 or (live >= grid[i - 1]).mean() > target  # the lowest grid threshold that meets it
        thr_live = bpcer_threshold(s, y, target, positive="live")
        assert ((1 - live) < thr_live).mean() <= target
    with pytest.raises(ValueError, match="live"):
        bpcer_threshold([0.5], [1], 0.1)


def test_vectorised_scan_is_fast():
    rng = np.random.default_rng(0)
    y = np.repeat(rng.integers(0, 2, 10000), 2)
    s = rng.random(20000)
    vids = np.repeat(np.arange(10000), 2)
    t0 = time.perf_counter()
    fas_metrics(s, y, vids)
    assert time.perf_counter() - t0 < 2.0


# ---------------------------------------------------------------------------------------------------------------------
# torchmetrics Metric, one process
# ---------------------------------------------------------------------------------------------------------------------


def test_fasmetrics_equals_function_over_batches_and_drops_duplicates():
    rng = np.random.default_rng(9)
    n_v = 40
    v_label = rng.integers(0, 2, n_v)
    s = rng.random(3 * n_v)
    labels = np.repeat(v_label, 3)
    vids = [f"dom/v{i}" for i in np.repeat(np.arange(n_v), 3)]
    types = np.repeat(np.where(v_label == 1, rng.choice(["photo", "replay"], n_v), "live"), 3).tolist()
    sids = [f"s{i}" for i in range(3 * n_v)]
    metric = FASMetrics(fpr_targets=(0.01, 0.1))
    order = rng.permutation(3 * n_v)  # frames of one video end up in different batches
    for chunk in np.array_split(order, 7):
        metric.update(
            torch.from_numpy(s[chunk]).float(),
            torch.from_numpy(labels[chunk]),
            video_ids=[vids[i] for i in chunk],
            attack_types=[types[i] for i in chunk],
            sample_ids=[sids[i] for i in chunk],
        )
    metric.update(
        torch.from_numpy(s[order[:5]]).float(),
        torch.from_numpy(labels[order[:5]]),  # sampler padding
        video_ids=[vids[i] for i in order[:5]],
        attack_types=[types[i] for i in order[:5]],
        sample_ids=[sids[i] for i in order[:5]],
    )
    got = metric.compute()
    want = fas_metrics(s.astype(np.float32), labels, vids, fpr_targets=(0.01, 0.1), attack_types=types)
    assert got == want
    data = metric.gather()
    assert data.n_duplicates == 5 and len(data) == 3 * n_v
    metric.reset()
    metric.update(torch.tensor([0.2, 0.8]), torch.tensor([0, 1]))
    assert metric.compute()["n"] == 2


def test_fasmetrics_honest_mode_and_int_video_ids():
    metric = FASMetrics(mode="honest", threshold=0.5)
    metric.update(torch.tensor([0.2, 0.4, 0.7, 0.9]), torch.tensor([0, 0, 1, 1]), video_ids=torch.tensor([1, 1, 2, 2]))
    out = metric.compute()
    assert out["n"] == 2 and out["hter"] == 0.0 and out["threshold"] == 0.5
    assert stable_id("abc") == stable_id("abc") and 0 <= stable_id("abc") < 2**63
