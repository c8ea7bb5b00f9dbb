"""The overfitting study's verdicts in words: what carried each one, drawn from the result file.

A verdict (:mod:`course_lib.studies.regimes`) is one word; a reader needs what stands behind it:
the effect sizes with their intervals, which comparisons decided it, what Holm's correction
changed, what the end of training shows beside it, and what failed outright. Everything here
reads a loaded result file (:func:`course_lib.studies.results.load_result`), so that
``docs/overfitting.md`` and notebook 06 say the same thing, and a new run of the study changes
the words with the numbers. Each sentence is written under the condition that makes it true:
none of them is pasted, and none names a verdict the file does not hold.
"""

from __future__ import annotations

from course_lib.studies.overfitting import METHODS, Comparison, short_label
from course_lib.studies.regimes import (
    AS_STATED,
    COLUMNS,
    ORDER_ONLY,
    harm_excluded,
    readings_from_table,
    verdict_row,
    worse_by_delta,
)
from course_lib.studies.results import Table
from course_lib.studies.statistics import says_smaller_than_delta

import math
from collections.abc import Mapping, Sequence
from typing import Any

#: How a sentence names a metric.
METRIC_NAMES = {"train_loss": "training loss", "val_loss": "validation loss"}
METRIC_NAMES |= {"val_accuracy": "accuracy"}


def study_readings(result: Any) -> list[dict[str, Any]]:
    """Every reading of a loaded result file, regime after regime (with its ``regime`` key)."""
    readings = []
    for key in result.values["order"]:
        readings += readings_from_table(key, result.table(f"readings_{key}"))
    return readings


def verdict_rows_from(result: Any) -> list[dict[str, str]]:
    """The verdict table recomputed from the file's readings (it must equal the file's own)."""
    readings = study_readings(result)
    return [
        verdict_row(
            result.values["regimes"][key]["name"], [r for r in readings if r["regime"] == key]
        )
        for key in result.values["order"]
    ]


# --------------------------------------------------------------------------------------------
# Pieces of sentences
# --------------------------------------------------------------------------------------------


def effect(r: Mapping[str, Any]) -> str:
    """A reading's mean difference and 95 % half-width, and what its tests resolve after
    Holm's correction."""
    if r["pairs"] == 0:
        return "no pairs"
    if r["pairs"] == 1:
        return f"{r['mean']:+.4f} (one pair, no interval)"
    return f"{r['mean']:+.4f} ± {r['half_width']:.4f} (corrected: {r['corrected']})"


def _find(readings: Sequence[Mapping[str, Any]], c: Comparison, point: str, metric: str):
    return next(
        r
        for r in readings
        if r["comparison"] == c and r["point"] == point and r["metric"] == metric
    )


def _trained(readings: Sequence[Mapping[str, Any]], comparisons: Sequence[Comparison]):
    """The comparisons of ``comparisons`` that the regime trains, in order."""
    present = {r["comparison"] for r in readings}
    return [c for c in comparisons if c in present]


def _no_pairs(readings: Sequence[Mapping[str, Any]], c: Comparison) -> bool:
    return _find(readings, c, "matched", "val_loss")["pairs"] == 0


def matched_clause(
    readings: Sequence[Mapping[str, Any]], c: Comparison, sgd_final: float | None
) -> str:
    """One comparison at matched training loss: where (also as a multiple of SGD's final
    training loss: far above 1, the match lies early in training), validation loss and
    accuracy."""
    loss = _find(readings, c, "matched", "val_loss")
    if loss["pairs"] == 0:
        return f"{c.short}: no pairs (a run of every pair diverged)"
    accuracy = _find(readings, c, "matched", "val_accuracy")
    where = f"matched at training loss {loss['target']:.3g}"
    if sgd_final:
        where += f", {loss['target'] / sgd_final:.3g} × SGD's final"
    return f"{c.short} ({where}): validation loss {effect(loss)}, accuracy {effect(accuracy)}"


