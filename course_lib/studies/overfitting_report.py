"""The overfitting study's result file, page and figures, built from its runs.

``benchmarks/overfitting.py`` trains every regime of :mod:`course_lib.studies.regimes` and hands
the runs here: :func:`build_result` turns them into the tables and values of
``docs/results/overfitting.json`` (raw numbers only: notebook 06 and ``docs/overfitting.md`` read
them, nothing is pasted), :func:`write_report` writes the file through
:class:`~course_lib.studies.results.BenchmarkRun`, the page and its two figures.
"""

from __future__ import annotations

from course_lib.studies.overfitting import RunRecord
from course_lib.studies.readings import diverged_table, rows_table, stability_table, study_rows
from course_lib.studies.regimes import (
    LONG_TARGET,
    MEANINGFUL_ACCURACY,
    Regime,
    correct,
    curves,
    describe,
    meaningful_effect,
    readings_table,
    regime_readings,
    regimes,
    significant,
    verdict_rows,
    verdict_table,
)
from course_lib.studies.results import Table
from course_lib.studies.statistics import PairedTest, classify

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
    and the order comparisons' paired differences of the mean mini-batch ‖∇L_k‖²."""
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
        half = test.half_width()
        effects[c.name] = {
            "mean": test.mean,
            "half_width": half,
            "reading": classify(test.mean, half),
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
    """The tables and values of the result file, Holm's correction over the whole study.

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
    summary = [[row["regime"], row["as stated"], row["from the order"]] for row in rows]
    tables["verdict_summary"] = Table(
        [("regime", ""), ("the claim as stated", ""), ("from the order", "")], summary
    )
    values["family"] = significant(readings)
    values["long_target"] = LONG_TARGET
    return tables, values


def readings_records(result: Any) -> list[dict[str, Any]]:
    """Every reading of a loaded result, each with its ``regime`` key (for the forest plot)."""
    rows = []
    for key in result.values["order"]:
        for row in result.table(f"readings_{key}").records():
            rows.append({**row, "regime": key})
    return rows


def regime_names(result: Any) -> dict[str, str]:
    regimes_ = result.values["regimes"]
    return {
        key: regimes_[key].get("short", regimes_[key]["name"]) for key in result.values["order"]
    }


# --------------------------------------------------------------------------------------------
# Figures and the page
# --------------------------------------------------------------------------------------------


def draw_curves(result: Any) -> Any:
    """Per regime, training and validation loss beside validation accuracy; two regimes a row."""
    from course_lib.studies.overfitting_plots import curve_legend, plot_curves

    import matplotlib.pyplot as plt

    keys = result.values["order"]
    rows = (len(keys) + 1) // 2
    figure, axes = plt.subplots(rows, 4, figsize=(13, 2.7 * rows + 0.6), squeeze=False)
    methods: list[str] = []
    for index, key in enumerate(keys):
        regime = result.values["regimes"][key]
        ax_loss, ax_accuracy = axes[index // 2, 2 * (index % 2) : 2 * (index % 2) + 2]
        left_out = regime["diverged_runs"]
        note = f"\n({left_out} diverged runs not drawn)" if left_out else ""
        plot_curves(regime["curves"], ax_loss, ax_accuracy, title=regime["name"] + note)
        ax_accuracy.set_title(f"{regime['name']}: validation accuracy{note}", fontsize=9)
        methods += [m for m in regime["curves"]["methods"] if m not in methods]
    for ax in axes.ravel()[2 * len(keys) :]:
        ax.axis("off")
    curve_legend(figure, methods)
    figure.tight_layout(rect=(0, 0.6 / (2.7 * rows + 0.6), 1, 1))
    return figure


def draw_forest(result: Any) -> Any:
    from course_lib.studies.overfitting_plots import forest_plot

    return forest_plot(readings_records(result), regime_names(result))


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


def markdown(values: Mapping[str, Any], command: str, provisional: bool) -> str:
    """docs/overfitting.md, with a marked block for every table of the result file."""
    family = values["family"]
    text = ["# Do Runge–Kutta optimizers overfit? (measured, regime by regime)", ""]
    if provisional:
        text += [
            "> **Provisional result** from a reduced configuration (`" + command + "`): fewer "
            "seeds and shorter budgets than the study. `python benchmarks/overfitting.py` "
            "replaces it.",
            "",
        ]
    text += [
        f"Produced by `{command}` on Keras's {BACKEND_NAMES[values['backend']]} backend. Digits: "
        "the first 512 "
        "training images, the usual 449 for validation; an MLP 64-128-10 (ReLU) in float64. "
        "Every regime trains SGD, the fixed-step twins of RK23 (Bogacki–Shampine) and RK45 "
        "(Dormand–Prince) at SGD's step h, the two adaptive optimizers (controller started at "
        "h, atol 1e-4), and SGD replaying each adaptive run's accepted steps, from the same "
        "weights and batch order per seed (the tolerance regimes leave out the fixed-step twins, "
        "the sanity regime the adaptive optimizers).",
        "",
        "**The rule** (notebook 06 states it before any number). Each comparison method − "
        "control is read at the end of training (training loss, validation loss and accuracy) "
        "and at matched training loss (validation loss and accuracy, each run read when its "
        "training loss first reaches the highest final training loss of the two methods' "
        "runs). δ is a tenth of SGD's final validation loss for a loss, "
        f"{MEANINGFUL_ACCURACY} for an accuracy. Each reading makes up to three statements "
        "(not 0; inside ±δ; beyond ±δ), each a test whose p-value is the smallest α at which "
        "the (1 − α) t interval makes it. All statements of the study form one family: Holm's "
        "procedure keeps the chance of any false one at 5 %. *Supported*: a comparison shows "
        "the article's pattern (at the end, training loss lower and validation worse by at "
        "least δ; or, at matched training loss, validation worse by at least δ). *Refuted*: "
        "every comparison's validation readings are smaller than δ or resolved better. "
        "*Undecided*: otherwise. *As stated* reads the adaptive optimizers against SGD at the "
        "same h; *from the order*, the comparisons that change only the order (adaptive − SGD "
        "at its steps; fixed-step twin − SGD); *from the step size*, SGD at the adaptive steps − "
        "SGD. Pairs with a diverged run (training loss above ln 10 or not finite) are left out "
        "and counted.",
        "",
        "## Verdicts",
        "",
        "<!-- result: overfitting verdicts -->",
        "<!-- /result -->",
        "",
        f"{family['readings']} readings; {family['uncorrected']} resolve a direction at 95 % "
        f"uncorrected, {family['corrected']} after Holm's correction.",
        "",
        "![paired differences in units of δ, one row per regime and comparison; bars: "
        "uncorrected 95 % intervals; filled: resolved after Holm's correction](overfitting.png)",
        "",
        "![training (dashed) and validation (solid) loss, and validation accuracy, per regime]"
        "(overfitting_curves.png)",
        "",
    ]
    for key in values["order"]:
        regime = values["regimes"][key]
        text += [
            f"## {regime['name'][0].upper()}{regime['name'][1:]}",
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
            ("readings", "**Readings** (method − control, paired by seed)"),
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
    """The result file (through ``run``), docs/overfitting.md and its two figures under ``out``;
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
    page.write_text(markdown(result.values, result.command, result.values["provisional"]))
    pages = [page] + ([ROOT / "README.md"] if out.resolve() == DOCS_DIR.resolve() else [])
    update_docs(["overfitting"], paths=pages, directory=directory)
    for name, draw in (("overfitting.png", draw_forest), ("overfitting_curves.png", draw_curves)):
        figure = draw(result)
        figure.savefig(out / name, dpi=80)
        plt.close(figure)
