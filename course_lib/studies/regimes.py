"""The overfitting study regime by regime: its arms, their readings, Holm's correction, verdicts.

Notebook 06's first study tested the article's claim in one narrow window (40 epochs, clean
labels, one tolerance, one batch size). The claim is about another regime: training driven far
lower than validation. So the study runs *arms*, each a :class:`Regime` with the same methods
and controls, paired by seed (:mod:`course_lib.studies.overfitting`):

* **long training**: a long budget, aimed at SGD's training loss near 1e-3 (the result file
  records where it got);
* **noisy labels**: a share of the training labels replaced by another class, so that a fit to
  them can only be memorised, and validation loss rises as training loss falls;
* **tolerance**: the adaptive controller's rtol at 1e-3 and 1e-1 (the others use 1e-2);
* **batch size**: a small and a large batch, for the same number of steps;
* **sanity**: a small step, where the order must not matter: every order effect smaller than δ
  (a check of the harness, not of the claim).

The rule, stated before any number (notebook 06, section 1). "Overfits" means a fit to the
training set that generalises worse, so the verdict reads each comparison ``method − control``
at **matched training loss** (:mod:`course_lib.studies.readings`): both runs of a seed where
their training loss first reaches the same value, the lowest that every kept run reached. The
validation loss and accuracy there are the verdict's readings.

δ is a tenth of SGD's own final validation loss in the regime for a loss, one percentage point
for an accuracy. Each verdict reading makes three statements ("not 0", "inside ±δ", "beyond
±δ"), each a test. **Holm's family is fixed by the rule, before any number**: the statements of
the readings a verdict (or the sanity arm's harness check) reads, that is the matched validation
loss and accuracy of every comparison of the claim as stated and of the order alone, in every
arm (:func:`family_member`). Holm's procedure corrects them together
(:mod:`course_lib.studies.statistics`); a reading left with fewer than two pairs (diverged runs)
has no interval, makes no statement and drops out. Then, for a set of comparisons:

* **supported** when one of them reads validation worse by at least δ at matched training loss
  (validation loss higher or accuracy lower), corrected;
* **refuted** when every one of them excludes harm there, corrected: each matched validation
  reading is smaller than δ or resolved in the better direction;
* **undecided** otherwise (a reading leaves its size not resolved, or a comparison has no
  pairs left);
* **not tested** where the regime trains none of the set.

The claim *as stated* is read on the adaptive optimizers against SGD at the same learning rate;
*from the order* on the comparisons that change the order only. Every other reading is
**descriptive**: read at 95 %, uncorrected, labelled so, and never in a verdict. That is the
step-size comparisons (SGD at the adaptive steps − SGD, which say where a naive effect comes
from), the end of training (equal epochs: training loss, validation loss and accuracy: a method
that has trained further ends with a lower training loss and, past the best epoch, a worse
validation loss, whether or not it fits any worse) and the gradient measurements. The sanity
arm is a check of the harness, shown apart from the claim's verdicts (:func:`harness_check`).
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
from course_lib.studies.statistics import (
    ALPHA,
    TOO_FEW,
    PairedTest,
    holm,
    reading,
    resolves_direction,
    says_smaller_than_delta,
)

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

#: The readings of every comparison: (point, metric); the verdict's come first.
READINGS: tuple[tuple[str, str], ...] = (
    ("matched", "val_loss"),
    ("matched", "val_accuracy"),
    ("end", "train_loss"),
    ("end", "val_loss"),
    ("end", "val_accuracy"),
)
#: The readings a verdict reads: validation loss and accuracy at matched training loss.
VERDICT_READINGS: tuple[tuple[str, str], ...] = READINGS[:2]
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
#: The verdict table's columns and the comparisons each reads (Holm's family, with the harness
#: check, which reads the order-only ones of the sanity arm).
VERDICT_COLUMNS: dict[str, tuple[Comparison, ...]] = {
    "as stated": AS_STATED,
    "from the order": ORDER_ONLY,
}
#: Every set of comparisons the evidence speaks of: the verdict's, and the step size's
#: (descriptive).
COLUMNS: dict[str, tuple[Comparison, ...]] = VERDICT_COLUMNS | {"from the step size": STEP_SIZE}
#: The descriptive columns of the verdict table: named so that no one reads them as verdicts.
STEP_SIZE_COLUMN = "from the step size (uncorrected, descriptive)"
END_COLUMN = "at the end, as stated (uncorrected, descriptive)"


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
    #: The training loss SGD's runs are meant to reach (None: no aim); the page says if they did.
    aim: float | None = None
    #: A check of the harness (every order effect must be smaller than δ), not of the claim.
    harness_check: bool = False
    #: Which of :data:`CLAIM_METHODS` the arm does not train, and why ("" if it trains all).
    leaves_out: str = ""

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
            "trained long, with the training loss driven far below the validation loss, does a "
            "Runge–Kutta optimizer generalise worse?",
            {"epochs": e["long"]},
            short="long",
            aim=LONG_TARGET,
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
            "with a tight controller (a smaller error allowed per step), does the picture change?",
            {"epochs": e["rtol"], "rtol": 1e-3},
            short="rtol 1e-3",
        ),
        Regime(
            "rtol_01",
            "tolerance rtol 1e-1",
            "with a loose controller (a larger error allowed per step), does the picture change?",
            {"epochs": e["rtol"], "rtol": 1e-1},
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
            "where every method follows the gradient flow closely, is every order effect smaller "
            "than δ (a check of the harness, not of the claim)?",
            {
                "epochs": e["sanity"],
                "learning_rate": 0.03,
                "methods": ("SGD", RK23_FIXED, RK45_FIXED),
            },
            short="sanity",
            harness_check=True,
            leaves_out=(
                "the adaptive optimizers and their replays: their controller picks its own "
                "steps, and the check is about a small fixed step"
            ),
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
    training loss both runs of every kept pair are read at the comparison's target
    (:func:`~course_lib.studies.readings.matched_target`: the lowest training loss that every
    one of those runs reached), each where its training loss first reaches it.
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
                    "pairs": test.n,
                    "excluded": len(pairs) - len(kept),
                    "delta": size,
                    "target": target if point == "matched" else None,
                    "mean": test.mean,
                    "half_width": test.half_width(),
                    "test": test,
                    "p": {
                        "zero": test.p_zero(),
                        "within": test.p_within(size),
                        "beyond": test.p_beyond(size),
                    },
                }
            )
    return rows


def family_member(r: Mapping[str, Any]) -> bool:
    """Whether the rule puts a reading in Holm's family, before any number: a validation
    reading at matched training loss (:data:`VERDICT_READINGS`) of a comparison a verdict reads
    (:data:`VERDICT_COLUMNS`: the claim as stated and the order alone)."""
    verdict_comparisons = {c for comparisons in VERDICT_COLUMNS.values() for c in comparisons}
    return (r["point"], r["metric"]) in VERDICT_READINGS and r["comparison"] in verdict_comparisons


def in_family(r: Mapping[str, Any]) -> bool:
    """Whether a reading is in Holm's family: a member by the rule with an interval (at least
    two pairs; with fewer it makes no statement)."""
    return family_member(r) and r["pairs"] >= 2


def role(r: Mapping[str, Any]) -> str:
    """What a reading is for, as the result file's tables say it."""
    if not family_member(r):
        return "descriptive"
    return "Holm's family" if r["pairs"] >= 2 else "no interval"


