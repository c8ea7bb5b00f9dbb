"""The overfitting study regime by regime: its arms, their readings, Holm's correction, verdicts.

Notebook 06's first study tested the article's claim in one narrow window (40 epochs, clean
labels, one tolerance, one batch size). The claim is about another regime: training driven far
lower than validation. So the study runs *arms*, each a :class:`Regime` with the same methods
and controls, paired by seed (:mod:`course_lib.studies.overfitting`):

* **long training**: until SGD's training loss is far below 1e-2 (target 1e-3);
* **noisy labels**: a share of the training labels replaced by another class, so that a fit to
  them can only be memorised, and validation loss rises as training loss falls;
* **tolerance**: the adaptive controller's rtol at 1e-3 and 1e-1 (the others use 1e-2);
* **batch size**: a small and a large batch, for the same number of steps;
* **sanity**: a small step, where every order effect must vanish (a check of the harness).

The rule, stated before any number (notebook 06, section 1). Every comparison ``method −
control`` is read at two points, the end of training (equal epochs) and matched training loss
(:mod:`course_lib.studies.readings`): the training loss at the end, the validation loss and
accuracy at both. δ is a tenth of SGD's own final validation loss in the regime for a
loss, one percentage point for an accuracy. Every statement of every reading ("not 0", "inside
±δ", "beyond ±δ") is a test; all tests of the study form one family and Holm's procedure
corrects them (:mod:`course_lib.studies.statistics`). Then, for a set of comparisons:

* **supported** when one of them shows the article's pattern, corrected: at the end, training
  loss lower *and* validation worse by at least δ (validation loss higher or accuracy lower);
  or, at matched training loss, validation worse by at least δ;
* **refuted** when every one of them excludes harm, corrected: each validation reading is
  smaller than δ or resolved in the better direction;
* **undecided** otherwise.

The claim *as stated* is read on the adaptive optimizers against SGD at the same learning rate;
*from the order* on the comparisons that change the order only; the step-size comparisons
(SGD at the adaptive steps − SGD) say where a naive effect comes from.
"""

from __future__ import annotations

from course_lib.studies.overfitting import (
    COMPARISONS,
    RK23,
    RK23_FIXED,
    RK45,
    RK45_FIXED,
    SGD_AT_RK23,
    SGD_AT_RK45,
    Comparison,
    RunRecord,
    StudySettings,
)
from course_lib.studies.readings import matched_target, value_at, value_at_loss
from course_lib.studies.results import Table
from course_lib.studies.statistics import ALPHA, PairedTest, holm, reading

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: The smallest loss effect the study calls meaningful, as a share of SGD's final validation loss.
MEANINGFUL_SHARE = 0.1
#: The smallest accuracy effect the study calls meaningful: one percentage point.
MEANINGFUL_ACCURACY = 0.01
#: The long regime's aim for SGD's final training loss.
LONG_TARGET = 1e-3

#: The readings of every comparison: (point, metric).
READINGS: tuple[tuple[str, str], ...] = (
    ("end", "train_loss"),
    ("end", "val_loss"),
    ("end", "val_accuracy"),
    ("matched", "val_loss"),
    ("matched", "val_accuracy"),
)
#: Which direction of each metric is worse for generalisation.
WORSE = {"val_loss": "higher", "val_accuracy": "lower"}

#: The comparisons that test the claim as stated, and those that change the order only.
AS_STATED = (
    Comparison(RK23, "SGD", "order and step size"),
    Comparison(RK45, "SGD", "order and step size"),
)
ORDER_ONLY = (
    Comparison(RK23, SGD_AT_RK23, "order"),
    Comparison(RK45, SGD_AT_RK45, "order"),
    Comparison(RK23_FIXED, "SGD", "order"),
    Comparison(RK45_FIXED, "SGD", "order"),
)
STEP_SIZE = (
    Comparison(SGD_AT_RK23, "SGD", "step size"),
    Comparison(SGD_AT_RK45, "SGD", "step size"),
)


@dataclass(frozen=True)
class Regime:
    """One arm of the study: a name, the question it asks, and what it changes.

    ``changes`` overrides :class:`StudySettings` fields (the others keep their defaults: h = 0.3,
    batch 64, rtol 1e-2, clean labels, the methods of :data:`CLAIM_METHODS`).
    """

    key: str
    name: str
    question: str
    changes: Mapping[str, Any]
    short: str = ""

    @property
    def label(self) -> str:
        """A short name for figures."""
        return self.short or self.name

    def settings(self, seeds: Sequence[int]) -> StudySettings:
        return StudySettings(seeds=tuple(seeds), **dict(self.changes))

    def comparisons(self) -> list[Comparison]:
        """The study's comparisons whose two methods this regime trains."""
        methods = set(self.settings((0,)).methods)
        return [c for c in COMPARISONS if {c.method, c.control} <= methods]


