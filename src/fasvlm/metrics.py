"""Face anti-spoofing metrics: the field's shared code, reproduced exactly, and an honest fixed-threshold mode.

Convention (docs/design.md, "Contracts"): ``label 1 = attack`` and ``score = P(attack)``. ``positive="live"`` gives
the FLIP convention (label' = 1 - label, score' = 1 - score, applied per frame before video averaging); it changes
only TPR@FPR and which side of a threshold is "positive" (reference notes §4.2).

``mode="paper"`` is the SSDG -> ViTAF -> FLIP -> InstructFLIP ``utils/statistic.py`` + evaluation driver
(reference notes §4.1):

1. with ``video_ids``, frame scores and labels are averaged per video, in the field code's own arithmetic
   (``video_mean``): ``"instructflip"`` (InstructFLIP ``src/lightningmodule.py``: ``np.mean`` of the video's float32
   frame scores) or ``"flip"`` (SSDG/ViTAF/FLIP ``utils/evaluate.py``: ``sum(...) / len(...)`` over float32 scores
   in arrival order); paper mode picks the one of its ``positive`` convention unless told. At ties the threshold,
   HTER and AUC depend on the last bit of these means, so only the same arithmetic gives the field's numbers for
   every input; ``"float64"`` (order-independent float64 sums) is the honest mode's default. Arrival order is the
   order of ``update`` calls, ranks concatenated; it matters only for videos of three or more frames;
2. thresholds ``0.0 + i * 1.0 / float(grid_density)`` for ``i = 0..grid_density`` then ``1.1``; ``score >= thr`` is
   positive; FAR = FP / (FP + TN), FRR = FN / (FN + TP), each 1.0 when its class is empty (as in the shared code);
   the LAST threshold with the smallest ``|FRR - FAR|`` is kept; EER = (FAR + FRR) / 2 there;
3. HTER at that threshold (``get_HTER_at_thr``), so HTER = EER;
4. AUC = ``sklearn.metrics.roc_auc_score`` (trapezoid over ``roc_curve``, ties included);
5. TPR@FPR = ``tpr[fpr <= target][-1]`` over ``sklearn.metrics.roc_curve`` (default ``drop_intermediate=True``),
   0 when no point qualifies; ``tpr_rule="celeba_spoof"`` gives CelebA-Spoof's official rule instead.

The threshold scan is vectorised with sorted scores and ``searchsorted`` and gives the loop's numbers bit for bit;
with the same per-video means and ``video_mean`` of the field code, the whole paper mode equals that code's
arithmetic (tests/test_metrics_field.py checks it against transcriptions of both drivers on random tied cases).

``mode="honest"``: a threshold chosen beforehand (on the source validation set, :func:`eer_threshold` or
:func:`bpcer_threshold`) is applied unchanged: HTER, ISO/IEC 30107-3 APCER per attack species (PAI species),
APCER_AP (the worst species; one attack-potential level, since no dataset here grades attack potential), BPCER and
ACER at it; EER is reported beside it. Both modes also report the ISO/IEC 30107-3 fixed-rate points of the data
(``bpcer_at_apcer``: BPCER10/20/100 = BPCER at APCER_AP <= 10/5/1 %; ``apcer_at_bpcer``), and
:func:`det_curve_points` gives the DET curve.

Defined edge cases: empty input, NaN scores, scores outside [0, 1], labels other than 0/1 and videos whose frames
disagree on label or attack type raise ``ValueError``. A metric undefined for the input is NaN (``null`` in the
JSON reports), with an :class:`UndefinedFASMetricWarning`: with one class only, AUC, EER, HTER, TPR@FPR and the
fixed-rate points are NaN (the shared code crashes in ``roc_auc_score`` there, and its EER/HTER of 1.0 would be an
artefact of its empty-class convention), as are the rates of the missing class. Means over domains skip NaN and
say how many domains they cover. Constant scores are ordinary input (AUC 0.5).

:class:`FASMetrics` is the torchmetrics version: its states (scores, labels, 63-bit video/sample/attack ids and the
attack-name vocabulary) are concatenated over all ranks before any aggregation, and duplicated samples (the padding
that ``DistributedSampler`` adds) are dropped by sample id.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

__all__ = [
    "GRID_DENSITY",
    "FASData",
    "FASMetrics",
    "UndefinedFASMetricWarning",
    "APCER_TARGETS",
    "BPCER_TARGETS",
    "VIDEO_MEANS",
    "bpcer_threshold",
    "det_curve_points",
    "eer_threshold",
    "fas_metrics",
    "honest_threshold",
    "paper_thresholds",
    "roc_curve_points",
    "stable_id",
    "video_level",
]

GRID_DENSITY = 10000
Mode = Literal["paper", "honest"]
Positive = Literal["attack", "live"]
VideoMean = Literal["instructflip", "flip", "float64"]
VIDEO_MEANS = ("instructflip", "flip", "float64")
APCER_TARGETS = (0.1, 0.05, 0.01)  # ISO/IEC 30107-3 BPCER10, BPCER20, BPCER100
BPCER_TARGETS = (0.1, 0.05, 0.01)
TprRule = Literal["roc", "celeba_spoof"]
_UNSPECIFIED_ATTACK = "unspecified"


class UndefinedFASMetricWarning(UserWarning):
    """A metric is undefined for this input (one class only) and is reported as NaN."""


# ----------------------------------------------------------------------------------------------------------------------
# Input handling
# ----------------------------------------------------------------------------------------------------------------------


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype == torch.bfloat16 or x.dtype == torch.float16:
            x = x.float()
        return x.numpy()
    return np.asarray(x)


def _check_positive(positive: str) -> None:
    if positive not in ("attack", "live"):
        raise ValueError(
            f"positive must be 'attack' (label 1 = attack, InstructFLIP) or 'live' (FLIP), got {positive!r}"
        )


def _check_scores_labels(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    s = _to_numpy(scores).astype(np.float64, copy=False).reshape(-1)
    y_raw = _to_numpy(labels).reshape(-1)
    if s.shape != y_raw.shape:
        raise ValueError(f"scores and labels differ in length: {s.size} scores, {y_raw.size} labels")
    if s.size == 0:
        raise ValueError("no items to score: scores and labels are empty")
    nan = np.isnan(s)
    if nan.any():
        first = int(np.flatnonzero(nan)[0])
        raise ValueError(
            f"scores contain {int(nan.sum())} NaN value(s) (first at index {first}); a FAS metric over NaN scores is "
            "undefined: check the model's output (e.g. a softmax over inf logits) before evaluating"
        )
    if s.min() < 0.0 or s.max() > 1.0:
        raise ValueError(
            f"scores must be probabilities in [0, 1] (score = P(attack)); got min {s.min():.6g}, max {s.max():.6g}. "
            "Apply a sigmoid/softmax to logits first"
        )
    if y_raw.dtype == np.bool_:
        y = y_raw.astype(np.int64)
    else:
        y = y_raw.astype(np.int64)
        if not np.array_equal(y, y_raw):
            raise ValueError("labels must be 0 (live) or 1 (attack); got non-integer values")
    bad = (y != 0) & (y != 1)
    if bad.any():
        raise ValueError(f"labels must be 0 (live) or 1 (attack); got {sorted(set(y[bad].tolist()))[:5]}")
    return s, y


def _video_means(scores: np.ndarray, inv: np.ndarray, counts: np.ndarray, video_mean: str) -> np.ndarray:
    """Mean score per video (``inv``: video index of each frame, frames in arrival order) in the chosen arithmetic.

    * ``"instructflip"``: InstructFLIP ``src/lightningmodule.py::on_validation_epoch_end``: the frame scores are a
      float32 array (``torch.cat(preds).float().cpu().numpy()``) and each video's mean is ``np.mean(v).item()`` of
      its float32 frames in arrival order. Evaluated here with the same ``np.mean`` call on the same float32 values
      in the same order (singletons: the float32 value itself, which is what ``np.mean`` returns for one item).
    * ``"flip"``: FLIP/ViTAF ``utils/evaluate.py::eval``: ``sum(prob_dict[key]) / len(prob_dict[key])`` over
      ``np.float32`` values, i.e. a sequential float32 sum in arrival order divided by the frame count (float32
      result under numpy >= 2's promotion rules, NEP 50). Vectorised: the k-th frames of all videos are added at
      step k in float32 (IEEE addition is the same elementwise as on scalars) and the quotient is rounded once to
      float32 (a float64 quotient of float32 operands rounded to float32 is the correctly rounded float32 quotient).
    * ``"float64"``: float64 sums in ascending score order within each video: independent of frame order and of how
      frames were sharded over ranks (the honest mode's default).
    """
    n_videos = counts.size
    if video_mean == "float64":
        order = np.lexsort((scores, inv))  # by video, then ascending score: an order-independent summation order
        return np.bincount(inv[order], weights=scores[order], minlength=n_videos) / counts
    s32 = scores.astype(np.float32)
    order = np.argsort(inv, kind="stable")  # grouped by video, arrival order kept inside each video
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    out = np.empty(n_videos, dtype=np.float64)
    single = counts == 1
    out[single] = s32[order[starts[single]]]
    multi = np.flatnonzero(~single)
    if multi.size == 0:
        return out
    if video_mean == "instructflip":
        grouped = s32[order]
        for v in multi.tolist():
            out[v] = np.mean(grouped[starts[v] : starts[v] + counts[v]]).item()
        return out
    # "flip": sequential float32 sum in arrival order, one float32 division
    acc = np.zeros(multi.size, dtype=np.float32)
    c_multi, s_multi = counts[multi], starts[multi]
    for k in range(int(c_multi.max())):
        has = c_multi > k
        acc[has] = acc[has] + s32[order[s_multi[has] + k]]
    out[multi] = (acc.astype(np.float64) / c_multi).astype(np.float32)
    return out


def _aggregate_videos(
    scores: np.ndarray, labels: np.ndarray, video_ids: Any, attack_types: np.ndarray | None, video_mean: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Mean score and label per video (the shared code's ``prob_dict``/``label_dict`` step)."""
    vid = _to_numpy(video_ids).reshape(-1)
    if vid.size != scores.size:
        raise ValueError(f"video_ids has {vid.size} entries but there are {scores.size} scores")
    keys, inv = np.unique(vid, return_inverse=True)
    inv = inv.reshape(-1)
    n_videos = keys.size
    counts = np.bincount(inv, minlength=n_videos)
    label_sums = np.bincount(inv, weights=labels, minlength=n_videos)
    mixed = (label_sums != 0) & (label_sums != counts)
    if mixed.any():
        raise ValueError(
            f"{int(mixed.sum())} video id(s) hold both live and attack frames, e.g. {keys[mixed][:3].tolist()}; a "
            "video id must name one presentation (make ids unique, e.g. prefix them with the label or the domain)"
        )
    v_scores = _video_means(scores, inv, counts, video_mean)
    v_labels = (label_sums > 0).astype(np.int64)
    v_attacks = None
    if attack_types is not None:
        names, codes = np.unique(attack_types, return_inverse=True)
        codes = codes.reshape(-1)
        lo = np.full(n_videos, names.size, dtype=np.int64)
        hi = np.full(n_videos, -1, dtype=np.int64)
        np.minimum.at(lo, inv, codes)
        np.maximum.at(hi, inv, codes)
        if (lo != hi).any():
            raise ValueError(
                f"video id(s) {keys[lo != hi][:3].tolist()} hold frames of different attack types; a video id must "
                "name one presentation"
            )
        v_attacks = names[lo]
    return v_scores, v_labels, v_attacks


@dataclass
class _Prepared:
    s: np.ndarray  # working-convention scores (positive class = `positive`), one per item (video or frame)
    y: np.ndarray  # working-convention labels (1 = positive class)
    attack: np.ndarray  # original convention: 1 = attack
    attack_types: np.ndarray | None
    n_frames: int


def _check_video_mean(video_mean: str) -> None:
    if video_mean not in VIDEO_MEANS:
        raise ValueError(
            f"video_mean must be one of {', '.join(VIDEO_MEANS)} (instructflip: np.mean over float32 frames; flip: "
            f"sum/len over float32 frames in arrival order; float64: order-independent float64), got {video_mean!r}"
        )


def _default_video_mean(mode: str, positive: str, video_mean: str | None) -> str:
    """``None`` -> the field code of the convention in paper mode (attack: InstructFLIP, live: FLIP), else float64."""
    if video_mean is None:
        if mode == "paper":
            return "instructflip" if positive == "attack" else "flip"
        return "float64"
    _check_video_mean(video_mean)
    return video_mean


def _prepare(
    scores: Any, labels: Any, video_ids: Any, attack_types: Any, positive: str, video_mean: str = "float64"
) -> _Prepared:
    _check_positive(positive)
    _check_video_mean(video_mean)
    s, y = _check_scores_labels(scores, labels)
    n_frames = s.size
    types = None
    if attack_types is not None:
        types = np.asarray(list(attack_types) if not isinstance(attack_types, np.ndarray) else attack_types)
        types = types.astype(str).reshape(-1)
        if types.size != s.size:
            raise ValueError(f"attack_types has {types.size} entries but there are {s.size} scores")
    if positive == "live":  # FLIP convention, per frame, before any averaging
        s = 1.0 - s
        y_work = 1 - y
    else:
        y_work = y
    if video_ids is not None:
        s, y_work, types = _aggregate_videos(s, y_work, video_ids, types, video_mean)
    elif video_mean != "float64":  # the field code's scores are float32 even when nothing is averaged
        s = s.astype(np.float32).astype(np.float64)
    attack = y_work if positive == "attack" else 1 - y_work
    return _Prepared(s=s, y=y_work, attack=attack, attack_types=types, n_frames=n_frames)


def video_level(
    scores: Any,
    labels: Any,
    video_ids: Any = None,
    attack_types: Any = None,
    *,
    positive: Positive = "attack",
    video_mean: VideoMean = "float64",
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The items the metrics score: (scores, labels, attack types) after the ``positive`` flip and video averaging.

    Scores and labels are in the ``positive`` convention (label 1 = the positive class); for plots and tables.
    """
    p = _prepare(scores, labels, video_ids, attack_types, positive, video_mean)
    return p.s, p.y, p.attack_types


# ----------------------------------------------------------------------------------------------------------------------
# The shared code, vectorised
# ----------------------------------------------------------------------------------------------------------------------


def paper_thresholds(grid_density: int = GRID_DENSITY) -> np.ndarray:
    """``[0.0 + i * 1.0 / float(grid_density) for i in range(grid_density + 1)] + [1.1]`` (``get_threshold``)."""
    if grid_density < 1:
        raise ValueError(f"grid_density must be >= 1, got {grid_density}")
    return np.append(0.0 + np.arange(grid_density + 1, dtype=np.float64) * 1.0 / float(grid_density), 1.1)


def _eval_states(s: np.ndarray, y: np.ndarray, thr: np.ndarray | float) -> tuple[np.ndarray, ...]:
    """``eval_state`` at many thresholds at once: TN, FN, FP, TP with ``s >= thr`` predicted positive."""
    pos = np.sort(s[y == 1])
    neg = np.sort(s[y == 0])
    thr = np.asarray(thr, dtype=np.float64)
    tp = pos.size - np.searchsorted(pos, thr, side="left")  # count(pos >= thr)
    fp = neg.size - np.searchsorted(neg, thr, side="left")
    return neg.size - fp, pos.size - tp, fp, tp


def _shared_far_frr(tn, fn, fp, tp) -> tuple[np.ndarray, np.ndarray]:
    """FAR and FRR as ``get_EER_states``/``get_HTER_at_thr`` compute them: 1.0 for an empty class."""
    n_neg = fp + tn
    n_pos = fn + tp
    with np.errstate(divide="ignore", invalid="ignore"):
        far = np.where(n_neg == 0, 1.0, fp / np.where(n_neg == 0, 1, n_neg))
        frr = np.where(n_pos == 0, 1.0, fn / np.where(n_pos == 0, 1, n_pos))
    return far.astype(np.float64), frr.astype(np.float64)


def _eer_state(s: np.ndarray, y: np.ndarray, grid_density: int) -> tuple[float, float]:
    """``get_EER_states``: (EER, threshold); ties in |FRR - FAR| keep the last (highest) threshold."""
    thresholds = paper_thresholds(grid_density)
    far, frr = _shared_far_frr(*_eval_states(s, y, thresholds))
    dist = np.abs(frr - far)
    idx = dist.size - 1 - int(np.argmin(dist[::-1]))  # last index of the minimum (`dist <= min_dist`)
    return (float(far[idx]) + float(frr[idx])) / 2.0, float(thresholds[idx])


def _hter_at(s: np.ndarray, y: np.ndarray, thr: float) -> float:
    """``get_HTER_at_thr``."""
    far, frr = _shared_far_frr(*_eval_states(s, y, thr))
    return (float(far) + float(frr)) / 2.0


def roc_curve_points(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``sklearn.metrics.roc_curve(labels, scores)`` with its defaults (``drop_intermediate=True``), for two classes.

    Returns (fpr, tpr, thresholds), starting at (0, 0) with threshold ``inf``.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    order = np.argsort(-s, kind="stable")
    s_desc, y_desc = s[order], y[order]
    idxs = np.r_[np.flatnonzero(np.diff(s_desc)), s_desc.size - 1]
    tps = np.cumsum(y_desc, dtype=np.float64)[idxs]
    fps = 1 + idxs.astype(np.float64) - tps
    thr = s_desc[idxs]
    if fps.size > 2:
        keep = np.flatnonzero(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])
        fps, tps, thr = fps[keep], tps[keep], thr[keep]
    tps = np.r_[0.0, tps]
    fps = np.r_[0.0, fps]
    thr = np.r_[np.inf, thr]
    return fps / fps[-1], tps / tps[-1], thr


def _auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """``sklearn.metrics.auc`` (numpy's trapezoid rule, written out so numpy < 2 works)."""
    return float(np.add.reduce(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


# ----------------------------------------------------------------------------------------------------------------------
# Public functions
# ----------------------------------------------------------------------------------------------------------------------


def _rate(num: int, den: int) -> float:
    return num / den if den > 0 else math.nan


def _iso_rates(p: _Prepared, thr: float, positive: str) -> dict[str, Any]:
    """APCER per attack type (worst = APCER), BPCER and ACER at ``thr`` (ISO/IEC 30107-3); NaN for an empty class."""
    pred_pos = p.s >= thr
    pred_attack = pred_pos if positive == "attack" else ~pred_pos
    live = p.attack == 0
    att = p.attack == 1
    bpcer = _rate(int(pred_attack[live].sum()), int(live.sum()))
    apcer_all = _rate(int((~pred_attack[att]).sum()), int(att.sum()))
    per_attack: dict[str, float] = {}
    if p.attack_types is not None and att.any():
        types = p.attack_types[att]
        missed = ~pred_attack[att]
        for name in np.unique(types):
            sel = types == name
            per_attack[str(name)] = _rate(int(missed[sel].sum()), int(sel.sum()))
        apcer = max(per_attack.values())
    else:
        apcer = apcer_all
    return {
        "apcer": apcer,
        "bpcer": bpcer,
        "acer": (apcer + bpcer) / 2.0,
        "hter_at_threshold": (apcer_all + bpcer) / 2.0,
        "apcer_per_attack": per_attack,
    }


def _attack_scores(p: _Prepared, positive: str) -> np.ndarray:
    """Scores in the attack convention (higher = more attack-like), whatever ``positive`` is."""
    return p.s if positive == "attack" else 1.0 - p.s


def _error_rates_over(p: _Prepared, positive: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, APCER over all attacks, APCER_AP = worst attack species, BPCER) at every distinct threshold.

    Decision: attack when the attack-convention score is ``>= thr``; thresholds = the distinct scores, then ``inf``
    (everything live). APCER rises and BPCER falls with the threshold. Both classes must be present.
    """
    a = _attack_scores(p, positive)
    live = np.sort(a[p.attack == 0])
    att_mask = p.attack == 1
    cand = np.r_[np.unique(a), np.inf]
    bpcer = (live.size - np.searchsorted(live, cand, side="left")) / live.size
    att = np.sort(a[att_mask])
    apcer = np.searchsorted(att, cand, side="left") / att.size
    apcer_ap = apcer
    if p.attack_types is not None:
        types = p.attack_types[att_mask]
        per = [np.searchsorted(np.sort(a[att_mask][types == n]), cand, side="left") / int((types == n).sum())
               for n in np.unique(types)]
        apcer_ap = np.max(np.stack(per), axis=0)
    return cand, apcer, apcer_ap, bpcer


_RATE_EPS = 1e-12  # k/n compared with a target such as 0.05: absorb the last-bit rounding of the division


def _fixed_rate_points(
    p: _Prepared, positive: str, apcer_targets: Sequence[float], bpcer_targets: Sequence[float]
) -> tuple[dict[float, float], dict[float, float]]:
    """ISO/IEC 30107-3 operating points on these data: BPCER at APCER_AP <= t and APCER_AP at BPCER <= t.

    ``bpcer_at_apcer[t]``: the lowest BPCER of a threshold whose APCER_AP (worst species; all attacks when no species
    are given) is at most ``t`` (BPCER20 = ``bpcer_at_apcer[0.05]``); ``apcer_at_bpcer[t]``: the lowest APCER_AP of a
    threshold whose BPCER is at most ``t``. NaN when a class is missing.
    """
    if int((p.attack == 0).sum()) == 0 or int((p.attack == 1).sum()) == 0:
        return {t: math.nan for t in apcer_targets}, {t: math.nan for t in bpcer_targets}
    _, _, apcer_ap, bpcer = _error_rates_over(p, positive)
    b_at_a = {}
    for t in apcer_targets:
        ok = np.flatnonzero(apcer_ap <= t + _RATE_EPS)  # never empty: at the lowest threshold APCER = 0
        b_at_a[t] = float(bpcer[ok[-1]])
    a_at_b = {}
    for t in bpcer_targets:
        ok = np.flatnonzero(bpcer <= t + _RATE_EPS)  # never empty: at inf BPCER = 0
        a_at_b[t] = float(apcer_ap[ok[0]])
    return b_at_a, a_at_b


def det_curve_points(
    scores: Any,
    labels: Any,
    video_ids: Any = None,
    attack_types: Any = None,
    *,
    positive: Positive = "attack",
    video_mean: VideoMean = "float64",
) -> dict[str, np.ndarray]:
    """The DET curve (ISO/IEC 30107-3: APCER against BPCER over all thresholds) of one evaluation set.

    Returns ``threshold`` (attack-convention scores, ascending, then inf), ``apcer`` (all attacks), ``apcer_ap``
    (worst attack species) and ``bpcer``, one entry per distinct threshold. Needs both classes.
    """
    p = _prepare(scores, labels, video_ids, attack_types, positive, video_mean)
    if int((p.attack == 0).sum()) == 0 or int((p.attack == 1).sum()) == 0:
        raise ValueError("a DET curve needs live and attack items; one class is missing")
    thr, apcer, apcer_ap, bpcer = _error_rates_over(p, positive)
    return {"threshold": thr, "apcer": apcer, "apcer_ap": apcer_ap, "bpcer": bpcer}


def _tpr_at_fpr(p: _Prepared, targets: Sequence[float], rule: str) -> dict[float, float]:
    """TPR at each FPR target (positive convention): the ROC rule of the shared code or CelebA-Spoof's rule.

    * ``"roc"``: ``tpr[fpr <= target][-1]`` over ``sklearn.metrics.roc_curve`` (0 when no point qualifies);
    * ``"celeba_spoof"``: CelebA-Spoof ``intra_dataset_code/client.py`` (``get_thresholdtable_from_fpr`` +
      ``get_tpr_from_threshold``): negatives' scores sorted descending, threshold = the ``max(1, int(t * n_neg))``-th
      of them, TPR = fraction of positives with score ``>= threshold`` (so up to ``max(1, int(t * n_neg))``
      negatives, ties included, are accepted).
    """
    if rule == "roc":
        fpr, tpr, _ = roc_curve_points(p.s, p.y)
        out = {}
        for t in targets:
            sel = tpr[fpr <= t]
            out[t] = float(sel[-1]) if sel.size else 0.0
        return out
    neg = np.sort(p.s[p.y == 0])[::-1]
    pos = np.sort(p.s[p.y == 1])
    out = {}
    for t in targets:
        thr = neg[max(1, int(t * neg.size)) - 1]
        out[t] = float((pos.size - np.searchsorted(pos, thr, side="left")) / pos.size)
    return out


def fas_metrics(
    scores: Any,
    labels: Any,
    video_ids: Any = None,
    *,
    mode: Mode = "paper",
    threshold: float | None = None,
    fpr_targets: Sequence[float] = (0.01,),
    attack_types: Any = None,
    positive: Positive = "attack",
    grid_density: int = GRID_DENSITY,
    video_mean: VideoMean | None = None,
    tpr_rule: TprRule = "roc",
    apcer_targets: Sequence[float] = APCER_TARGETS,
    bpcer_targets: Sequence[float] = BPCER_TARGETS,
) -> dict[str, Any]:
    """FAS metrics of one evaluation set (module docstring: conventions, modes, edge cases).

    Args:
        scores: (N,) P(attack) per frame, numpy or torch.
        labels: (N,) 0 = live, 1 = attack.
        video_ids: (N,) ids grouping frames into videos (str or int); None scores every frame on its own.
        mode: "paper" (test-set EER threshold, the shared code) or "honest" (``threshold`` applied unchanged).
        threshold: the honest-mode threshold, in the ``positive`` convention's score; must be None in paper mode.
        fpr_targets: FPR operating points for ``tpr_at_fpr``.
        attack_types: (N,) attack-type (PAI species) names (live items' names are ignored); adds
            ``apcer_per_attack``.
        positive: "attack" (default; InstructFLIP) or "live" (FLIP: label' = 1 - label, score' = 1 - score).
        grid_density: the threshold grid step is 1 / grid_density (the shared code: 10000).
        video_mean: arithmetic of the per-video mean: "instructflip", "flip" or "float64" (:func:`_video_means`);
            None: paper mode -> the field code of ``positive`` (attack: "instructflip", live: "flip"); honest mode
            -> "float64".
        tpr_rule: "roc" (the shared code) or "celeba_spoof" (CelebA-Spoof's official rule) for ``tpr_at_fpr``.
        apcer_targets: APCER_AP levels for ``bpcer_at_apcer`` (0.05 -> BPCER20).
        bpcer_targets: BPCER levels for ``apcer_at_bpcer``.

    Returns:
        dict with fractions in [0, 1]: ``hter``, ``eer``, ``auc``, ``threshold`` (the one HTER/APCER/BPCER use),
        ``eer_threshold``, ``tpr_at_fpr`` ({target: TPR}), ``apcer`` (= ``apcer_ap``, worst species), ``bpcer``,
        ``acer``, ``bpcer_at_apcer`` ({target: BPCER}), ``apcer_at_bpcer`` ({target: APCER_AP}), counts ``n``
        (items after video aggregation), ``n_live``, ``n_attack``, ``n_frames``, and ``mode``, ``positive``,
        ``video_mean``, ``tpr_rule``; with ``attack_types`` also ``apcer_per_attack`` ({species: APCER}). A metric
        undefined for these data (one class only: AUC, EER, HTER, TPR@FPR, rates of the missing class) is NaN.
    """
    if mode not in ("paper", "honest"):
        raise ValueError(f"mode must be 'paper' or 'honest', got {mode!r}")
    if tpr_rule not in ("roc", "celeba_spoof"):
        raise ValueError(f"tpr_rule must be 'roc' (shared code) or 'celeba_spoof' (CelebA-Spoof), got {tpr_rule!r}")
    if mode == "paper" and threshold is not None:
        raise ValueError(
            "mode='paper' chooses its threshold on the evaluated scores (the shared code); pass "
            "mode='honest' to apply a given threshold"
        )
    if mode == "honest":
        if threshold is None or not math.isfinite(float(threshold)):
            raise ValueError(
                "mode='honest' needs a finite threshold chosen beforehand, e.g. "
                "eer_threshold(val_scores, val_labels) on the source validation set"
            )
        threshold = float(threshold)
    video_mean = _default_video_mean(mode, positive, video_mean)
    targets = tuple(float(t) for t in fpr_targets)
    p = _prepare(scores, labels, video_ids, attack_types, positive, video_mean)
    n_pos, n_neg = int(p.y.sum()), int(p.y.size - p.y.sum())
    two_classes = n_pos > 0 and n_neg > 0

    eer, eer_thr = _eer_state(p.s, p.y, grid_density)
    if two_classes:
        fpr, tpr, _ = roc_curve_points(p.s, p.y)
        auc = _auc(fpr, tpr)
        tpr_at = _tpr_at_fpr(p, targets, tpr_rule)
    else:
        which = "live" if int((p.attack == 0).sum()) == 0 else "attack"
        warnings.warn(
            f"only one class is present (no {which} items among {p.y.size}): AUC, EER, HTER and TPR@FPR are "
            "undefined and reported as NaN (the shared code crashes in roc_auc_score here; its EER/HTER would be "
            "1.0 by its empty-class convention)",
            UndefinedFASMetricWarning,
            stacklevel=2,
        )
        auc = math.nan
        eer = math.nan
        tpr_at = {t: math.nan for t in targets}

    if mode == "paper":
        thr = eer_thr
        hter = _hter_at(p.s, p.y, thr) if two_classes else math.nan
        iso = _iso_rates(p, thr, positive)
    else:
        thr = threshold
        iso = _iso_rates(p, thr, positive)
        hter = iso["hter_at_threshold"]
    b_at_a, a_at_b = _fixed_rate_points(p, positive, apcer_targets, bpcer_targets)
    out: dict[str, Any] = {
        "hter": hter,
        "eer": eer,
        "auc": auc,
        "threshold": thr,
        "eer_threshold": eer_thr,
        "tpr_at_fpr": tpr_at,
        "apcer": iso["apcer"],
        "apcer_ap": iso["apcer"],
        "bpcer": iso["bpcer"],
        "acer": iso["acer"],
        "bpcer_at_apcer": b_at_a,
        "apcer_at_bpcer": a_at_b,
        "n": int(p.s.size),
        "n_live": int((p.attack == 0).sum()),
        "n_attack": int((p.attack == 1).sum()),
        "n_frames": p.n_frames,
        "mode": mode,
        "positive": positive,
        "video_mean": video_mean,
        "tpr_rule": tpr_rule,
    }
    if p.attack_types is not None:
        out["apcer_per_attack"] = iso["apcer_per_attack"]
    return out


def eer_threshold(
    scores: Any,
    labels: Any,
    video_ids: Any = None,
    *,
    positive: Positive = "attack",
    grid_density: int = GRID_DENSITY,
    video_mean: VideoMean = "float64",
) -> float:
    """The paper-mode EER threshold of (validation) data, to apply unchanged elsewhere with ``mode="honest"``."""
    p = _prepare(scores, labels, video_ids, None, positive, video_mean)
    return _eer_state(p.s, p.y, grid_density)[1]


def bpcer_threshold(
    scores: Any,
    labels: Any,
    target: float,
    video_ids: Any = None,
    *,
    positive: Positive = "attack",
    grid_density: int = GRID_DENSITY,
    video_mean: VideoMean = "float64",
) -> float:
    """The grid threshold with BPCER <= ``target`` on (validation) data that detects the most attacks.

    With ``positive="attack"`` that is the lowest grid threshold whose BPCER (live items with ``score >= thr``) is
    at most ``target``; with ``positive="live"`` the highest whose BPCER (live items with ``score' < thr``) is.
    The grid is :func:`paper_thresholds`, which always holds such a threshold (1.1, or 0.0 for live).
    """
    target = float(target)
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"BPCER target must be a fraction in [0, 1], got {target}")
    p = _prepare(scores, labels, video_ids, None, positive, video_mean)
    live = np.sort(p.s[p.attack == 0])
    if live.size == 0:
        raise ValueError("bpcer_threshold needs live (bona fide) items; the data hold attacks only")
    thresholds = paper_thresholds(grid_density)
    below = np.searchsorted(live, thresholds, side="left")  # live items with score < thr
    if positive == "attack":
        bpcer = (live.size - below) / live.size
        return float(thresholds[np.flatnonzero(bpcer <= target)[0]])
    bpcer = below / live.size
    return float(thresholds[np.flatnonzero(bpcer <= target)[-1]])


# ----------------------------------------------------------------------------------------------------------------------
# torchmetrics Metric
# ----------------------------------------------------------------------------------------------------------------------


@lru_cache(maxsize=1 << 16)
def stable_id(name: str) -> int:
    """A 63-bit id of a string, equal on every host and process (blake2b, unlike Python's salted ``hash``)."""
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


def _ids(values: Any, n: int, what: str) -> torch.Tensor:
    """(n,) int64 ids: strings are hashed with :func:`stable_id`, integers kept (>= 0); None gives -1."""
    if values is None:
        return torch.full((n,), -1, dtype=torch.int64)
    if isinstance(values, torch.Tensor) or (isinstance(values, np.ndarray) and values.dtype.kind in "iu"):
        out = torch.as_tensor(_to_numpy(values), dtype=torch.int64).reshape(-1)
        if out.numel() and int(out.min()) < 0:
            raise ValueError(f"integer {what} must be >= 0")
    else:
        values = list(values)
        if values and all(isinstance(v, (int, np.integer)) for v in values):
            out = torch.tensor([int(v) for v in values], dtype=torch.int64)
            if out.numel() and int(out.min()) < 0:
                raise ValueError(f"integer {what} must be >= 0")
        else:
            out = torch.tensor([stable_id(str(v)) for v in values], dtype=torch.int64)
    if out.numel() != n:
        raise ValueError(f"{what} has {out.numel()} entries for {n} scores")
    return out


@dataclass
class FASData:
    """One evaluation set after sync over ranks and removal of duplicated samples (frame level)."""

    scores: np.ndarray  # (N,) float64 P(attack)
    labels: np.ndarray  # (N,) int64, 1 = attack
    video_ids: np.ndarray | None  # (N,) int64, None when no frame carried a video id
    attack_types: np.ndarray | None  # (N,) str, None when no frame carried an attack type
    n_duplicates: int  # frames dropped because their sample id was seen before

    def __len__(self) -> int:
        return int(self.scores.size)


class FASMetrics(Metric):
    """:func:`fas_metrics` over everything seen by all ranks (states are concatenated, then videos are averaged).

    ``update(scores, labels, video_ids=None, attack_types=None, sample_ids=None)``: ids may be strings (hashed to
    63-bit ints) or non-negative int64 tensors. Frames whose sample id was already seen are dropped at compute time,
    which undoes ``DistributedSampler`` padding. Use ``update``/``compute`` (``forward`` would compute per batch).
    ``compute()`` uses the ``mode``/``threshold`` attributes; :meth:`gather` returns the synced frame-level data so
    that several modes/thresholds can be evaluated on one sync.
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    scores: list[torch.Tensor]
    labels: list[torch.Tensor]
    video_ids: list[torch.Tensor]
    sample_ids: list[torch.Tensor]
    attack_ids: list[torch.Tensor]
    attack_vocab: list[torch.Tensor]

    def __init__(
        self,
        mode: Mode = "paper",
        threshold: float | None = None,
        fpr_targets: Sequence[float] = (0.01,),
        positive: Positive = "attack",
        grid_density: int = GRID_DENSITY,
        max_attack_name_bytes: int = 64,
        video_mean: VideoMean | None = None,
        tpr_rule: TprRule = "roc",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if mode not in ("paper", "honest"):
            raise ValueError(f"mode must be 'paper' or 'honest', got {mode!r}")
        _check_positive(positive)
        if video_mean is not None:
            _check_video_mean(video_mean)
        self.video_mean = video_mean
        self.tpr_rule = tpr_rule
        self.mode = mode
        self.threshold = threshold
        self.fpr_targets = tuple(float(t) for t in fpr_targets)
        self.positive = positive
        self.grid_density = int(grid_density)
        self.max_attack_name_bytes = int(max_attack_name_bytes)
        for name in ("scores", "labels", "video_ids", "sample_ids", "attack_ids", "attack_vocab"):
            self.add_state(name, default=[], dist_reduce_fx="cat")
        self._vocab_seen: set[str] = set()
        self._seed_states()

    def _seed_states(self) -> None:
        # A typed empty tensor in every list: a rank that saw no data then still gathers tensors of the right dtype
        # and rank (torchmetrics would otherwise substitute a 1-D float32 tensor and the all_gather would mismatch).
        dev = self.device
        self.scores.append(torch.zeros(0, dtype=torch.float64, device=dev))
        for name in ("labels", "video_ids", "sample_ids", "attack_ids"):
            getattr(self, name).append(torch.zeros(0, dtype=torch.int64, device=dev))
        self.attack_vocab.append(torch.zeros(0, self.max_attack_name_bytes, dtype=torch.uint8, device=dev))
        self._vocab_seen = set()

    def reset(self) -> None:
        super().reset()
        self._seed_states()

    def update(
        self,
        scores: torch.Tensor,
        labels: torch.Tensor,
        video_ids: Sequence[str] | torch.Tensor | None = None,
        attack_types: Sequence[str] | None = None,
        sample_ids: Sequence[str] | torch.Tensor | None = None,
    ) -> None:
        dev = self.device
        s = torch.as_tensor(scores).detach().reshape(-1).to(device=dev, dtype=torch.float64)
        y = torch.as_tensor(labels).detach().reshape(-1).to(device=dev, dtype=torch.int64)
        n = s.numel()
        if y.numel() != n:
            raise ValueError(f"scores and labels differ in length: {n} scores, {y.numel()} labels")
        self.scores.append(s)
        self.labels.append(y)
        self.video_ids.append(_ids(video_ids, n, "video_ids").to(dev))
        self.sample_ids.append(_ids(sample_ids, n, "sample_ids").to(dev))
        if attack_types is None:
            self.attack_ids.append(torch.full((n,), -1, dtype=torch.int64, device=dev))
            return
        names = [str(a) for a in attack_types]
        if len(names) != n:
            raise ValueError(f"attack_types has {len(names)} entries for {n} scores")
        self.attack_ids.append(torch.tensor([stable_id(a) for a in names], dtype=torch.int64, device=dev))
        new = sorted(set(names) - self._vocab_seen)
        if new:
            rows = torch.zeros(len(new), self.max_attack_name_bytes, dtype=torch.uint8)
            for i, name in enumerate(new):
                raw = name.encode("utf-8")
                if len(raw) > self.max_attack_name_bytes:
                    raise ValueError(
                        f"attack type name {name!r} is longer than {self.max_attack_name_bytes} bytes; "
                        "raise max_attack_name_bytes"
                    )
                rows[i, : len(raw)] = torch.tensor(list(raw), dtype=torch.uint8)
            self.attack_vocab.append(rows.to(dev))
            self._vocab_seen.update(new)

    def _read_states(self) -> FASData:
        """The current (possibly synced) states as numpy, duplicates by sample id removed."""
        s = dim_zero_cat(self.scores).cpu().double().numpy()
        y = dim_zero_cat(self.labels).cpu().long().numpy()
        vid = dim_zero_cat(self.video_ids).cpu().long().numpy()
        sid = dim_zero_cat(self.sample_ids).cpu().long().numpy()
        aid = dim_zero_cat(self.attack_ids).cpu().long().numpy()
        vocab_rows = dim_zero_cat(self.attack_vocab).cpu().numpy().reshape(-1, self.max_attack_name_bytes)
        keep = np.ones(s.size, dtype=bool)
        has_sid = sid >= 0
        if has_sid.any():
            idx = np.flatnonzero(has_sid)
            _, first = np.unique(sid[idx], return_index=True)
            keep[idx] = False
            keep[idx[first]] = True
        n_dup = int((~keep).sum())
        s, y, vid, aid = s[keep], y[keep], vid[keep], aid[keep]
        video_ids = None
        if (vid >= 0).any():
            video_ids = vid.copy()
            missing = np.flatnonzero(vid < 0)
            video_ids[missing] = -2 - missing  # frames without a video id stay alone (hash ids are >= 0)
        attack_types = None
        if (aid >= 0).any():
            vocab = {}
            for row in vocab_rows:
                name = bytes(row).rstrip(b"\x00").decode("utf-8")
                vocab[stable_id(name)] = name
            attack_types = np.array([vocab.get(int(a), _UNSPECIFIED_ATTACK) for a in aid], dtype=object).astype(str)
        return FASData(scores=s, labels=y, video_ids=video_ids, attack_types=attack_types, n_duplicates=n_dup)

    def gather(self) -> FASData:
        """The frame-level data of all ranks (a collective call in DDP: every rank must call it)."""
        if self._is_synced:
            return self._read_states()
        with self.sync_context(dist_sync_fn=self.dist_sync_fn, should_sync=self._to_sync, should_unsync=True):
            return self._read_states()

    def compute(self) -> dict[str, Any]:
        d = self._read_states()  # torchmetrics has synced the states around compute()
        return fas_metrics(
            d.scores,
            d.labels,
            d.video_ids,
            mode=self.mode,
            threshold=self.threshold,
            fpr_targets=self.fpr_targets,
            attack_types=d.attack_types,
            positive=self.positive,
            grid_density=self.grid_density,
            video_mean=self.video_mean,
            tpr_rule=self.tpr_rule,
        )


def honest_threshold(
    data: FASData,
    rule: str = "eer",
    *,
    bpcer_target: float = 0.01,
    positive: str = "attack",
    grid_density: int = GRID_DENSITY,
    video_mean: VideoMean = "float64",
) -> float:
    """The honest-mode threshold chosen on (source validation) ``data``: by EER, or the lowest BPCER <= target."""
    if rule == "eer":
        return eer_threshold(data.scores, data.labels, data.video_ids, positive=positive, grid_density=grid_density,
                             video_mean=video_mean)
    if rule == "bpcer":
        return bpcer_threshold(data.scores, data.labels, bpcer_target, data.video_ids, positive=positive,
                               grid_density=grid_density, video_mean=video_mean)
    raise ValueError(f"unknown threshold rule {rule!r}; valid: eer, bpcer")
