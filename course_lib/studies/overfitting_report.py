"""The overfitting study's result file, page and figures, built from its runs.

``benchmarks/overfitting.py`` trains every regime of :mod:`course_lib.studies.regimes` and hands
the runs here: :func:`build_result` turns them into the tables and values of
``docs/results/overfitting.json`` (raw numbers only: notebook 06 and ``docs/overfitting.md`` read
them, nothing is pasted), :func:`write_report` writes the file through
:class:`~course_lib.studies.results.BenchmarkRun`, the page and its three figures.
"""

from __future__ import annotations

from course_lib.studies.overfitting import RunRecord
from course_lib.studies.readings import diverged_table, rows_table, stability_table, study_rows
from course_lib.studies.regimes import (
    END_COLUMN,
    MEANINGFUL_ACCURACY,
    Regime,
    correct,
    curves,
    describe,
    family_counts,
    harness_table,
    meaningful_effect,
    readings_table,
    regime_readings,
    regimes,
    verdict_rows,
    verdict_table,
)
from course_lib.studies.results import Table
from course_lib.studies.statistics import PairedTest, direction

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: How the page names a Keras backend.
BACKEND_NAMES = {"jax": "JAX", "tensorflow": "TensorFlow"}


def _sgd_mean(records: Sequence[RunRecord], quantity) -> float | None:
    values = [quantity(r) for r in records if r.method == "SGD" and not r.diverged()]
    return float(np.mean(values)) if values else None


def implicit_regularisation(records: Sequence[RunRecord], learning_rate: float) -> dict[str, Any]:
    """What implicit gradient regularisation is about, for SGD after its last epoch (means),
    and the order comparisons' paired differences of the mean mini-batch ‖∇L_k‖² (read at 95 %,
    uncorrected: descriptive)."""
    from course_lib.studies.overfitting import COMPARISONS

    by_key = {(r.method, r.seed): r for r in records}
    effects = {}
    for c in COMPARISONS:
        if c.differs != "order" or not any(m == c.method for m, _ in by_key):
            continue
        seeds = sorted(s for m, s in by_key if m == c.method)
        pairs = [(by_key[c.method, s], by_key[c.control, s]) for s in seeds]
        differences = [
            a.batch_gradient_norm_sq - b.batch_gradient_norm_sq
            for a, b in pairs
            if not (a.diverged() or b.diverged())
        ]
        test = PairedTest.of(differences)
        effects[c.name] = {
            "mean": test.mean,
            "half_width": test.half_width(),
            "reading": direction(test),
        }
    sgd = [r for r in records if r.method == "SGD" and not r.diverged()]
    corrections = [r.step_correction for r in sgd]
    return {
        "penalty_full_batch": _sgd_mean(records, lambda r: learning_rate / 4 * r.gradient_norm_sq),
        "penalty_mini_batch": _sgd_mean(
            records, lambda r: learning_rate / 4 * r.batch_gradient_norm_sq
        ),
        "step_correction": float(np.mean(corrections)) if corrections else None,
        "step_correction_range": [min(corrections), max(corrections)] if corrections else None,
        "batch_gradient_effects": effects,
    }