def correct(readings: Sequence[dict[str, Any]]) -> None:
    """Holm over the statements (three per reading) of the family's readings, in place.

    Every reading gains its ``uncorrected`` reading in words (the 95 % interval's) and its
    ``role``; each reading of the family (:func:`in_family`) its Holm-``adjusted`` p-values and
    its ``corrected`` reading in words. A descriptive reading has no corrected reading (None);
    a member of the family with fewer than two pairs makes no statement and reads "too few
    pairs" both ways: it stays out (its p-values of 1 would only inflate Holm's multipliers).
    """
    keys = ("zero", "within", "beyond")
    family = [r for r in readings if in_family(r)]
    adjusted = holm([r["p"][k] for r in family for k in keys]) if family else []
    for index, r in enumerate(family):
        r["adjusted"] = dict(zip(keys, adjusted[3 * index : 3 * index + 3].tolist(), strict=True))
    for r in readings:
        r["role"] = role(r)
        r["uncorrected"] = reading(r["test"], r["delta"]) if r["pairs"] >= 2 else TOO_FEW
        if in_family(r):
            r["corrected"] = reading(r["test"], r["delta"], r["adjusted"])
        else:
            r["adjusted"] = dict.fromkeys(keys)
            r["corrected"] = TOO_FEW if family_member(r) else None