def end_clause(readings: Sequence[Mapping[str, Any]], c: Comparison) -> str:
    """One comparison at the end of training: training loss, validation loss and accuracy."""
    parts = [
        f"{METRIC_NAMES[metric]} {effect(_find(readings, c, 'end', metric))}"
        for metric in ("train_loss", "val_loss", "val_accuracy")
    ]
    if _find(readings, c, "end", "val_loss")["pairs"] == 0:
        return f"{c.short}: no pairs"
    return f"{c.short}: " + ", ".join(parts)


def _matched_validation(readings, c):
    return [_find(readings, c, "matched", m) for m in ("val_loss", "val_accuracy")]


def deciding_clause(
    readings: Sequence[Mapping[str, Any]], comparisons: Sequence[Comparison], verdict: str
) -> str:
    """Which comparisons carried a column's verdict, with their effects."""
    trained = _trained(readings, comparisons)
    if verdict == "supported":
        worse = [
            f"{c.short}, {METRIC_NAMES[r['metric']]} {effect(r)}"
            for c in trained
            for r in _matched_validation(readings, c)
            if worse_by_delta(r)
        ]
        return "Worse by at least δ at matched training loss: " + "; ".join(worse) + "."
    excluded = [
        c for c in trained if all(harm_excluded(r) for r in _matched_validation(readings, c))
    ]
    if verdict == "refuted":
        every = "both" if len(trained) == 2 else f"all {len(trained)}"
        return (
            f"Harm excluded at matched training loss in {every} comparisons: "
            + "; ".join(c.short for c in excluded)
            + "."
        )
    failing = []
    for c in trained:
        if c in excluded:
            continue
        if _no_pairs(readings, c):
            failing.append(f"{c.short} (no pairs)")
            continue
        open_ = [r for r in _matched_validation(readings, c) if not harm_excluded(r)]
        failing.append(
            f"{c.short}: " + ", ".join(f"{METRIC_NAMES[r['metric']]} {effect(r)}" for r in open_)
        )
    text = (
        f"Harm not excluded at matched training loss in {len(failing)} of {len(trained)} "
        f"comparison{'s' if len(trained) > 1 else ''}: " + "; ".join(failing) + "."
    )
    if excluded:
        text += " Excluded in " + "; ".join(c.short for c in excluded) + "."
    return text


def holm_clause(
    readings: Sequence[Mapping[str, Any]], column: str, corrected: str, uncorrected: str
) -> str:
    """Where Holm's correction changed a column's verdict: the readings the uncorrected verdict
    rested on, what they say at 95 % and what they say corrected."""
    comparisons = _trained(readings, COLUMNS[column])
    matched = [r for c in comparisons for r in _matched_validation(readings, c)]
    if uncorrected == "supported":
        lost = [r for r in matched if worse_by_delta(r, "uncorrected") and not worse_by_delta(r)]
        what = "worse by at least δ at 95 % but not after the correction"
    else:
        lost = [r for r in matched if harm_excluded(r, "uncorrected") and not harm_excluded(r)]
        what = "that exclude harm at 95 % but not after the correction"
    details = [
        f"{r['comparison'].short}, {METRIC_NAMES[r['metric']]} {r['mean']:+.4f} ± "
        f"{r['half_width']:.4f} (at 95 %: {r['uncorrected']})"
        for r in lost
    ]
    return (
        f"uncorrected, *{column}* would read {uncorrected}; it rests on readings {what}: "
        + "; ".join(details)
        + "."
    )


# --------------------------------------------------------------------------------------------
# Failures
# --------------------------------------------------------------------------------------------


def failures_clause(result: Any, key: str, readings: Sequence[Mapping[str, Any]]) -> str:
    """Which methods diverged, the adaptive steps behind them, and the comparisons left empty."""
    regime = result.values["regimes"][key]
    h = regime["settings"]["learning_rate"]
    stability = {row["method"]: row for row in result.table(f"stability_{key}").records()}
    parts = []
    for method, row in stability.items():
        if not row["diverged"]:
            continue
        text = f"{short_label(method)} diverged on {row['diverged']} of {row['runs']} seeds"
        source = METHODS[method].replays if method in METHODS else None
        adaptive = METHODS[method].adaptive if method in METHODS else False
        if (adaptive or source) and row["median step size"] is not None:
            whose = f"{short_label(source)}'s" if source else "its"
            step = row["median step size"]
            text += f" ({whose} median accepted step {step:.3g}, {step / h:.3g} × h"
            if adaptive:
                text += f"; {row['forced acceptances']} forced acceptances"
            text += ")"
        parts.append(text)
    if not parts:
        return "No run diverged."
    empty = [
        c.short for c in _trained(readings, list(_all_comparisons())) if _no_pairs(readings, c)
    ]
    text = "; ".join(parts) + "."
    if empty:
        text += " No readings at all (a run of every pair diverged): " + "; ".join(empty) + "."
    return text


