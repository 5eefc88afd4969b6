"""ISO/IEC 30107-3 rates, DET points and the CelebA-Spoof TPR@FPR rule (issue 19, item 10)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from fasvlm.metrics import UndefinedFASMetricWarning, det_curve_points, fas_metrics


def _brute(a, attack, types, apcer_t, bpcer_t):
    """Every threshold in a fine sweep: the best BPCER with APCER_AP <= t and the best APCER_AP with BPCER <= t."""
    thr = np.r_[np.unique(a), np.unique(a) + 1e-9, -1.0, 2.0]
    best_b, best_a = {t: 1.0 for t in apcer_t}, {t: 1.0 for t in bpcer_t}
    for th in thr:
        pred_attack = a >= th
        bpcer = pred_attack[attack == 0].mean()
        worst = max((~pred_attack[(attack == 1) & (types == n)]).mean() for n in np.unique(types[attack == 1]))
        for t in apcer_t:
            if worst <= t + 1e-12:
                best_b[t] = min(best_b[t], bpcer)
        for t in bpcer_t:
            if bpcer <= t + 1e-12:
                best_a[t] = min(best_a[t], worst)
    return best_b, best_a


def test_fixed_rate_points_and_apcer_ap_match_a_threshold_sweep():
    rng = np.random.default_rng(0)
    for _ in range(60):
        n = int(rng.integers(20, 200))
        attack = rng.integers(0, 2, n)
        attack[:2] = [0, 1]
        types = np.where(attack == 1, rng.choice(["print", "replay", "mask"], n), "live")
        types[1] = "print"
        a = np.round(np.clip(rng.normal(0.35 + 0.3 * attack, 0.2), 0, 1), int(rng.integers(1, 4)))  # ties
        out = fas_metrics(a, attack, attack_types=types, video_mean="float64", mode="honest", threshold=0.5)
        b, ap = _brute(a, attack, types, (0.1, 0.05, 0.01), (0.1, 0.05, 0.01))
        for t in (0.1, 0.05, 0.01):
            assert out["bpcer_at_apcer"][t] == pytest.approx(b[t], abs=1e-12)
            assert out["apcer_at_bpcer"][t] == pytest.approx(ap[t], abs=1e-12)
        per = out["apcer_per_attack"]
        for name, rate in per.items():
            sel = (attack == 1) & (types == name)
            assert rate == pytest.approx((a[sel] < 0.5).mean())
        assert out["apcer_ap"] == out["apcer"] == max(per.values())


def test_fixed_rate_points_are_convention_free():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    s = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1)
    a = fas_metrics(s, y, video_mean="float64")
    b = fas_metrics(s, y, positive="live", video_mean="float64")
    for key in ("bpcer_at_apcer", "apcer_at_bpcer"):
        for t in a[key]:
            assert a[key][t] == pytest.approx(b[key][t], abs=1e-12)


def test_det_curve_points_are_monotone_and_match_rates():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 500)
    s = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1)
    det = det_curve_points(s, y)
    assert np.all(np.diff(det["apcer"]) >= 0) and np.all(np.diff(det["bpcer"]) <= 0)
    assert det["apcer"][0] == 0.0 and det["bpcer"][-1] == 0.0 and det["threshold"][-1] == np.inf
    i = det["threshold"].size // 2
    th = det["threshold"][i]
    assert det["bpcer"][i] == pytest.approx((s[y == 0] >= th).mean())
    assert det["apcer"][i] == pytest.approx((s[y == 1] < th).mean())
    with pytest.raises(ValueError, match="one class"):
        det_curve_points(s[y == 1], y[y == 1])


def _celeba_spoof_tpr(scores, labels, fpr_list):
    """CelebA-Spoof ``intra_dataset_code/client.py`` (ZhangYuanhan-AI/CelebA-Spoof @ d0e54d13), transcribed:
    ``get_thresholdtable_from_fpr`` then ``get_tpr_from_threshold`` (label 0 = live, score = P(spoof))."""
    threshold_list = []
    live_scores = []
    for score, label in zip(scores, labels):
        if label == 0:
            live_scores.append(float(score))
    live_scores.sort(reverse=True)
    live_nums = len(live_scores)
    for fpr in fpr_list:
        i_sample = int(fpr * live_nums)
        i_sample = max(1, i_sample)
        threshold_list.append(live_scores[i_sample - 1])
    tpr_list = []
    hack_scores = []
    for score, label in zip(scores, labels):
        if label == 1:
            hack_scores.append(float(score))
    hack_scores.sort(reverse=True)
    hack_nums = len(hack_scores)
    for threshold in threshold_list:
        hack_index = 0
        while hack_index < hack_nums:
            if hack_scores[hack_index] < threshold:
                break
            else:
                hack_index += 1
        tpr = hack_index * 1.0 / hack_nums if hack_nums != 0 else 0
        tpr_list.append(tpr)
    return tpr_list


def test_celeba_spoof_tpr_rule_matches_the_official_code_and_differs_from_roc():
    rng = np.random.default_rng(3)
    n_differ = 0
    for _ in range(100):
        n = int(rng.integers(30, 400))
        y = rng.integers(0, 2, n)
        y[:2] = [0, 1]
        s = np.round(np.clip(rng.normal(0.3 + 0.4 * y, 0.2), 0, 1), int(rng.integers(1, 4)))
        targets = (0.01, 0.005, 0.001, 0.05)
        ours = fas_metrics(s, y, fpr_targets=targets, tpr_rule="celeba_spoof", video_mean="float64")
        ref = _celeba_spoof_tpr(s, y, targets)
        for t, r in zip(targets, ref):
            assert ours["tpr_at_fpr"][t] == pytest.approx(r, abs=1e-12)
        roc = fas_metrics(s, y, fpr_targets=targets, video_mean="float64")
        n_differ += any(abs(roc["tpr_at_fpr"][t] - ours["tpr_at_fpr"][t]) > 1e-12 for t in targets)
    assert n_differ > 0
    with pytest.raises(ValueError, match="tpr_rule"):
        fas_metrics(s, y, tpr_rule="celeba")


def test_one_class_target_has_nan_hter_not_one():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedFASMetricWarning)
        out = fas_metrics([0.1, 0.2, 0.3], [0, 0, 0])
    assert math.isnan(out["hter"]) and math.isnan(out["eer"]) and math.isnan(out["auc"])