_ADAPTIVE_ONLY = ("SGD", RK23, RK45, SGD_AT_RK23, SGD_AT_RK45)


def regimes(scale: str = "full") -> list[Regime]:
    """The arms of the study; ``scale`` "full" (the benchmark), "provisional" (shorter budgets,
    the same arms) or "quick" (a smoke test: a few epochs each)."""
    epochs = {
        "full": {"long": 1500, "noisy": 400, "rtol": 200, "batch": 1600, "sanity": 400},
        "provisional": {"long": 300, "noisy": 150, "rtol": 80, "batch": 640, "sanity": 200},
        "quick": {"long": 6, "noisy": 4, "rtol": 3, "batch": 32, "sanity": 3},
    }
    if scale not in epochs:
        raise ValueError(f"scale={scale!r}: choose 'full', 'provisional' or 'quick'.")
    e = epochs[scale]
    steps = e["batch"]  # the batch-size arms train this many steps, whatever the batch
    return [
        Regime(
            "long",
            "long training",
            f"trained until SGD's training loss is near {LONG_TARGET:g}, does a Runge–Kutta "
            "optimizer end with worse validation?",
            {"epochs": e["long"]},
            short="long",
        ),
        Regime(
            "noisy_labels",
            "noisy labels (20 %)",
            "with a fifth of the training labels wrong, does it memorise them faster, at a cost "
            "in validation?",
            {"epochs": e["noisy"], "label_noise": 0.2},
            short="noisy labels",
        ),
        Regime(
            "rtol_0001",
            "tolerance rtol 1e-3",
            "with a tight controller (small steps), does the picture change?",
            {"epochs": e["rtol"], "rtol": 1e-3, "methods": _ADAPTIVE_ONLY},
            short="rtol 1e-3",
        ),
        Regime(
            "rtol_01",
            "tolerance rtol 1e-1",
            "with a loose controller (large steps), does the picture change?",
            {"epochs": e["rtol"], "rtol": 1e-1, "methods": _ADAPTIVE_ONLY},
            short="rtol 1e-1",
        ),
        Regime(
            "batch_16",
            "batch size 16",
            "with small batches (a larger mini-batch penalty), does a higher order lose more?",
            {"epochs": max(1, steps // 32), "batch_size": 16},
            short="batch 16",
        ),
        Regime(
            "batch_256",
            "batch size 256",
            "with large batches (a smaller mini-batch penalty), does the picture change?",
            {"epochs": max(1, steps // 2), "batch_size": 256},
            short="batch 256",
        ),
        Regime(
            "sanity",
            "sanity: small step h = 0.03",
            "where every method follows the gradient flow closely, do the order effects vanish "
            "(a check of the harness, not of the claim)?",
            {
                "epochs": e["sanity"],
                "learning_rate": 0.03,
                "methods": ("SGD", RK23_FIXED, RK45_FIXED),
            },
            short="sanity",
        ),
    ]


def describe(settings: StudySettings) -> dict[str, Any]:
    """The settings of a regime as the result file records them."""
    described = dataclasses.asdict(settings)
    described["methods"] = list(settings.methods)
    described["seeds"] = list(settings.seeds)
    return described


# --------------------------------------------------------------------------------------------
# δ and the readings of one regime
# --------------------------------------------------------------------------------------------


def meaningful_effect(records: Sequence[RunRecord], share: float = MEANINGFUL_SHARE) -> float:
    """δ for a loss: ``share`` of SGD's mean final validation loss (runs that did not diverge).

    Where a method could "overfit easily", SGD's training loss ends far below its validation
    loss, and δ is close to a tenth of SGD's validation − training gap: an effect smaller than that
    would not make a method overfit easily. Early in training, or on noisy labels, the gap can
    be small or negative; the validation loss is always positive.
    """
    losses = [r.val_loss[-1] for r in records if r.method == "SGD" and not r.diverged()]
    if not losses:
        raise ValueError("the meaningful effect δ is a share of SGD's loss: the study needs SGD.")
    return share * float(np.mean(losses))


def _run_value(run: RunRecord, point: str, metric: str, target: float) -> float | None:
    if point == "end":
        return value_at(run, metric, -1)
    return value_at_loss(run, metric, target)


def regime_readings(regime: Regime, records: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """Every reading of every comparison of one regime, uncorrected (Holm comes later).

    Pairs where either run diverged are left out and counted in ``excluded``. At matched
    training loss both runs of every seed are read at the comparison's target: the highest
    final training loss among the two methods' kept runs.
    """
    delta = {"loss": meaningful_effect(records), "accuracy": MEANINGFUL_ACCURACY}
    by_key = {(r.method, r.seed): r for r in records}
    rows = []
    for comparison in regime.comparisons():
        seeds = sorted(s for (m, s) in by_key if m == comparison.method)
        pairs = [(by_key[comparison.method, s], by_key[comparison.control, s]) for s in seeds]
        kept = [(a, b) for a, b in pairs if not a.diverged() and not b.diverged()]
        runs = [run for pair in kept for run in pair]
        target = matched_target(runs) if runs else None
        for point, metric in READINGS:
            differences = []
            for a, b in kept:
                values = [_run_value(run, point, metric, target) for run in (a, b)]
                if None not in values:
                    differences.append(values[0] - values[1])
            size = delta["accuracy" if metric == "val_accuracy" else "loss"]
            test = PairedTest.of(differences)
            rows.append(
                {
                    "regime": regime.key,
                    "comparison": comparison,
                    "point": point,
                    "metric": metric,
                    "pairs": len(kept),
                    "excluded": len(pairs) - len(kept),
                    "delta": size,
                    "target": target if point == "matched" else None,
                    "test": test,
                    "p": {
                        "zero": test.p_zero(),
                        "within": test.p_within(size),
                        "beyond": test.p_beyond(size),
                    },
                }
            )
    return rows


def correct(readings: Sequence[dict[str, Any]]) -> None:
    """Holm over every statement of every reading (three per reading), in place: each reading
    gains ``adjusted`` p-values, its ``uncorrected`` and its ``corrected`` reading in words."""
    keys = ("zero", "within", "beyond")
    adjusted = holm([r["p"][k] for r in readings for k in keys])
    for index, r in enumerate(readings):
        r["adjusted"] = dict(zip(keys, adjusted[3 * index : 3 * index + 3].tolist(), strict=True))
        r["uncorrected"] = reading(r["test"], r["delta"])
        r["corrected"] = reading(r["test"], r["delta"], r["adjusted"])


# --------------------------------------------------------------------------------------------
# The verdict of a regime
# --------------------------------------------------------------------------------------------


def _says(r: dict[str, Any], which: str) -> str:
    return r[which]


def _worse_by_delta(r: dict[str, Any], which: str) -> bool:
    return _says(r, which) == f"{WORSE[r['metric']]}, ≥ δ"


def _harm_excluded(r: dict[str, Any], which: str) -> bool:
    said = _says(r, which)
    better = {"higher": "lower", "lower": "higher"}[WORSE[r["metric"]]]
    return said.endswith("< δ") or said.startswith(f"{better},")


def pattern_points(readings: Sequence[dict[str, Any]], which: str = "corrected") -> list[str]:
    """Where the readings of one comparison show the article's pattern: "end" when the
    training loss is lower and validation worse by at least δ there, "matched" when validation
    is worse by at least δ at matched training loss (see the module docstring)."""
    by = {(r["point"], r["metric"]): r for r in readings}
    points = []
    trained_further = _says(by["end", "train_loss"], which).startswith("lower,")
    if trained_further and any(_worse_by_delta(by["end", m], which) for m in WORSE):
        points.append("end")
    if any(_worse_by_delta(by["matched", m], which) for m in WORSE):
        points.append("matched")
    return points


def shows_pattern(readings: Sequence[dict[str, Any]], which: str = "corrected") -> bool:
    """The readings of one comparison show the article's pattern, at either point."""
    return bool(pattern_points(readings, which))


def excludes_harm(readings: Sequence[dict[str, Any]], which: str = "corrected") -> bool:
    """Every validation reading of one comparison is smaller than δ or resolved better."""
    return all(_harm_excluded(r, which) for r in readings if r["metric"] in WORSE)


def verdict(
    readings: Sequence[dict[str, Any]],
    comparisons: Sequence[Comparison],
    which: str = "corrected",
) -> str:
    """supported / refuted / undecided for a set of comparisons (those this regime has)."""
    groups = [
        [r for r in readings if r["comparison"] == c]
        for c in comparisons
        if any(r["comparison"] == c for r in readings)
    ]
    if not groups:
        return "not tested"
    if any(shows_pattern(g, which) for g in groups):
        return "supported"
    if all(excludes_harm(g, which) for g in groups):
        return "refuted"
    return "undecided"


def evidence(readings: Sequence[dict[str, Any]], which: str = "corrected") -> str:
    """One line: which comparisons show the pattern, how many exclude harm, diverged pairs."""
    groups = {}
    for r in readings:
        groups.setdefault(r["comparison"], []).append(r)
    pattern = [
        f"{c.name} ({' and '.join(pattern_points(g, which))})"
        for c, g in groups.items()
        if shows_pattern(g, which)
    ]
    excluded = sum(excludes_harm(g, which) for g in groups.values())
    parts = [f"pattern in {'; '.join(pattern)}"] if pattern else []
    parts.append(f"harm excluded in {excluded} of {len(groups)} comparisons")
    diverged = [f"{c.name} ({g[0]['excluded']})" for c, g in groups.items() if g[0]["excluded"]]
    if diverged:
        parts.append("pairs left out, a run diverged: " + "; ".join(diverged))
    return ". ".join(parts) + "."


# --------------------------------------------------------------------------------------------
# Tables for the result file
# --------------------------------------------------------------------------------------------


def readings_table(readings: Sequence[dict[str, Any]]) -> Table:
    """Every reading: the mean difference, its 95 % interval, p-values raw and Holm-adjusted,
    and what it says uncorrected and corrected."""
    columns = [("comparison", ""), ("what differs", ""), ("point", ""), ("metric", "")]
    columns += [("pairs", ""), ("excluded (diverged)", ""), ("δ", ".4f"), ("matched at", ".3g")]
    columns += [("mean", "+.4f"), ("± 95 %", ".4f"), ("p (≠ 0)", ".2g"), ("p (< δ)", ".2g")]
    columns += [("p (≥ δ)", ".2g"), ("Holm p (≠ 0)", ".2g"), ("Holm p (< δ)", ".2g")]
    columns += [("Holm p (≥ δ)", ".2g"), ("uncorrected", ""), ("corrected", "")]
    rows = []
    for r in readings:
        test = r["test"]
        finite = lambda v: v if math.isfinite(v) else None  # noqa: E731
        rows.append(
            [
                r["comparison"].name,
                r["comparison"].differs,
                r["point"],
                r["metric"].replace("_", " "),
                r["pairs"],
                r["excluded"],
                r["delta"],
                r["target"],
                finite(test.mean),
                finite(test.half_width()),
                *(r["p"][k] for k in ("zero", "within", "beyond")),
                *(r["adjusted"][k] for k in ("zero", "within", "beyond")),
                r["uncorrected"],
                r["corrected"],
            ]
        )
    return Table(columns, rows)


def verdict_rows(
    regime_list: Sequence[Regime], readings: Sequence[dict[str, Any]]
) -> list[dict[str, str]]:
    """The verdict table: per regime, the claim as stated and from the order, corrected and
    uncorrected, the step-size comparisons' reading, and the evidence."""
    rows = []
    for regime in regime_list:
        mine = [r for r in readings if r["regime"] == regime.key]
        stated = [r for r in mine if r["comparison"] in AS_STATED]
        order = [r for r in mine if r["comparison"] in ORDER_ONLY]
        steps = [r for r in mine if r["comparison"] in STEP_SIZE]
        rows.append(
            {
                "regime": regime.name,
                "as stated": verdict(stated, AS_STATED),
                "as stated, uncorrected": verdict(stated, AS_STATED, "uncorrected"),
                "from the order": verdict(order, ORDER_ONLY),
                "from the order, uncorrected": verdict(order, ORDER_ONLY, "uncorrected"),
                "from the step size": verdict(steps, STEP_SIZE),
                "evidence": evidence(stated + order),
            }
        )
    return rows


def verdict_table(rows: Sequence[Mapping[str, str]]) -> Table:
    headers = ["regime", "as stated", "as stated, uncorrected", "from the order"]
    headers += ["from the order, uncorrected", "from the step size", "evidence"]
    return Table([(h, "") for h in headers], [[row[h] for h in headers] for row in rows])


def curves(records: Sequence[RunRecord], points: int = 40) -> dict[str, Any]:
    """Mean training and validation loss and validation accuracy per method at about ``points``
    log-spaced epochs (the runs that did not diverge), for the result file's figures."""
    epochs = len(records[0].train_loss)
    grid = sorted({int(round(e)) for e in np.geomspace(1, epochs, points)})
    result: dict[str, Any] = {"epochs": grid, "methods": {}}
    for method in dict.fromkeys(r.method for r in records):
        kept = [r for r in records if r.method == method and not r.diverged()]
        entry: dict[str, Any] = {"runs": len(kept)}
        for metric in ("train_loss", "val_loss", "val_accuracy"):
            if kept:
                means = np.mean([[getattr(r, metric)[e - 1] for e in grid] for r in kept], axis=0)
                entry[metric] = [float(v) for v in means]
            else:
                entry[metric] = []
        result["methods"][method] = entry
    return result


def significant(readings: Sequence[dict[str, Any]]) -> dict[str, int]:
    """How many readings resolve a direction, uncorrected and corrected."""
    count = lambda which: sum(  # noqa: E731
        not r[which].startswith(("undecided", "within")) for r in readings
    )
    return {
        "readings": len(readings),
        "uncorrected": count("uncorrected"),
        "corrected": count("corrected"),
        "alpha": ALPHA,
    }
