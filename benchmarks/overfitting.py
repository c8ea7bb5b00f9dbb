"""Do Runge–Kutta optimizers overfit? The full study behind notebook 06.

The seed article (Su Jianlin, "Keras之小众需求:自定义优化器", kexue.fm 2018) remarks that RK23/RK45
training steps overfit easily: very low training loss, poor validation loss and accuracy. This
script measures that on scikit-learn's digits with the study of
:mod:`course_lib.studies.overfitting`: SGD, Heun, RK4, Dormand–Prince with a fixed step,
Bogacki–Shampine (RK23) and Dormand–Prince with the adaptive controller, and SGD replaying each
adaptive run's accepted step sizes (the control that separates order from step size), from the
same weights and batch order per seed, at two step sizes h. It compares them

* at **equal epochs** (same steps: for the fixed-step methods the same time on the gradient flow),
* at **equal gradient evaluations** (every method gets the mini-batch passes SGD used), and
* **paired by seed** against each method's control, with 95 % intervals over seeds.

It writes ``docs/results/overfitting.json`` (raw numbers), ``docs/overfitting.md`` (tables
rendered from that file, and the conclusions the numbers support) and ``docs/overfitting.png``
(validation − training loss against epochs, one panel per method). Run:
``python benchmarks/overfitting.py`` (10 seeds; a few minutes on 2 idle CPU cores, about 15
minutes on a busy shared one);
``--quick`` runs 2 seeds for 4 epochs and writes nothing.
"""

from __future__ import annotations

import course_lib  # noqa: F401  (quiet TensorFlow first)

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

from course_lib.data import load_dataset  # noqa: E402
from course_lib.studies.overfitting import (  # noqa: E402
    RunRecord,
    StudySettings,
    diverged_table,
    effects_table,
    gradient_budget,
    meaningful_effect,
    paired_effects,
    plot_gaps,
    rows_table,
    run_overfitting_study,
    stability_table,
    study_rows,
    verdict,
)
from course_lib.studies.results import (  # noqa: E402
    load_average,
    machine,
    update_docs,
    write_result,
)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LEARNING_RATES = (0.3, 0.6)
#: The study's fixed settings (the notebook runs the same with fewer seeds and epochs).
EPOCHS, TRAIN_SIZE = 40, 512


def tag(learning_rate: float) -> str:
    """``h030`` for h = 0.3: the suffix of this step size's table names."""
    return f"h{round(learning_rate * 100):03d}"


def sgd_mean(records: Sequence[RunRecord], quantity) -> float:
    """The mean over SGD's runs that did not diverge of ``quantity(run)``."""
    return float(np.mean([quantity(r) for r in records if r.method == "SGD" and not r.diverged()]))


def implicit_regularisation(records: Sequence[RunRecord], learning_rate: float) -> dict[str, Any]:
    """What implicit gradient regularisation is about, for SGD after its last epoch (means).

    The full-batch penalty (h/4)·‖∇L‖² (Barrett & Dherin), the mini-batch one (h/4)·mean_k ‖∇L_k‖²
    (Smith, Dherin, Barrett & De), and the share of SGD's step a second-order method on the same
    batch does not take, ‖Heun step − SGD step‖ / ‖SGD step‖.
    """
    sgd = [r for r in records if r.method == "SGD" and not r.diverged()]
    corrections = [r.step_correction for r in sgd]
    return {
        "penalty_full_batch": sgd_mean(
            records, lambda r: learning_rate / 4 * r.gradient_norm_sq[-1]
        ),
        "penalty_mini_batch": sgd_mean(
            records, lambda r: learning_rate / 4 * r.batch_gradient_norm_sq
        ),
        "train_loss": sgd_mean(records, lambda r: r.train_loss[-1]),
        "step_correction": float(np.mean(corrections)),
        "step_correction_range": [float(min(corrections)), float(max(corrections))],
    }