# --------------------------------------------------------------------------------------------
# The verdict of a regime, and what is read beside it
# --------------------------------------------------------------------------------------------


def worse_by_delta(r: Mapping[str, Any], which: str = "corrected") -> bool:
    """A validation reading that says worse by at least δ (loss higher, accuracy lower)."""
    return r[which] == f"{WORSE[r['metric']]}, ≥ δ"


def worse_size_open(r: Mapping[str, Any], which: str = "corrected") -> bool:
    """A validation reading resolved worse whose size against δ is not resolved."""
    return r[which] == f"{WORSE[r['metric']]}, size not resolved"


def harm_excluded(r: Mapping[str, Any], which: str = "corrected") -> bool:
    """A validation reading smaller than δ, or resolved in the better direction."""
    better = {"higher": "lower", "lower": "higher"}[WORSE[r["metric"]]]
    return says_smaller_than_delta(r[which]) or r[which].startswith(f"{better},")


def _validation(
    readings: Sequence[Mapping[str, Any]], comparisons: Sequence[Comparison], point: str
) -> list[Mapping[str, Any]]:
    names = {c.name for c in comparisons}
    return [
        r
        for r in readings
        if r["comparison"].name in names and r["point"] == point and r["metric"] in WORSE
    ]


def verdict(
    readings: Sequence[Mapping[str, Any]],
    comparisons: Sequence[Comparison],
    which: str = "corrected",
) -> str:
    """supported / refuted / undecided for a set of comparisons, from their validation readings
    at matched training loss; "not tested" where the readings hold none of them."""
    matched = _validation(readings, comparisons, "matched")
    if not matched:
        return "not tested"
    if any(worse_by_delta(r, which) for r in matched):
        return "supported"
    if all(harm_excluded(r, which) for r in matched):
        return "refuted"
    return "undecided"


def described(
    readings: Sequence[Mapping[str, Any]], comparisons: Sequence[Comparison], point: str
) -> str:
    """What the validation readings of a set of comparisons show at ``point``, uncorrected:
    descriptive words, never a verdict's.

    "worse by ≥ δ" where one reads worse by at least δ; else "worse, size not resolved" where
    one is resolved worse; else "within δ or better" where every one excludes harm; else "not
    resolved". At the end of training ", after training further" is added when a comparison
    read worse also ended with its training loss resolved lower. "no pairs left" where every
    comparison lost its pairs to diverged runs, "not tested" where the regime trains none.
    """
    found = _validation(readings, comparisons, point)
    if not found:
        return "not tested"
    if not any(r["pairs"] >= 2 for r in found):
        return "no pairs left"
    worse = [r for r in found if worse_by_delta(r, "uncorrected")]
    text = "worse by ≥ δ"
    if not worse:
        worse = [r for r in found if worse_size_open(r, "uncorrected")]
        text = "worse, size not resolved"
    if not worse:
        return (
            "within δ or better"
            if all(harm_excluded(r, "uncorrected") for r in found)
            else ("not resolved")
        )
    further = point == "end" and any(trained_further(readings, r["comparison"]) for r in worse)
    return text + (", after training further" if further else "")


def trained_further(readings: Sequence[Mapping[str, Any]], comparison: Comparison) -> bool:
    """Whether the comparison's method ended training with its training loss resolved lower
    than its control's (uncorrected): it trained further."""
    return any(
        (r["uncorrected"] or "").startswith("lower,")
        for r in readings
        if r["comparison"].name == comparison.name
        and (r["point"], r["metric"]) == ("end", "train_loss")
    )


