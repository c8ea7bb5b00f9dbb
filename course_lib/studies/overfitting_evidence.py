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
    END_COLUMN,
    ORDER_ONLY,
    STEP_SIZE,
    STEP_SIZE_COLUMN,
    VERDICT_COLUMNS,
    harm_excluded,
    harness_row,
    readings_from_table,
    trained_further,
    verdict_row,
    worse_by_delta,
    worse_size_open,
)
from course_lib.studies.results import Table
from course_lib.studies.statistics import TOO_FEW

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


def claim_keys(result: Any) -> list[str]:
    """The regimes that test the claim (not a harness check), in the file's order."""
    regimes = result.values["regimes"]
    return [key for key in result.values["order"] if not regimes[key].get("harness_check")]


def harness_keys(result: Any) -> list[str]:
    """The regimes that check the harness, in the file's order."""
    regimes = result.values["regimes"]
    return [key for key in result.values["order"] if regimes[key].get("harness_check")]


def verdict_rows_from(result: Any) -> list[dict[str, str]]:
    """The verdict table recomputed from the file's readings (it must equal the file's own)."""
    readings = study_readings(result)
    return [
        verdict_row(
            result.values["regimes"][key]["name"], [r for r in readings if r["regime"] == key]
        )
        for key in claim_keys(result)
    ]


def harness_rows_from(result: Any) -> list[dict[str, Any]]:
    """The harness checks recomputed from the file's readings (they must equal its own)."""
    readings = study_readings(result)
    return [
        harness_row(
            result.values["regimes"][key]["name"], [r for r in readings if r["regime"] == key]
        )
        for key in harness_keys(result)
    ]


# --------------------------------------------------------------------------------------------
# Pieces of sentences
# --------------------------------------------------------------------------------------------


def effect(r: Mapping[str, Any]) -> str:
    """A reading's mean difference and 95 % half-width, and what its tests resolve: after
    Holm's correction for a reading of the family, at 95 % (uncorrected, descriptive) for the
    others."""
    if r["pairs"] == 0:
        return "no pairs"
    if r["pairs"] == 1:
        return f"{r['mean']:+.4f} (one pair, no interval)"
    said = (
        f"corrected: {r['corrected']}"
        if r["role"] == "Holm's family"
        else f"uncorrected, descriptive: {r['uncorrected']}"
    )
    return f"{r['mean']:+.4f} ± {r['half_width']:.4f} ({said})"


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


def _pairs(readings: Sequence[Mapping[str, Any]], c: Comparison) -> int:
    """How many seeds a comparison's readings rest on (the pairs no diverged run took away)."""
    return _find(readings, c, "matched", "val_loss")["pairs"]


def _no_pairs(readings: Sequence[Mapping[str, Any]], c: Comparison) -> bool:
    return _pairs(readings, c) == 0


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


def _supporting(readings: Sequence[Mapping[str, Any]], comparisons: Sequence[Comparison]):
    """The comparisons of ``comparisons`` with a matched validation reading worse by δ, each
    with those readings."""
    found = []
    for c in _trained(readings, comparisons):
        worse = [r for r in _matched_validation(readings, c) if worse_by_delta(r)]
        if worse:
            found.append((c, worse))
    return found


#: A match below this share of SGD's final training loss lies where SGD at h never trained.
FAR_BELOW = 0.1


def where_read(r: Mapping[str, Any], sgd_final: float | None) -> str:
    """Where a matched reading was read, and on how many seeds: the training loss (also as a
    multiple of SGD's final, and said so where SGD never trained that far), the pairs, and the
    pairs a diverged run took away (the reading rests on the seeds that survived)."""
    where = f"matched at training loss {r['target']:.3g}"
    if sgd_final:
        where += f", {r['target'] / sgd_final:.3g} × SGD's final"
        if r["target"] < FAR_BELOW * sgd_final:
            where += ": both runs trained far past where SGD at h ended"
    where += f"; {r['pairs']} pairs"
    if r["excluded"]:
        where += f", {r['excluded']} left out by a diverged run"
    return where


