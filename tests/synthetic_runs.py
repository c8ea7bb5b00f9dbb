"""Synthetic training records for the overfitting study's tests: runs whose numbers are chosen.

Shared by tests/test_overfitting_statistics.py and tests/test_overfitting_evidence.py, so that
the curve every test argues from is written once.
"""

from __future__ import annotations

from course_lib.studies.overfitting import RK23, RK23_FIXED, SGD_AT_RK23, RunRecord

import numpy as np


def run(method, seed, train, val, accuracy=None, gradients=None, **record) -> RunRecord:
    """One run with the given losses; the adaptive method's step record filled in. ``record``
    sets any other field of :class:`RunRecord` (a step record of one's own, say)."""
    fields = {
        "train_accuracy": [1.0] * len(train),
        "val_accuracy": list([0.9] * len(train) if accuracy is None else accuracy),
        "gradients": list(range(1, len(train) + 1) if gradients is None else gradients),
        "step_sizes": [0.3] * len(train) if method in (RK23, SGD_AT_RK23) else [],
        "forced": [0] * len(train) if method == RK23 else [],
        "rejections": [0] * len(train) if method == RK23 else [],
    }
    return RunRecord(
        method=method, seed=seed, train_loss=list(train), val_loss=list(val), **fields | record
    )


def one_curve_runs(seeds: int = 8, further: float = 0.5, extra: float = 0.0) -> list[RunRecord]:
    """SGD and its controls on one curve val = 1 + 0.5·ln(1/train); RK23 follows the same curve
    ``further`` (in ln train) beyond SGD, plus ``extra`` at every loss."""
    rng = np.random.default_rng(3)
    runs = []
    for seed in range(seeds):
        train = np.geomspace(1.0, 0.3 + 0.05 * rng.standard_normal(), 12)
        for method in ("SGD", SGD_AT_RK23, RK23_FIXED):
            runs.append(run(method, seed, train, 1 + 0.5 * np.log(1 / train)))
        faster = train * np.exp(-further * np.linspace(0, 1, 12))
        val = 1 + 0.5 * np.log(1 / faster) + extra + 1e-4 * rng.standard_normal(12)
        runs.append(run(RK23, seed, faster, val))
    return runs