def at_the_end(
    readings: Sequence[Mapping[str, Any]], comparisons: Sequence[Comparison] = AS_STATED
) -> str:
    """What the end of training (equal epochs) shows for a set of comparisons, beside the
    verdict and never in it (:func:`described` at the end)."""
    return described(readings, comparisons, "end")


def harness_check(readings: Sequence[Mapping[str, Any]]) -> str:
    """The sanity arm's check of the harness, from its order-only validation readings at
    matched training loss, corrected: "passed" when every one is smaller than δ, "failed" when
    one is at least δ, "inconclusive" otherwise, "not tested" without such readings."""
    matched = _validation(readings, ORDER_ONLY, "matched")
    if not matched:
        return "not tested"
    if any(r["corrected"].endswith("≥ δ") for r in matched):
        return "failed"
    if all(says_smaller_than_delta(r["corrected"]) for r in matched):
        return "passed"
    return "inconclusive"


# --------------------------------------------------------------------------------------------
# Tables for the result file, and the readings back from them
# --------------------------------------------------------------------------------------------

_READINGS_COLUMNS: tuple[tuple[str, str, str], ...] = (
    # (header, format, key of a reading)
    ("comparison", "", "comparison"),
    ("what differs", "", "differs"),
    ("role", "", "role"),
    ("point", "", "point"),
    ("metric", "", "metric"),
    ("pairs", "", "pairs"),
    ("excluded (diverged)", "", "excluded"),
    ("δ", ".4f", "delta"),
    ("matched at", ".3g", "target"),
    ("mean", "+.4f", "mean"),
    ("± 95 %", ".4f", "half_width"),
    ("p (≠ 0)", ".2g", "p zero"),
    ("p (< δ)", ".2g", "p within"),
    ("p (≥ δ)", ".2g", "p beyond"),
    ("Holm p (≠ 0)", ".2g", "adjusted zero"),
    ("Holm p (< δ)", ".2g", "adjusted within"),
    ("Holm p (≥ δ)", ".2g", "adjusted beyond"),
    ("uncorrected", "", "uncorrected"),
    ("corrected", "", "corrected"),
)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _cell(r: Mapping[str, Any], key: str) -> Any:
    if key == "comparison":
        return r["comparison"].name
    if key == "differs":
        return r["comparison"].differs
    if key == "metric":
        return r["metric"].replace("_", " ")
    if key in ("mean", "half_width"):
        return _finite(r[key])
    if key.startswith(("p ", "adjusted ")):
        group, statement = key.split()
        return r[group][statement]
    return r[key]


def readings_table(readings: Sequence[Mapping[str, Any]]) -> Table:
    """Every reading: its role (Holm's family or descriptive), the mean difference, its 95 %
    interval, p-values raw and (in the family) Holm-adjusted, and what it says uncorrected and
    (in the family) corrected."""
    columns = [(header, spec) for header, spec, _ in _READINGS_COLUMNS]
    rows = [[_cell(r, key) for _, _, key in _READINGS_COLUMNS] for r in readings]
    return Table(columns, rows)


def readings_from_table(regime: str, table: Table) -> list[dict[str, Any]]:
    """The readings of one regime back from its result-file table, in the shape
    :func:`regime_readings` and :func:`correct` give them (without the per-seed ``test``), so
    that verdicts and evidence can be drawn from a result file."""
    names = {c.name: c for c in COMPARISONS}
    readings = []
    for record in table.records():
        r: dict[str, Any] = {"regime": regime, "p": {}, "adjusted": {}}
        for header, _, key in _READINGS_COLUMNS:
            value = record[header]
            if key == "comparison":
                r[key] = names[value]
            elif key == "metric":
                r[key] = value.replace(" ", "_")
            elif key.startswith(("p ", "adjusted ")):
                group, statement = key.split()
                r[group][statement] = value
            elif key != "differs":
                r[key] = math.nan if value is None and key in ("mean", "half_width") else value
        readings.append(r)
    return readings


