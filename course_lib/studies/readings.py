"""Reading the runs of a study: at equal epochs, at equal gradient evaluations, at matched loss.

A run is a list of measurements after each epoch (:class:`~.overfitting.RunRecord`).
Three fair ways to put two methods side by side, each answering another question:

* **equal epochs**: after the last epoch, the same number of steps (for the fixed-step methods
  the same time on the gradient flow): what does each method make of the same training?
* **equal gradient evaluations**: each run at its last epoch within the gradient evaluations
  SGD used in all its epochs: what does each method make of the same compute?
* **matched training loss**: each run when its training loss first reaches the same value,
  interpolated between the two epochs around that moment: for the same fit to the training
  set, how good is the fit to the validation set? That is the question "overfits" asks.

Rows (mean and spread over seeds per method) and the tables of failures live here too.
"""

from __future__ import annotations

from course_lib.studies.overfitting import RunRecord, is_diverged
from course_lib.studies.results import Table

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

#: The per-run quantities a row summarises.
METRICS: tuple[str, ...] = ("train_loss", "val_loss", "gap", "val_accuracy")
#: Quantities measured once, after the last epoch.
AFTER_TRAINING: tuple[str, ...] = ("gradient_norm_sq", "batch_gradient_norm_sq", "step_correction")


def value_at(record: RunRecord, metric: str, epoch: int) -> float:
    """One measured quantity of a run after ``epoch`` (``"gap"``: validation − training loss)."""
    if metric == "gap":
        return record.gap(epoch)
    if metric in AFTER_TRAINING:
        if epoch not in (-1, len(record.train_loss) - 1):
            raise ValueError(f"{metric} is measured after the last epoch only, not at {epoch}.")
        return getattr(record, metric)
    return getattr(record, metric)[epoch]


def gradient_budget(records: Sequence[RunRecord]) -> int:
    """The gradient evaluations SGD used in all its epochs: what every method gets at equal cost."""
    sgd = [r.gradients[-1] for r in records if r.method == "SGD"]
    if not sgd:
        raise ValueError("comparing at equal gradient evaluations needs the SGD runs (the budget).")
    return min(sgd)


def read_epoch(record: RunRecord, comparison: str, budget: int | None = None) -> int | None:
    """The epoch index a comparison reads: the last one, or the last within ``budget`` (None if
    even the first epoch costs more)."""
    if comparison == "epochs":
        return len(record.train_loss) - 1
    if comparison != "gradients":
        raise ValueError(f"comparison={comparison!r} must be 'epochs' or 'gradients'.")
    within = [i for i, count in enumerate(record.gradients) if count <= budget]
    return within[-1] if within else None


# --------------------------------------------------------------------------------------------
# Matched training loss
# --------------------------------------------------------------------------------------------


def loss_crossing(record: RunRecord, target: float) -> float | None:
    """Where the run's training loss first reaches ``target``, as a fractional epoch index.

    Between the last epoch index above the target and the first at or below it, the position
    is interpolated linearly in log(training loss) (late in training the loss falls roughly
    geometrically). 0.0 when the first epoch is already at or below the target (nothing earlier
    was measured); None when the run never reaches it.
    """
    if not (math.isfinite(target) and target > 0):
        raise ValueError(f"target={target!r} must be a positive training loss.")
    losses = record.train_loss
    for index, loss in enumerate(losses):
        if math.isfinite(loss) and loss <= target:
            if index == 0:
                return 0.0
            above = losses[index - 1]
            share = (math.log(above) - math.log(target)) / (math.log(above) - math.log(loss))
            return index - 1 + share
    return None


def value_at_loss(record: RunRecord, metric: str, target: float) -> float | None:
    """``metric`` when the training loss first reaches ``target`` (interpolated; None if never).

    For ``"train_loss"`` itself this is ``target`` (or the first epoch's loss, if lower).
    """
    position = loss_crossing(record, target)
    if position is None:
        return None
    if metric == "train_loss" and position > 0:
        return target  # by construction of the crossing
    series = [value_at(record, metric, i) for i in range(len(record.train_loss))]
    below = int(math.floor(position))
    share = position - below
    if share == 0.0:
        return series[below]
    return series[below] + share * (series[below + 1] - series[below])


def matched_target(records: Sequence[RunRecord]) -> float:
    """The lowest training loss that every run which did not diverge reached: the highest of
    their lowest training losses.

    Each run is then read where its training loss *first* reaches it. Taking each run's lowest
    loss rather than its last matters where a run fell low and then blew up: its final loss,
    near the start's, would put the match where nothing has been fitted yet.
    """
    lowest = [
        min(loss for loss in r.train_loss if math.isfinite(loss))
        for r in records
        if not r.diverged()
    ]
    if not lowest:
        raise ValueError("every run diverged: there is no training loss to match.")
    return max(lowest)


# --------------------------------------------------------------------------------------------
# Rows: mean and spread per method, at equal epochs or equal gradient evaluations
# --------------------------------------------------------------------------------------------