def _all_comparisons():
    for comparisons in COLUMNS.values():
        yield from comparisons


# --------------------------------------------------------------------------------------------
# A regime's evidence, and the study's
# --------------------------------------------------------------------------------------------


def trained_clause(result: Any, key: str) -> str:
    """How far SGD trained: its final losses, against the arm's aim if it has one; δ."""
    regime = result.values["regimes"][key]
    s = regime["settings"]
    text = (
        f"{s['epochs']} epochs, {len(s['seeds'])} seeds. SGD ended at training loss "
        f"{regime['sgd_final_train_loss']:.2g} and validation loss "
        f"{regime['sgd_final_val_loss']:.3g}"
    )
    aim = regime.get("aim")
    if aim is not None:
        reached = regime["sgd_final_train_loss"] <= aim
        text += f" (the arm aims at {aim:g}: {'reached' if reached else 'not reached'})"
    return (
        text + f". δ = {regime['delta_loss']:.4f} for a loss, {regime['delta_accuracy']} for an "
        "accuracy."
    )


def reading_clause(row: Mapping[str, str], readings: Sequence[Mapping[str, Any]]) -> str:
    """What the verdict and the end of training say together, where they say something more than
    each alone (an empty string otherwise)."""
    sentences = []
    stated = _trained(readings, AS_STATED)
    if stated and all(_no_pairs(readings, c) for c in stated):
        sentences.append(
            "The adaptive optimizers failed outright here: no pair with SGD is left to read."
        )
    elif row["at the end, as stated"] == "worse by ≥ δ, after training further":
        if row["as stated"] == "refuted":
            sentences.append(
                "The adaptive runs end worse after training further, yet at the same training "
                "loss every validation reading is within δ or better: the end difference is how "
                "far they trained, not a worse fit."
            )
        elif row["as stated"] == "undecided":
            sentences.append(
                "The adaptive runs end worse after training further; at the same training loss "
                "the corrected readings neither show a worse fit by δ nor exclude one, so the end "
                "difference alone does not show a worse fit."
            )
    if row["as stated"] == "supported" and row["from the order"] != "supported":
        sentence = f"The order alone does not carry it (from the order: {row['from the order']})"
        if row["from the step size"] == "supported":
            sentence += "; SGD given the adaptive steps reads worse by δ too"
        sentences.append(sentence + ".")
    return " ".join(sentences)


def harness_clause(readings: Sequence[Mapping[str, Any]]) -> str:
    """For a harness check: how many order-only readings (end and matched, corrected) are
    smaller than δ, and the largest difference in units of δ."""
    order = [
        r
        for r in readings
        if r["comparison"] in ORDER_ONLY and r["pairs"] >= 2 and r["metric"] != "train_loss"
    ]
    small = sum(says_smaller_than_delta(r["corrected"]) for r in order)
    largest = max((abs(r["mean"]) / r["delta"] for r in order), default=math.nan)
    text = (
        f"**Harness check**: {small} of {len(order)} order-only validation readings (end and "
        f"matched, corrected) are smaller than δ; the largest difference is {largest:.2g} δ."
    )
    if order and small == len(order):
        return text + " Every order effect is smaller than δ, as a correct harness must give."
    return text + " Not every order effect is shown smaller than δ: read the table below."