def build_result(
    regime_list: Sequence[Regime],
    records: Mapping[str, Sequence[RunRecord]],
    seconds: Mapping[str, Mapping[str, float]] | None = None,
) -> tuple[dict[str, Table], dict[str, Any]]:
    """The tables and values of the result file, Holm's correction over the study's family.

    ``seconds`` holds the ``"wall"`` and ``"cpu"`` seconds of each regime's jobs.
    """
    tables: dict[str, Table] = {}
    values: dict[str, Any] = {"regimes": {}, "order": [r.key for r in regime_list]}
    readings = []
    for regime in regime_list:
        runs = list(records[regime.key])
        seeds = sorted({r.seed for r in runs})
        settings = regime.settings(seeds)
        readings += regime_readings(regime, runs)
        stability = stability_table(runs)
        tables |= {
            f"epochs_{regime.key}": rows_table(study_rows(runs, "epochs")),
            f"gradients_{regime.key}": rows_table(study_rows(runs, "gradients")),
            f"stability_{regime.key}": stability,
            f"diverged_{regime.key}": diverged_table(runs),
        }
        values["regimes"][regime.key] = {
            "name": regime.name,
            "short": regime.label,
            "question": regime.question,
            "settings": describe(settings),
            "delta_loss": meaningful_effect(runs),
            "delta_accuracy": MEANINGFUL_ACCURACY,
            "sgd_gap": _sgd_mean(runs, lambda r: r.gap()),
            "sgd_final_train_loss": _sgd_mean(runs, lambda r: r.train_loss[-1]),
            "sgd_final_val_loss": _sgd_mean(runs, lambda r: r.val_loss[-1]),
            "aim": regime.aim,
            "harness_check": regime.harness_check,
            "leaves_out": regime.leaves_out,
            "runs": len(runs),
            "diverged_runs": sum(r.diverged() for r in runs),
            "seconds": round((seconds or {}).get("wall", {}).get(regime.key, 0.0), 1),
            "cpu_seconds": round((seconds or {}).get("cpu", {}).get(regime.key, 0.0), 1),
            "implicit_regularisation": implicit_regularisation(runs, settings.learning_rate),
            "curves": curves(runs),
        }
    correct(readings)
    for regime in regime_list:
        tables[f"readings_{regime.key}"] = readings_table(
            [r for r in readings if r["regime"] == regime.key]
        )
    rows = verdict_rows(regime_list, readings)
    tables["verdicts"] = verdict_table(rows)
    tables["harness"] = harness_table(regime_list, readings)
    summary = [
        [row["regime"], row["as stated"], row["from the order"], row[END_COLUMN]] for row in rows
    ]
    headers = ["regime", "the claim as stated", "from the order", END_COLUMN]
    tables["verdict_summary"] = Table([(h, "") for h in headers], summary)
    values["family"] = family_counts(readings)
    return tables, values


def regime_names(result: Any) -> dict[str, str]:
    regimes_ = result.values["regimes"]
    return {
        key: regimes_[key].get("short", regimes_[key]["name"]) for key in result.values["order"]
    }


# --------------------------------------------------------------------------------------------
# Figures and the page
# --------------------------------------------------------------------------------------------


def curve_note(regime: Mapping[str, Any]) -> str:
    """What a regime's curves leave out: diverged runs, and methods with no run left to draw."""
    from course_lib.studies.overfitting import short_label

    if not regime["diverged_runs"]:
        return "every run drawn"
    methods = regime["curves"]["methods"]
    seeds = len(regime["settings"]["seeds"])
    gone = [short_label(m) for m, e in methods.items() if not e["runs"]]
    thinned = [f"{short_label(m)} {e['runs']}" for m, e in methods.items() if 0 < e["runs"] < seeds]
    note = f"{regime['diverged_runs']} of {regime['runs']} runs diverged, left out"
    note += f"; of {seeds} runs, left to draw: {', '.join(thinned)}" if thinned else ""
    return note + (f"; no line for {', '.join(gone)}" if gone else "")


#: The width of the curves figure, in inches: shown at about 10 inches, its text stays 9 points.
CURVES_WIDTH = 10.0


def draw_curves(result: Any, keys: Sequence[str] | None = None) -> Any:
    """Per regime (``keys``, by default every one), a row: training loss, validation loss (each on
    its own axis, so that a training loss driven to 1e-16 does not flatten validation) and
    validation accuracy, under the regime's name and what its curves leave out. Notebook 06
    draws one regime a figure: a short figure is quick to render and to audit."""
    from course_lib.studies.overfitting_plots import curve_legend, plot_curves

    import matplotlib.pyplot as plt

    keys = list(result.values["order"] if keys is None else keys)
    figure = plt.figure(figsize=(CURVES_WIDTH, 2.9 * len(keys) + 1.4), layout="constrained")
    cells = figure.subfigures(len(keys), 1, squeeze=False).ravel()
    methods: list[str] = []
    for cell, key in zip(cells, keys, strict=True):
        regime = result.values["regimes"][key]
        ax_train, ax_validation, ax_accuracy = cell.subplots(1, 3)
        plot_curves(
            regime["curves"], ax_train, ax_accuracy, "training loss", ax_validation=ax_validation
        )
        ax_accuracy.set_title("validation accuracy", fontsize=10)
        note = textwrap.fill(f"({curve_note(regime)})", 110)
        cell.suptitle(f"{regime['name']}\n{note}", fontsize=10)
        methods += [m for m in regime["curves"]["methods"] if m not in methods]
    curve_legend(figure, methods)
    return figure