def mean_accepted_steps(records: Sequence[RunRecord]) -> dict[str, float]:
    """Each adaptive method's accepted step size, averaged over steps and seeds."""
    methods = dict.fromkeys(r.method for r in records if r.forced)
    return {
        m: float(np.mean([np.mean(r.step_sizes) for r in records if r.method == m]))
        for m in methods
    }


def study_section(records: Sequence[RunRecord], learning_rate: float) -> dict[str, Any]:
    """Tables and values of one step size."""
    delta = meaningful_effect(records)
    effects = paired_effects(records)
    gradient_metrics = ("gradient_norm_sq", "batch_gradient_norm_sq")
    gradient_effects = paired_effects(records, metrics=gradient_metrics)
    key = tag(learning_rate)
    stability = stability_table(records)
    tables = {
        f"epochs_{key}": rows_table(study_rows(records, "epochs")),
        f"gradients_{key}": rows_table(study_rows(records, "gradients")),
        f"controls_{key}": effects_table(effects, delta),
        f"stability_{key}": stability,
        f"diverged_{key}": diverged_table(records),
    }
    values = {
        "learning_rate": learning_rate,
        "meaningful_effect": delta,
        "sgd_gap": sgd_mean(records, lambda r: r.gap()),
        "gradient_budget": gradient_budget(records),
        "verdict": verdict(effects, delta),
        "runs": len(records),
        "diverged_runs": sum(r.diverged() for r in records),
        "blown_up_runs": {row["method"]: row["blew up"] for row in stability.records()},
        "forced_acceptances": {
            row["method"]: row["forced acceptances"]
            for row in stability.records()
            if row["forced acceptances"] is not None
        },
        "mean_accepted_step": mean_accepted_steps(records),
        "implicit_regularisation": implicit_regularisation(records, learning_rate),
        "gradient_norm_effects": {
            f"{e['method']} − {e['control']}": {m: list(e[m]) for m in gradient_metrics}
            for e in gradient_effects
            if e["differs"] == "order"
        },
    }
    return {"tables": tables, "values": values}


def _names(methods: Sequence[str]) -> str:
    return "; ".join(methods) if methods else "none"


def conclusions(values: dict[str, Any]) -> list[str]:
    """Sentences that follow from the rule and the numbers, so the text cannot outlive them."""
    found = values["verdict"]
    delta = values["meaningful_effect"]
    lines = [
        f"- δ (a tenth of SGD's final gap {values['sgd_gap']:.3f}) = {delta:.4f}.",
    ]
    for differs in ("order", "step size", "order and step size"):
        pattern = found.get(f"{differs}: article's pattern", [])
        lines.append(
            f"- {differs}: the article's pattern (training loss lower *and* validation loss "
            f"higher, both resolved) in {_names(pattern)}."
        )
        for outcome in ("higher", "lower", "within seed spread", "too few runs"):
            methods = found.get(f"{differs}: gap {outcome}", [])
            if methods:
                lines.append(f"- {differs}: val − train gap {outcome} for {_names(methods)}.")
        for size, words in (("< δ", "smaller than δ"), ("≥ δ", "at least δ")):
            methods = found.get(f"{differs}: gap {size}", [])
            if methods:
                lines.append(f"- {differs}: gap change {words} for {_names(methods)}.")
        undecided = found.get(f"{differs}: gap undecided", [])
        if undecided:
            lines.append(
                f"- {differs}: gap change undecided against δ (interval straddles ±δ) for "
                f"{_names(undecided)}."
            )
    blown = {m: n for m, n in values["blown_up_runs"].items() if n}
    lines.append(
        "- Runs that blew up on the way (training loss back above its first epoch's): "
        + (", ".join(f"{m} {n}" for m, n in blown.items()) if blown else "none")
        + f" (of {values['runs'] // len(values['blown_up_runs'])} per method)."
    )
    forced = values["forced_acceptances"]
    lines.append(
        "- Forced acceptances (a step applied after its retries ran out, on_failure='accept'): "
        + ", ".join(f"{m} {n}" for m, n in forced.items())
        + "."
    )
    diverged = values["diverged_runs"]
    lines.append(
        f"- Diverged runs: {diverged} of {values['runs']}"
        + (" (listed above)." if diverged else ".")
    )
    steps = ", ".join(f"{m} {h:.2f}" for m, h in values["mean_accepted_step"].items())
    lines.append(f"- Mean accepted step size: {steps} (SGD's h = {values['learning_rate']}).")
    igr = values["implicit_regularisation"]
    low, high = igr["step_correction_range"]
    lines.append(
        "- Implicit gradient regularisation, SGD after its last epoch: one SGD step differs from "
        f"Heun's on the same batch by {igr['step_correction']:.0%} of its length (mean over "
        f"batches and seeds; {low:.0%} to {high:.0%} by seed); the mini-batch penalty "
        f"(h/4)·mean‖∇L_k‖² is {igr['penalty_mini_batch']:.4f}, the full-batch one "
        f"(h/4)·‖∇L‖² {igr['penalty_full_batch']:.4f}."
    )
    batch_effects = [
        e["batch_gradient_norm_sq"][2] for e in values["gradient_norm_effects"].values()
    ]
    lines.append(
        "- Order-only comparisons of mean‖∇L_k‖² (a lost penalty predicts higher): "
        + ", ".join(f"{batch_effects.count(o)} {o}" for o in dict.fromkeys(batch_effects))
        + "."
    )
    return lines