def _spread(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and standard deviation over seeds (sd None for a single value)."""
    if not values:
        return None, None
    array = np.asarray(values, dtype=np.float64)
    return float(array.mean()), (float(array.std(ddof=1)) if array.size > 1 else None)


def study_rows(records: Sequence[RunRecord], comparison: str = "epochs") -> list[dict[str, Any]]:
    """One row per method: runs, diverged runs, epochs read, and mean/sd of each metric.

    ``comparison="epochs"`` reads every run after its last epoch; ``"gradients"`` reads each run
    at its last epoch within SGD's total gradient evaluations. Means and spreads are over the runs
    that did not diverge at that epoch; ``diverged`` counts the others (shown, not dropped), and
    ``blew up`` those among the kept runs that blew up on the way (:meth:`RunRecord.blew_up`).
    """
    budget = gradient_budget(records) if comparison == "gradients" else None
    rows = []
    for method in dict.fromkeys(r.method for r in records):
        runs = [r for r in records if r.method == method]
        epochs = [read_epoch(r, comparison, budget) for r in runs]
        read = [(r, e) for r, e in zip(runs, epochs, strict=True) if e is not None]
        kept = [(r, e) for r, e in read if not r.diverged(e)]
        row: dict[str, Any] = {
            "method": method,
            "runs": len(runs),
            "not reached": len(runs) - len(read),
            "diverged": len(read) - len(kept),
            "diverged seeds": [r.seed for r, e in read if r.diverged(e)],
            "blew up": sum(r.blew_up(e) for r, e in kept),
            "epochs": [e + 1 for _, e in read],
            "gradients": [r.gradients[e] for r, e in read],
        }
        for metric in METRICS:
            row[metric] = _spread([value_at(r, metric, e) for r, e in kept])
        rows.append(row)
    return rows


def _cell(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _epoch_text(epochs: Sequence[int]) -> str:
    values = sorted(set(epochs))
    if not values:
        return ""
    return f"{values[0]}" + (f"–{values[-1]}" if len(values) > 1 else "")


def format_study_table(rows: Sequence[dict[str, Any]], digits: int = 3) -> str:
    """A markdown table: mean ± sd over the runs that did not diverge, and how many did."""
    lines = [
        "| method | diverged | blew up | epochs | gradient evaluations | train loss | val loss "
        "| val − train | val acc |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        gradients = f"{np.mean(row['gradients']):,.0f}" if row["gradients"] else "–"
        cells = [
            f"{_cell(row[m][0], digits)} ± {_cell(row[m][1], digits)}"
            for m in ("train_loss", "val_loss", "gap", "val_accuracy")
        ]
        diverged = f"{row['diverged']}/{row['runs']}"
        if row["not reached"]:
            diverged += f" ({row['not reached']} not reached)"
        epochs = _epoch_text(row["epochs"]) or "–"
        lines.append(
            f"| {row['method']} | {diverged} | {row['blew up']} | {epochs} | {gradients} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Tables for the result file (raw numbers; docs render them, notebooks claim against them)
# --------------------------------------------------------------------------------------------


def rows_table(rows: Sequence[dict[str, Any]]) -> Table:
    """:func:`study_rows` as a :class:`course_lib.studies.results.Table` of raw numbers."""
    columns = [("method", ""), ("runs", ""), ("diverged", ""), ("blew up", ""), ("not reached", "")]
    columns += [("epochs", ""), ("gradient evaluations", ",.0f")]
    names = (("train loss", "train_loss"), ("val loss", "val_loss"), ("val − train", "gap"))
    names += (("val acc", "val_accuracy"),)
    for header, _ in names:
        columns += [(header, ".4f"), (f"{header} sd", ".4f")]
    table_rows = []
    for row in rows:
        gradients = float(np.mean(row["gradients"])) if row["gradients"] else None
        values = [row["method"], row["runs"], row["diverged"], row["blew up"], row["not reached"]]
        values += [_epoch_text(row["epochs"]), gradients]
        for _, metric in names:
            values += list(row[metric])
        table_rows.append(values)
    return Table(columns, table_rows)


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def stability_table(records: Sequence[RunRecord]) -> Table:
    """Per method: runs that blew up, the largest rise of a training loss, forced acceptances.

    A forced acceptance is an adaptive step that used up its retries and was applied anyway
    (``on_failure="accept"``); ``adaptive steps`` counts every applied adaptive step. The median
    step size (adaptive runs and their replays) is over every finite step of every run.
    """
    columns = [("method", ""), ("runs", ""), ("diverged", ""), ("blew up", "")]
    columns += [("largest rise", ".3g"), ("forced acceptances", ""), ("runs with one", "")]
    columns += [("adaptive steps", ""), ("median step size", ".3g")]
    rows = []
    for method in dict.fromkeys(r.method for r in records):
        runs = [r for r in records if r.method == method]
        adaptive = any(r.forced for r in runs)
        steps = [h for r in runs for h in r.step_sizes if math.isfinite(h)]
        rows.append(
            [
                method,
                len(runs),
                sum(r.diverged() for r in runs),
                sum(r.blew_up() for r in runs),
                _finite_or_none(max(r.largest_rise() for r in runs)),
                sum(sum(r.forced) for r in runs) if adaptive else None,
                sum(any(r.forced) for r in runs) if adaptive else None,
                sum(len(r.forced) for r in runs) if adaptive else None,
                float(np.median(steps)) if steps else None,
            ]
        )
    return Table(columns, rows)


def diverged_table(records: Sequence[RunRecord]) -> Table:
    """Every run that ended diverged: which, from which seed, from which epoch on."""
    columns = [("method", ""), ("seed", ""), ("first epoch above ln 10", "")]
    columns += [("final train loss", ".3g"), ("final val loss", ".3g")]
    rows = []
    for r in records:
        if r.diverged():
            first = next(i for i, loss in enumerate(r.train_loss) if is_diverged(loss)) + 1
            final = [_finite_or_none(r.train_loss[-1]), _finite_or_none(r.val_loss[-1])]
            rows.append([r.method, r.seed, first, *final])
    return Table(columns, rows)