def draw_forest(result: Any, point: str = "matched") -> Any:
    """The forest plot of the file's readings at ``point`` ("matched" or "end")."""
    from course_lib.studies.overfitting_evidence import study_readings
    from course_lib.studies.overfitting_plots import forest_plot

    return forest_plot(study_readings(result), regime_names(result), point)


def _settings_line(regime: Mapping[str, Any]) -> str:
    s = regime["settings"]
    noise = f", {s['label_noise']:.0%} of training labels flipped" if s["label_noise"] else ""
    return (
        f"h = {s['learning_rate']}, batch {s['batch_size']}, rtol {s['rtol']:g}{noise}, "
        f"{s['epochs']} epochs, seeds 0–{max(s['seeds'])}; δ = {regime['delta_loss']:.4f} for a "
        f"loss (a tenth of SGD's final validation loss; its gap is {regime['sgd_gap']:.3f}), "
        f"{regime['delta_accuracy']} "
        f"for an accuracy; SGD's final training loss {regime['sgd_final_train_loss']:.2g}; "
        f"{regime['diverged_runs']} of {regime['runs']} runs diverged."
    )


def controller_sentence(values: Mapping[str, Any]) -> str:
    """The adaptive controller the study ran, from the settings in the file and the library's
    :class:`~course_lib.adaptive.AdaptiveStepSize` (its other settings are its defaults)."""
    from course_lib.adaptive import AdaptiveStepSize

    import dataclasses

    settings = [values["regimes"][key]["settings"] for key in values["order"]]
    atol = sorted({s["atol"] for s in settings})
    rtol = sorted({s["rtol"] for s in settings})
    controller = AdaptiveStepSize(rtol=rtol[0], atol=atol[0], on_failure="accept")
    names = {f.name for f in dataclasses.fields(AdaptiveStepSize)}
    largest = (
        f"a largest step of {controller.max_step:g}" if "max_step" in names else "no largest step"
    )
    return (
        "The adaptive controller (notebook 05's, after SciPy's) starts at h with atol "
        + ", ".join(f"{a:g}" for a in atol)
        + " and rtol "
        + ", ".join(f"{r:g}" for r in rtol)
        + f" (by regime), safety factor {controller.safety:g}, a step that changes by a factor "
        f"between {controller.min_factor:g} and {controller.max_factor:g} per step, "
        f"{largest}, and at most {controller.max_rejections} retries before it applies the "
        "last try anyway (a forced acceptance, counted)."
    )


def methods_sentence(values: Mapping[str, Any]) -> str:
    """Which methods the regimes train, from the settings in the file: what every regime
    trains, what some leave out and why, and which runs two regimes share."""
    from course_lib.studies.overfitting import CLAIM_METHODS, short_label

    regimes_ = [values["regimes"][key] for key in values["order"]]
    full = [r for r in regimes_ if set(r["settings"]["methods"]) >= set(CLAIM_METHODS)]
    text = (
        f"{len(full)} of the {len(regimes_)} regimes train SGD, the fixed-step twins of RK23 "
        "(Bogacki–Shampine) and RK45 (Dormand–Prince) at SGD's step h, the two adaptive "
        "optimizers, and SGD replaying each adaptive run's accepted steps, from the same weights "
        "and batch order per seed"
    )
    partial = [r for r in regimes_ if r not in full]
    for r in partial:
        trains = ", ".join(short_label(m) for m in r["settings"]["methods"])
        why = f" (it leaves out {r['leaves_out']})" if r.get("leaves_out") else ""
        text += f"; *{r['name']}* trains {trains}{why}"
    text += "."
    groups: dict[str, list[str]] = {}
    for r in regimes_:
        rest = {k: v for k, v in r["settings"].items() if k != "rtol"}
        groups.setdefault(repr(sorted(rest.items())), []).append(r["name"])
    for names in groups.values():
        if len(names) > 1:
            text += (
                f" *{'* and *'.join(names)}* differ only in rtol, which SGD and the fixed-step "
                "twins do not use: those runs, and the readings that compare only them, are the "
                "same in both."
            )
    return text