def markdown(
    sections: dict[float, dict[str, Any]], settings: dict[str, Any], seconds: float
) -> str:
    """docs/overfitting.md: the set-up, then per step size the marked tables and conclusions."""
    text = [
        "# Do Runge–Kutta optimizers overfit? (measured)",
        "",
        "Produced by `python benchmarks/overfitting.py` (notebook 06 runs the same study with "
        "fewer seeds and epochs). Digits: the first "
        f"{settings['train_size']} training images (so that overfitting shows), the usual 449 "
        f"for validation; MLP 64-{settings['hidden_units']}-10 (ReLU), batch "
        f"{settings['batch_size']}, {settings['epochs']} epochs, seeds {settings['seeds']}, "
        "float64. SGD's learning rate is the step size h of every fixed-step method and the first "
        f"step of the adaptive ones (rtol {settings['rtol']}, atol {settings['atol']}). A seed "
        "fixes the initial weights and the batch order, the same for every method. Losses are "
        "measured on the whole training / validation set after each epoch.",
        "",
        "A run **diverged** when its training loss is not finite or above ln 10 ≈ 2.30 (a "
        "uniform guess); rows give mean and standard deviation over the other runs and count "
        "the diverged ones, which are listed. A run **blew up** when its training loss climbed "
        "back above its value after the first epoch (it lost all it had gained since; it may "
        "recover, so it need not diverge); such runs stay in the means and are counted. The "
        'adaptive controller runs with `on_failure="accept"`: a step that is still rejected '
        "after 10 retries is applied anyway; these **forced acceptances** are counted. Gradient "
        "evaluations count every stage of every try (an adaptive retry re-uses the first stage, "
        "which sits at the same point on the same batch).",
        "",
        "The **controls** table compares each method with its control seed by seed: mean "
        "difference ± the half-width of its 95 % t interval. A difference is *higher*/*lower* "
        "(resolved) when the interval excludes 0. Its size is judged against δ, a tenth of "
        "SGD's own final validation − training gap at the same h: *< δ* when the interval lies "
        "inside ±δ, *≥ δ* when it lies wholly beyond, *undecided* when it straddles ±δ. The "
        "article's pattern is a training loss lower *and* a validation loss higher than the "
        "control's, both resolved. Notebook 06 states these rules before any number and draws "
        "its verdict from them.",
        "",
        "![validation − training loss against epochs, one panel per method](overfitting.png)",
        "",
    ]
    for learning_rate, section in sections.items():
        key = tag(learning_rate)
        text += [
            f"## Step size h = {learning_rate}",
            "",
            "**Equal epochs**",
            "",
            f"<!-- result: overfitting epochs_{key} -->",
            "<!-- /result -->",
            "",
            "**Equal gradient evaluations** (the budget SGD used in all its epochs; *not reached*: "
            "the method's first epoch alone costs more)",
            "",
            f"<!-- result: overfitting gradients_{key} -->",
            "<!-- /result -->",
            "",
            "**Controls** (method − control after the last epoch, paired by seed)",
            "",
            f"<!-- result: overfitting controls_{key} -->",
            "<!-- /result -->",
            "",
            "**Blow-ups and forced acceptances** (largest rise: the most a run's training loss "
            "rose above its lowest earlier value, over all runs of the method)",
            "",
            f"<!-- result: overfitting stability_{key} -->",
            "<!-- /result -->",
            "",
            "**Diverged runs**",
            "",
            f"<!-- result: overfitting diverged_{key} -->",
            "<!-- /result -->",
            "",
            "What these numbers show, by the rules above:",
            "",
            *conclusions(section["values"]),
            "",
        ]
    text.append(f"Run time: {seconds:.0f} s on {settings['machine']}.")
    return "\n".join(text) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds, 4 epochs; writes nothing")
    parser.add_argument(
        "--seeds", type=int, default=10, help="seeds 0..N-1 per method and step size (default 10)"
    )
    args = parser.parse_args()
    data = load_dataset("digits")
    started = time.perf_counter()
    seeds = (0, 1) if args.quick else tuple(range(args.seeds))
    epochs = 4 if args.quick else EPOCHS
    sections: dict[float, dict[str, Any]] = {}
    figure, axes = plt.subplots(2 * len(LEARNING_RATES), 4, figsize=(13, 5.4 * len(LEARNING_RATES)))
    for index, learning_rate in enumerate(LEARNING_RATES):
        settings = StudySettings(
            seeds=seeds, epochs=epochs, learning_rate=learning_rate, train_size=TRAIN_SIZE
        )
        records = run_overfitting_study(settings, data)
        sections[learning_rate] = study_section(records, learning_rate)
        panels = axes[2 * index : 2 * index + 2].ravel()
        plot_gaps(records, axes=panels)
        panels[0].set_title(f"h = {learning_rate}: SGD", fontsize=8)
        print(f"h = {learning_rate}:", *conclusions(sections[learning_rate]["values"]), sep="\n")
    seconds = time.perf_counter() - started
    print(f"study took {seconds:.0f} s")
    if args.quick:
        return
    figure.suptitle("Validation − training loss against epochs (one line per seed)")
    figure.tight_layout()
    figure.savefig(ROOT / "docs" / "overfitting.png", dpi=80)
    described_machine = f"{machine()} (load average {load_average()})"
    described = {
        "seeds": list(seeds),
        "epochs": epochs,
        "train_size": TRAIN_SIZE,
        "batch_size": settings.batch_size,
        "hidden_units": settings.hidden_units,
        "rtol": settings.rtol,
        "atol": settings.atol,
        "learning_rates": list(LEARNING_RATES),
        "machine": described_machine,
    }
    tables = {name: t for s in sections.values() for name, t in s["tables"].items()}
    values = {tag(h): s["values"] for h, s in sections.items()}
    values["settings"] = described
    values["seconds"] = round(seconds)
    write_result(
        "overfitting",
        script="benchmarks/overfitting.py",
        command=f"python benchmarks/overfitting.py --seeds {args.seeds}",
        machine=described_machine,
        tables=tables,
        values=values,
    )
    path = ROOT / "docs" / "overfitting.md"
    path.write_text(markdown(sections, described, seconds), encoding="utf-8")
    update_docs(["overfitting"], paths=[path])


if __name__ == "__main__":
    main()
