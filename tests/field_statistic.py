"""SSDG's ``utils/statistic.py`` (``eval_state``, ``get_threshold``, ``get_EER_states``, ``get_HTER_at_thr``), the
functions every field evaluation driver calls, transcribed line by line: FLIP (``koushiksrivats/FLIP`` @
``31f26dd32c7e725b88700558adc9bba427702307``, ``utils/statistic.py``), ViTAF and InstructFLIP
(``kunkunlin1221/InstructFLIP`` @ ``7f4db1e20299dd3b291d831c8a988cccc12a8e0c``, ``src/utils/statistic.py``) carry
the same file (reference notes §4.1). One copy for the tests that compare fasvlm.metrics with it
(tests/test_metrics.py, tests/test_metrics_field.py).
"""

from __future__ import annotations

import math

import numpy as np


def eval_state(probs, labels, thr):
    predict = probs >= thr
    TN = np.sum((labels == 0) & (predict == False))  # noqa: E712
    FN = np.sum((labels == 1) & (predict == False))  # noqa: E712
    FP = np.sum((labels == 0) & (predict == True))  # noqa: E712
    TP = np.sum((labels == 1) & (predict == True))  # noqa: E712
    return TN, FN, FP, TP


def get_threshold(probs, grid_density):
    thresholds = []
    for i in range(grid_density + 1):
        thresholds.append(0.0 + i * 1.0 / float(grid_density))
    thresholds.append(1.1)
    return thresholds


def get_EER_states(probs, labels, grid_density=10000):  # noqa: N802
    thresholds = get_threshold(probs, grid_density)
    min_dist = 1.0
    min_dist_states = []
    for thr in thresholds:
        TN, FN, FP, TP = eval_state(probs, labels, thr)
        if FN + TP == 0:
            FRR = 1.0
            FAR = FP / float(FP + TN)
        elif FP + TN == 0:
            FAR = 1.0
            FRR = FN / float(FN + TP)
        else:
            FAR = FP / float(FP + TN)
            FRR = FN / float(FN + TP)
        dist = math.fabs(FRR - FAR)
        if dist <= min_dist:
            min_dist = dist
            min_dist_states = [FAR, FRR, thr]
    EER = (min_dist_states[0] + min_dist_states[1]) / 2.0
    thr = min_dist_states[2]
    return EER, thr


def get_HTER_at_thr(probs, labels, thr):  # noqa: N802
    TN, FN, FP, TP = eval_state(probs, labels, thr)
    if FN + TP == 0:
        FRR = 1.0
        FAR = FP / float(FP + TN)
    elif FP + TN == 0:
        FAR = 1.0
        FRR = FN / float(FN + TP)
    else:
        FAR = FP / float(FP + TN)
        FRR = FN / float(FN + TP)
    return (FAR + FRR) / 2.0