def regime_evidence(result: Any, key: str) -> list[str]:
    """The evidence for one regime's verdicts, as markdown bullet texts (without the dash)."""
    readings = [r for r in study_readings(result) if r["regime"] == key]
    regime = result.values["regimes"][key]
    row = verdict_row(regime["name"], readings)
    lines = [f"**Trained**: {trained_clause(result, key)}"]
    stated = _trained(readings, AS_STATED)
    if stated:
        sgd_final = regime["sgd_final_train_loss"]
        lines.append(
            f"**As stated: {row['as stated']}** ({row['as stated, uncorrected']} uncorrected). "
            + "; ".join(matched_clause(readings, c, sgd_final) for c in stated)
            + "."
        )
    for column in ("from the order", "from the step size"):
        if _trained(readings, COLUMNS[column]):
            lines.append(
                f"**{column[0].upper()}{column[1:]}: {row[column]}** "
                f"({row[column + ', uncorrected']} uncorrected). "
                + deciding_clause(readings, COLUMNS[column], row[column])
            )
    for column in COLUMNS:
        if row[column] != row[f"{column}, uncorrected"]:
            lines.append(
                "**Holm's correction**: "
                + holm_clause(readings, column, row[column], row[f"{column}, uncorrected"])
            )
    if stated:
        lines.append(
            f"**At the end** (equal epochs, beside the verdict): {row['at the end, as stated']}. "
            + "; ".join(end_clause(readings, c) for c in stated)
            + "."
        )
    if regime.get("harness_check"):
        lines.append(harness_clause(readings))
    lines.append("**Failures**: " + failures_clause(result, key, readings))
    reading = reading_clause(row, readings)
    if reading:
        lines.append("**Reading it**: " + reading)
    return lines


def evidence_markdown(result: Any, level: int = 3) -> str:
    """Every regime's evidence: a heading and a bullet list per regime."""
    blocks = []
    for key in result.values["order"]:
        name = result.values["regimes"][key]["name"]
        bullets = "\n".join(f"- {line}" for line in regime_evidence(result, key))
        blocks.append(f"{'#' * level} {name[0].upper()}{name[1:]}\n\n{bullets}\n")
    return "\n".join(blocks)


def verdict_markdown(result: Any) -> str:
    """The verdict table of the file, as markdown (the corrected verdicts and, beside each, the
    uncorrected one in brackets where it differs)."""
    rows = result.table("verdicts").records()
    headers = ["regime", "as stated", "from the order", "from the step size"]
    headers.append("at the end, as stated")
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        cells = [row["regime"]]
        for column in COLUMNS:
            uncorrected = row[f"{column}, uncorrected"]
            cells.append(
                row[column]
                + (f" (uncorrected: {uncorrected})" if uncorrected != row[column] else "")
            )
        cells.append(row["at the end, as stated"])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def family_sentence(result: Any) -> str:
    """How many readings, how many in Holm's family, how many resolve a direction."""
    f = result.values["family"]
    return (
        f"{f['readings']} readings in all; {f['no pairs']} have no pairs and {f['one pair']} "
        f"one pair, so no interval: they make no statement and stay out of Holm's family. The "
        f"other {f['in family']} make {f['statements']} statements, one family; "
        f"{f['uncorrected']} of those readings resolve a direction at 95 % uncorrected, "
        f"{f['corrected']} after Holm's correction."
    )


def step_share_table(result: Any) -> Table:
    """Per regime, what a higher order drops from SGD's step (‖Heun − SGD‖/‖SGD‖ on SGD's own
    mini-batches at its final weights) and how the order-only comparisons' mean mini-batch
    ‖∇L_k‖² moved (counts of readings higher, lower, within seed spread)."""
    columns = [("regime", ""), ("step share", ".0%"), ("lowest", ".0%"), ("highest", ".0%")]
    columns += [("order-only Δ‖∇L_k‖² at 95 %: higher", ""), ("lower", "")]
    columns += [("within seed spread", ""), ("too few pairs", "")]
    rows = []
    for key in result.values["order"]:
        regime = result.values["regimes"][key]
        igr = regime["implicit_regularisation"]
        low, high = igr["step_correction_range"] or (None, None)
        said = [e["reading"] for e in igr["batch_gradient_effects"].values()]
        counts = [sum(s == w for s in said) for w in ("higher", "lower", "within seed spread")]
        counts.append(sum(s == "too few runs" for s in said))
        rows.append([regime["short"], igr["step_correction"], low, high, *counts])
    return Table(columns, rows)