def _groups(readings: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    return {
        column: [r for r in readings if r["comparison"] in comparisons]
        for column, comparisons in COLUMNS.items()
    }


def verdict_row(name: str, readings: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """One regime's row of the verdict table: per column of :data:`VERDICT_COLUMNS` the verdict
    at matched training loss, corrected and uncorrected; beside them, descriptive and
    uncorrected, what the step-size comparisons show there and what the adaptive optimizers
    show at the end of training."""
    groups = _groups(readings)
    row = {"regime": name}
    for column, comparisons in VERDICT_COLUMNS.items():
        row[column] = verdict(groups[column], comparisons)
        row[f"{column}, uncorrected"] = verdict(groups[column], comparisons, "uncorrected")
    row[STEP_SIZE_COLUMN] = described(groups["from the step size"], STEP_SIZE, "matched")
    row[END_COLUMN] = at_the_end(groups["as stated"], AS_STATED)
    return row


def verdict_rows(
    regime_list: Sequence[Regime], readings: Sequence[Mapping[str, Any]]
) -> list[dict[str, str]]:
    """The verdict table's rows, one per regime of the claim (:func:`verdict_row`); a harness
    check has a row of its own (:func:`harness_rows`)."""
    return [
        verdict_row(regime.name, [r for r in readings if r["regime"] == regime.key])
        for regime in regime_list
        if not regime.harness_check
    ]


#: The verdict table's columns, in order.
VERDICT_HEADERS: tuple[str, ...] = (
    "regime",
    "as stated",
    "as stated, uncorrected",
    "from the order",
    "from the order, uncorrected",
    STEP_SIZE_COLUMN,
    END_COLUMN,
)


def verdict_table(rows: Sequence[Mapping[str, str]]) -> Table:
    return Table(
        [(h, "") for h in VERDICT_HEADERS], [[row[h] for h in VERDICT_HEADERS] for row in rows]
    )


def harness_row(name: str, readings: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A harness check's row: passed / failed / inconclusive (:func:`harness_check`), how many
    of its readings are smaller than δ after the correction, and the largest mean difference
    in units of δ."""
    matched = _validation(readings, ORDER_ONLY, "matched")
    sizes = [abs(r["mean"]) / r["delta"] for r in matched if r["pairs"] >= 2]
    return {
        "regime": name,
        "harness check": harness_check(readings),
        "readings < δ, corrected": sum(says_smaller_than_delta(r["corrected"]) for r in matched),
        "readings": len(matched),
        "largest |mean| / δ": max(sizes) if sizes else None,
    }


#: The harness table's columns: (header, format).
HARNESS_COLUMNS: tuple[tuple[str, str], ...] = (
    ("regime", ""),
    ("harness check", ""),
    ("readings < δ, corrected", ""),
    ("readings", ""),
    ("largest |mean| / δ", ".2g"),
)


def harness_table(regime_list: Sequence[Regime], readings: Sequence[Mapping[str, Any]]) -> Table:
    """One row per harness check of the study (:func:`harness_row`)."""
    rows = [
        harness_row(regime.name, [r for r in readings if r["regime"] == regime.key])
        for regime in regime_list
        if regime.harness_check
    ]
    return Table(list(HARNESS_COLUMNS), [[row[h] for h, _ in HARNESS_COLUMNS] for row in rows])


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


def family_counts(readings: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Holm's family in numbers: the readings in all, the rule's members and the descriptive
    rest; the members with one pair or none (no interval, out of the family); the family's
    readings and statements; how many of those resolve a direction, uncorrected and corrected,
    and how many say something else after the correction."""
    members = [r for r in readings if family_member(r)]
    family = [r for r in members if r["pairs"] >= 2]
    resolved = lambda which: sum(resolves_direction(r[which]) for r in family)  # noqa: E731
    return {
        "readings": len(readings),
        "members": len(members),
        "descriptive": len(readings) - len(members),
        "one pair": sum(r["pairs"] == 1 for r in members),
        "no pairs": sum(r["pairs"] == 0 for r in members),
        "in family": len(family),
        "statements": 3 * len(family),
        "uncorrected": resolved("uncorrected"),
        "corrected": resolved("corrected"),
        "changed": sum(r["corrected"] != r["uncorrected"] for r in family),
        "alpha": ALPHA,
    }