#: The rule, as docs/overfitting.md states it before its numbers (notebook 06, section 1).
RULE = (
    '**The rule** (notebook 06 states it before any number). "Overfits" means a fit to the '
    "training set that generalises worse, so the verdict reads each comparison method − control "
    "at **matched training loss**: both runs of a seed where their training loss first reaches "
    "the same value, the lowest that every kept run of the comparison reached (the *matched at* "
    "column). δ is a tenth of SGD's final validation loss for a loss, {accuracy} for an "
    "accuracy. A reading with at least two pairs makes three statements (not 0; inside ±δ; "
    "beyond ±δ), each a test whose p-value is the smallest α at which the (1 − α) t interval "
    "makes it. **Holm's family is fixed by the rule**: the statements of the readings a verdict "
    "reads, the validation loss and accuracy at matched training loss of every comparison of "
    "*as stated* and *from the order* in every regime (and of the sanity regime's harness "
    "check); Holm's procedure keeps the chance of any false one at 5 %. A reading of the family "
    "with fewer than two pairs has no interval, makes no statement and drops out. *Supported*: "
    "a comparison reads validation (loss or accuracy) worse by at least δ at matched training "
    "loss, corrected. *Refuted*: every comparison's matched validation readings are smaller "
    "than δ or resolved better, corrected. *Undecided*: otherwise (a reading leaves its size "
    "not resolved, or a comparison has no pairs left). *Not tested*: the regime trains none of "
    "the column's comparisons. *As stated* reads the adaptive optimizers against SGD at the same "
    "h; *from the order*, the comparisons that change only the order (adaptive − SGD at its "
    "steps; fixed-step twin − SGD). **Every other reading is descriptive**: read at 95 %, "
    "uncorrected, labelled so, never in a verdict: the step-size comparisons (SGD at the "
    "adaptive steps − SGD, where a naive effect comes from), the end of training (equal epochs: "
    "a method that has trained further ends with a lower training loss and, past its best epoch, "
    "a worse validation loss, whether or not it fits any worse) and the gradient measurements; "
    "equal gradient evaluations are shown as means and standard deviations, not read. The sanity "
    "regime checks the harness (every order effect smaller than δ, corrected) and is shown apart "
    "from the claim's verdicts. Pairs with a diverged run (training loss above ln 10 or not "
    "finite) are left out and counted."
)


def forest_caption(limit: float) -> str:
    """What the forest plots show and how to read their marks (notebook 06 says it in its own
    words, shorter)."""
    return (
        "Each difference is divided by its δ, so the grey band is ±δ in every panel. Harm lies "
        "to the right in the validation-loss panels and to the left in the accuracy panels; in "
        "the training-loss panel, left means the method trained further. A bar is the "
        "uncorrected 95 % interval. A reading of Holm's family has a dot, filled when it "
        "resolves a direction after the correction, hollow when it does not; a descriptive "
        "reading (the step-size rows, SGD at … − SGD, and every reading at the end) has a "
        "vertical tick; a cross is a reading with one pair (no interval). A mean beyond "
        f"±{limit:g} δ is drawn at the edge as a large triangle pointing out (filled as its dot "
        "would be), with its value in units of δ; every other end of an interval beyond the edge "
        "is a small triangle. Comparisons without a single pair are listed under the plot, not "
        "drawn."
    )