def deciding_clause(
    readings: Sequence[Mapping[str, Any]],
    comparisons: Sequence[Comparison],
    verdict: str,
    sgd_final: float | None = None,
) -> str:
    """Which comparisons carried a column's verdict, with their effects (and, for a supported
    one, where and on how many seeds its readings were read)."""
    trained = _trained(readings, comparisons)
    if verdict == "supported":
        worse = [
            f"{c.short} ({where_read(rs[0], sgd_final)}): "
            + ", ".join(f"{METRIC_NAMES[r['metric']]} {effect(r)}" for r in rs)
            for c, rs in _supporting(readings, comparisons)
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


def step_size_clause(readings: Sequence[Mapping[str, Any]]) -> str:
    """The step-size comparisons at matched training loss, descriptive: each one's effects."""
    parts = []
    for c in _trained(readings, STEP_SIZE):
        if _no_pairs(readings, c):
            parts.append(f"{c.short} (no pairs)")
            continue
        parts.append(
            f"{c.short}: "
            + ", ".join(
                f"{METRIC_NAMES[r['metric']]} {effect(r)}" for r in _matched_validation(readings, c)
            )
        )
    return "; ".join(parts) + "."


def holm_clause(
    readings: Sequence[Mapping[str, Any]], column: str, corrected: str, uncorrected: str
) -> str:
    """Where Holm's correction changed a column's verdict: the readings the uncorrected verdict
    rested on, what they say at 95 % and what they say corrected."""
    comparisons = _trained(readings, VERDICT_COLUMNS[column])
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
                forced = row["forced acceptances"]
                text += f"; {forced} forced acceptance{'' if forced == 1 else 's'}"
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


def _ended_worse_after_training_further(
    readings: Sequence[Mapping[str, Any]], comparisons: Sequence[Comparison]
) -> list[Comparison]:
    """The comparisons whose method ended training with its validation worse (uncorrected)
    and its training loss resolved lower than its control's: it trained further."""
    found = []
    for c in comparisons:
        if _no_pairs(readings, c):
            continue
        validation = [_find(readings, c, "end", m) for m in ("val_loss", "val_accuracy")]
        worse = any(
            worse_by_delta(r, "uncorrected") or worse_size_open(r, "uncorrected")
            for r in validation
        )
        if worse and trained_further(readings, c):
            found.append(c)
    return found


def _by_match(
    readings: Sequence[Mapping[str, Any]], comparisons: Sequence[Comparison]
) -> dict[str, list[Comparison]]:
    """The comparisons grouped by what their corrected validation readings at matched training
    loss say: "worse" (one worse by at least δ), "excluded" (each within δ or better) or
    "open" (neither)."""
    groups: dict[str, list[Comparison]] = {"worse": [], "excluded": [], "open": []}
    for c in comparisons:
        matched = _matched_validation(readings, c)
        if any(worse_by_delta(r) for r in matched):
            groups["worse"].append(c)
        elif all(harm_excluded(r) for r in matched):
            groups["excluded"].append(c)
        else:
            groups["open"].append(c)
    return groups


def _after_training_further(comparisons: Sequence[Comparison], said: str) -> str:
    """Methods that ended worse after training further, and what the same training loss says
    of them (``said``: a key of :func:`_by_match`)."""
    one = len(comparisons) == 1
    names = " and ".join(short_label(c.method) for c in comparisons)
    ends = f"{names} {'ends' if one else 'end'} worse than SGD (uncorrected) after training further"
    its, it = ("its", "it") if one else ("their", "they")
    if said == "excluded":
        return (
            f"{ends}, yet matched with SGD at the same training loss {its} corrected validation "
            f"readings are within δ or better: that end difference is how far {it} trained, not "
            "a worse fit by δ."
        )
    if said == "open":
        return (
            f"{ends}; matched with SGD at the same training loss, {its} corrected readings "
            "neither show a worse fit by δ nor exclude one, so that end difference alone does not "
            "show a worse fit."
        )
    reads = "still reads" if one else "still read"
    return (
        f"{ends}, and matched with SGD at the same training loss {it} {reads} worse by at least "
        "δ (corrected)."
    )


def reading_clause(row: Mapping[str, str], readings: Sequence[Mapping[str, Any]]) -> str:
    """What the verdict and the end of training say together, where they say something more than
    each alone (an empty string otherwise)."""
    sentences = []
    stated = _trained(readings, AS_STATED)
    end = row[END_COLUMN]
    if stated and all(_no_pairs(readings, c) for c in stated):
        sentences.append(
            "The adaptive optimizers failed outright here: no pair with SGD is left to read."
        )
    elif end.startswith("worse") and end.endswith("after training further"):
        further = _ended_worse_after_training_further(readings, stated)
        sentences += [
            _after_training_further(group, said)
            for said, group in _by_match(readings, further).items()
            if group
        ]
    if row["as stated"] == "supported" and row["from the order"] != "supported":
        sentence = f"The order alone does not carry it (from the order: {row['from the order']})"
        if row[STEP_SIZE_COLUMN].startswith("worse by ≥ δ"):
            sentence += "; SGD given the adaptive steps reads worse by δ too (descriptive)"
        sentences.append(sentence + ".")
    return " ".join(sentences)


def harness_clause(name: str, readings: Sequence[Mapping[str, Any]]) -> str:
    """A harness check in words: its outcome, how many of its corrected readings are smaller
    than δ, the largest difference in units of δ, and the effects."""
    row = harness_row(name, readings)
    largest = row["largest |mean| / δ"]
    text = (
        f"**Harness check: {row['harness check']}** (not evidence about the claim). "
        f"{row['readings < δ, corrected']} of {row['readings']} order-only validation readings at "
        "matched training loss are smaller than δ after Holm's correction"
        + (f"; the largest mean difference is {largest:.2g} δ" if largest is not None else "")
        + ". "
    )
    text += "; ".join(matched_clause(readings, c, None) for c in _trained(readings, ORDER_ONLY))
    return text + "."


def regime_evidence(result: Any, key: str) -> list[str]:
    """The evidence for one regime's verdicts (or harness check), as markdown bullet texts
    (without the dash)."""
    readings = [r for r in study_readings(result) if r["regime"] == key]
    regime = result.values["regimes"][key]
    lines = [f"**Trained**: {trained_clause(result, key)}"]
    if regime.get("harness_check"):
        lines.append(harness_clause(regime["name"], readings))
        lines.append(
            "**At the end** (equal epochs, uncorrected, descriptive): "
            + "; ".join(end_clause(readings, c) for c in _trained(readings, ORDER_ONLY))
            + "."
        )
        lines.append("**Failures**: " + failures_clause(result, key, readings))
        return lines
    row = verdict_row(regime["name"], readings)
    stated = _trained(readings, AS_STATED)
    if stated:
        sgd_final = regime["sgd_final_train_loss"]
        lines.append(
            f"**As stated: {row['as stated']}** ({row['as stated, uncorrected']} uncorrected). "
            + "; ".join(matched_clause(readings, c, sgd_final) for c in stated)
            + "."
        )
    if _trained(readings, ORDER_ONLY):
        lines.append(
            f"**From the order: {row['from the order']}** "
            f"({row['from the order, uncorrected']} uncorrected). "
            + deciding_clause(
                readings, ORDER_ONLY, row["from the order"], regime["sgd_final_train_loss"]
            )
        )
    for column in VERDICT_COLUMNS:
        if row[column] != row[f"{column}, uncorrected"]:
            lines.append(
                "**Holm's correction**: "
                + holm_clause(readings, column, row[column], row[f"{column}, uncorrected"])
            )
    if _trained(readings, STEP_SIZE):
        lines.append(
            f"**From the step size** (uncorrected, descriptive): {row[STEP_SIZE_COLUMN]}. "
            + step_size_clause(readings)
        )
    if stated:
        lines.append(
            f"**At the end** (equal epochs, uncorrected, descriptive): {row[END_COLUMN]}. "
            + "; ".join(end_clause(readings, c) for c in stated)
            + "."
        )
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
    """The verdict table of the file, as markdown (each verdict corrected and, in brackets where
    it differs, uncorrected; the descriptive columns as they are), then each harness check on a
    line of its own: a check of the harness, not a row of the claim's verdicts."""
    rows = result.table("verdicts").records()
    headers = ["regime", *VERDICT_COLUMNS, STEP_SIZE_COLUMN, END_COLUMN]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        cells = [row["regime"]]
        for column in VERDICT_COLUMNS:
            uncorrected = row[f"{column}, uncorrected"]
            cells.append(
                f"**{row[column]}**"
                + (f" (uncorrected: {uncorrected})" if uncorrected != row[column] else "")
            )
        cells += [row[STEP_SIZE_COLUMN], row[END_COLUMN]]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    for row in result.table("harness").records():
        largest = row["largest |mean| / δ"]
        text += (
            f"\nHarness check ({row['regime']}, not evidence about the claim): "
            f"**{row['harness check']}**: {row['readings < δ, corrected']} of {row['readings']} "
            "order-only validation readings at matched training loss are smaller than δ after "
            "Holm's correction"
            + (f" (the largest mean difference: {largest:.2g} δ)" if largest is not None else "")
            + ".\n"
        )
    return text


def regime_line(result: Any, key: str) -> str:
    """One regime in a line: how far SGD trained, how many runs diverged, and what carried each
    verdict (the full evidence: :func:`regime_evidence`)."""
    readings = [r for r in study_readings(result) if r["regime"] == key]
    regime = result.values["regimes"][key]
    aim = regime.get("aim")
    trained = f"SGD's final training loss {regime['sgd_final_train_loss']:.2g}"
    if aim is not None:
        reached = regime["sgd_final_train_loss"] <= aim
        trained += f" (aim {aim:g}: {'reached' if reached else 'not reached'})"
    trained += f"; {regime['diverged_runs']} of {regime['runs']} runs diverged"
    row = verdict_row(regime["name"], readings)
    parts = []
    for column, comparisons in VERDICT_COLUMNS.items():
        trained_here = _trained(readings, comparisons)
        if not trained_here:
            continue
        name = column if parts else column[0].upper() + column[1:]
        carried = _carried(readings, trained_here, row[column], regime["sgd_final_train_loss"])
        parts.append(f"{name}: **{row[column]}**, " + carried)
    return f"*{regime['name']}*: {trained}. " + "; ".join(parts) + "."


def _carried(
    readings: Sequence[Mapping[str, Any]],
    comparisons: Sequence[Comparison],
    said: str,
    sgd_final: float | None = None,
) -> str:
    """In a few words, what carried a verdict (for a supported one, where it was read)."""
    if said == "supported":
        worse = [
            f"{c.short} ({where_read(rs[0], sgd_final)})"
            for c, rs in _supporting(readings, comparisons)
        ]
        return "worse by ≥ δ in " + ", ".join(worse)
    excluded = [
        c for c in comparisons if all(harm_excluded(r) for r in _matched_validation(readings, c))
    ]
    empty = sum(_no_pairs(readings, c) for c in comparisons)
    lonely = sum(_pairs(readings, c) == 1 for c in comparisons)
    flags = [f"{empty} without pairs"] if empty else []
    flags += [f"{lonely} with one pair"] if lonely else []
    text = f"harm excluded in {len(excluded)} of {len(comparisons)} comparisons"
    return text + (f" ({', '.join(flags)})" if flags else "")


def family_sentence(result: Any) -> str:
    """Holm's family in numbers: its readings and statements, those left out, the descriptive
    rest, and what the correction changed."""
    f = result.values["family"]
    text = (
        f"{f['readings']} readings in all. Holm's family, fixed by the rule: the {f['members']} "
        "validation readings at matched training loss of the verdicts' comparisons (and of the "
        "harness check)"
    )
    if f["one pair"] + f["no pairs"]:
        text += (
            f"; {f['no pairs']} of them have no pairs and {f['one pair']} one pair, so no "
            f"interval: they make no statement and drop out. The other {f['in family']} make"
        )
    else:
        text += ". They make"
    text += (
        f" {f['statements']} statements, corrected together; {f['uncorrected']} of those "
        f"readings resolve a direction at 95 % uncorrected, {f['corrected']} after Holm's "
        f"correction, and {f['changed']} say something else after it. The "
        f"{f['descriptive']} readings outside the family (the step-size comparisons, the end of "
        "training) are descriptive: uncorrected, never in a verdict."
    )
    return text


def step_share_table(result: Any) -> Table:
    """Per regime, what a higher order drops from SGD's step (‖Heun − SGD‖/‖SGD‖ on SGD's own
    mini-batches at its final weights) and how the order-only comparisons' mean mini-batch
    ‖∇L_k‖² moved: counts of readings higher, lower, not resolved at 95 % (uncorrected,
    descriptive), and of those with too few pairs."""
    columns = [("regime", ""), ("step share", ".0%"), ("lowest", ".0%"), ("highest", ".0%")]
    columns += [("Δ‖∇L_k‖², order only, uncorrected: higher", ""), ("lower", "")]
    columns += [("not resolved", ""), ("too few pairs", "")]
    rows = []
    for key in result.values["order"]:
        regime = result.values["regimes"][key]
        low, high = regime["implicit_regularisation"]["step_correction_range"] or (None, None)
        counts = _gradient_counts(regime)
        rows.append([regime["short"], regime["implicit_regularisation"]["step_correction"]])
        rows[-1] += [low, high, *counts.values()]
    return Table(columns, rows)


def _gradient_counts(regime: Mapping[str, Any]) -> dict[str, int]:
    said = [
        e["reading"] for e in regime["implicit_regularisation"]["batch_gradient_effects"].values()
    ]
    return {
        "higher": sum(s == "higher" for s in said),
        "lower": sum(s == "lower" for s in said),
        "not resolved": sum(s == "not resolved" for s in said),
        "too few pairs": sum(s == TOO_FEW for s in said),
    }


def step_share_sentence(result: Any) -> str:
    """What the step-share table shows, in words that are true whatever the file holds."""
    regimes = [result.values["regimes"][key] for key in result.values["order"]]
    shares = [
        (r["short"], r["implicit_regularisation"]["step_correction"])
        for r in regimes
        if r["implicit_regularisation"]["step_correction"] is not None
    ]
    totals = dict.fromkeys(("higher", "lower", "not resolved", "too few pairs"), 0)
    for r in regimes:
        for name, count in _gradient_counts(r).items():
            totals[name] += count
    low, high = min(shares, key=lambda x: x[1]), max(shares, key=lambda x: x[1])
    text = (
        f"A second-order (Heun) step drops from {low[1]:.0%} ({low[0]}) to {high[1]:.0%} "
        f"({high[0]}) of SGD's step. Of the order-only readings of the mean batch gradient "
        f"‖∇L_k‖² with an interval, {totals['higher']} are resolved higher at 95 % "
        f"(uncorrected, descriptive), {totals['lower']} lower and {totals['not resolved']} "
        "not resolved"
    )
    if totals["too few pairs"]:
        text += f"; {totals['too few pairs']} have too few pairs"
    resolved = totals["higher"] + totals["lower"]
    if resolved and not totals["lower"]:
        text += ". Every resolved one has the sign section 7 predicts (larger batch gradients)"
    elif resolved and not totals["higher"]:
        text += ". Every resolved one has the sign opposite to section 7's prediction"
    elif resolved:
        text += ". The resolved ones go both ways"
    return text + "."