def markdown(result: Any) -> str:
    """docs/overfitting.md from a loaded result file: the rule, the verdict table (a marked
    block), the harness check, the evidence regime by regime, and a marked block for every other
    table."""
    from course_lib.studies.overfitting_evidence import evidence_markdown, family_sentence
    from course_lib.studies.overfitting_plots import FOREST_LIMIT

    values, command = result.values, result.command
    text = ["# Do Runge–Kutta optimizers overfit? (measured, regime by regime)", ""]
    if values["provisional"]:
        text += [
            "> **Provisional result** from a reduced configuration (`" + command + "`): fewer "
            "seeds and shorter budgets than the study. `python benchmarks/overfitting.py` "
            "replaces it.",
            "",
        ]
    text += [
        f"Produced by `{command}` on Keras's {BACKEND_NAMES[values['backend']]} backend. Digits: "
        "the first 512 training images, the usual 449 for validation; an MLP 64-128-10 (ReLU) "
        "in float64. " + methods_sentence(values) + " " + controller_sentence(values),
        "",
        RULE.format(accuracy=MEANINGFUL_ACCURACY),
        "",
        "## Verdicts",
        "",
        "<!-- result: overfitting verdicts -->",
        "<!-- /result -->",
        "",
        "**The harness check** (the sanity regime: a check of the harness, not evidence about "
        "the claim; *passed* when every order-only validation reading at matched training loss "
        "is smaller than δ after the correction, *failed* when one is at least δ, "
        "*inconclusive* otherwise):",
        "",
        "<!-- result: overfitting harness -->",
        "<!-- /result -->",
        "",
        family_sentence(result),
        "",
        "![paired differences at matched training loss in units of δ, one row per regime and "
        "comparison: the verdicts' and the harness check's readings (Holm's family) and the "
        "step-size rows (descriptive)](overfitting.png)",
        "",
        "![paired differences at the end of training in units of δ: descriptive, uncorrected]"
        "(overfitting_end.png)",
        "",
        "The forest plots. " + forest_caption(FOREST_LIMIT),
        "",
        "![training loss, validation loss and validation accuracy, per regime]"
        "(overfitting_curves.png)",
        "",
        "## The evidence, regime by regime",
        "",
        evidence_markdown(result, level=3),
    ]
    for key in values["order"]:
        regime = values["regimes"][key]
        text += [
            f"## {regime['name'][0].upper()}{regime['name'][1:]}: the tables",
            "",
            f"{regime['question'][0].upper()}{regime['question'][1:]} {_settings_line(regime)}",
            "",
        ]
        for table, caption in (
            ("epochs", "**Equal epochs** (mean and sd over the runs that did not diverge)"),
            (
                "gradients",
                "**Equal gradient evaluations** (each run at its last epoch within SGD's "
                "budget; *not reached*: its first epoch alone costs more)",
            ),
            (
                "readings",
                "**Readings** (method − control, paired by seed; *role*: Holm's family, no "
                "interval (a member with fewer than two pairs) or descriptive, which has no Holm "
                "p-values and no corrected reading)",
            ),
            ("stability", "**Failures** (largest rise: above the run's lowest earlier loss)"),
            ("diverged", "**Diverged runs**"),
        ):
            text += [
                caption,
                "",
                f"<!-- result: overfitting {table}_{key} -->",
                "<!-- /result -->",
                "",
            ]
    cpu = sum(values["regimes"][key]["cpu_seconds"] for key in values["order"])
    text.append(
        f"Run time: {values['seconds']:.0f} s ({values['workers']} worker processes, "
        f"{cpu:.0f} s of CPU time in them) on "
        f"{values['machine']}; load average {values['load_average_before']} before, "
        f"{values['load_average_after']} after."
    )
    return "\n".join(text) + "\n"


def write_report(
    run: Any,
    records: Mapping[str, Sequence[RunRecord]],
    seconds: Mapping[str, Mapping[str, float]],
    *,
    scale: str,
    backend: str,
    out: Path,
    workers: int,
) -> None:
    """The result file (through ``run``), docs/overfitting.md and its three figures under ``out``;
    when ``out`` is docs/, README's block of verdicts too."""
    from course_lib.studies.results import machine

    regime_list = regimes(scale)
    tables, values = build_result(regime_list, records, seconds)
    values |= {"scale": scale, "provisional": scale != "full", "backend": backend}
    values |= {"workers": workers, "machine": machine()}
    out.mkdir(parents=True, exist_ok=True)
    run.docs = []  # the page is written from the final values, below
    run.write(tables, values)
    render(out, run.directory)


def render(out: Path, directory: Path) -> None:
    """docs/overfitting.md, its figures (and README's block of verdicts when ``out`` is docs/)
    from the result file in ``directory``: no training, so a change of wording or of a figure
    needs no new run."""
    from course_lib.studies.results import DOCS_DIR, ROOT, load_result, update_docs

    import matplotlib.pyplot as plt

    result = load_result("overfitting", directory)
    page = out / "overfitting.md"
    page.write_text(markdown(result))
    pages = [page] + ([ROOT / "README.md"] if out.resolve() == DOCS_DIR.resolve() else [])
    update_docs(["overfitting"], paths=pages, directory=directory)
    drawings = {
        "overfitting.png": lambda result: draw_forest(result, "matched"),
        "overfitting_end.png": lambda result: draw_forest(result, "end"),
        "overfitting_curves.png": draw_curves,
    }
    for name, draw in drawings.items():
        figure = draw(result)
        figure.savefig(out / name, dpi=80)
        plt.close(figure)
