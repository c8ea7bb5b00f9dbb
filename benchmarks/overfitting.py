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
``python benchmarks/overfitting.py`` (10 seeds; a few minutes on 2 idle CPU cores, about 20
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
    paired_effects,
    plot_gaps,
    rows_table,
    run_overfitting_study,
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


def implicit_penalty(records: Sequence[RunRecord], learning_rate: float) -> float:
    """SGD's implicit penalty (h/4)·‖∇L‖² after the last epoch, relative to its loss (mean)."""
    ratios = [
        learning_rate / 4 * r.gradient_norm_sq[-1] / r.train_loss[-1]
        for r in records
        if r.method == "SGD" and not r.diverged()
    ]
    return float(np.mean(ratios))


def mean_accepted_steps(records: Sequence[RunRecord]) -> dict[str, float]:
    """Each adaptive method's accepted step size, averaged over steps and seeds."""
    methods = dict.fromkeys(r.method for r in records if r.rejections)
    return {
        m: float(np.mean([np.mean(r.step_sizes) for r in records if r.method == m]))
        for m in methods
    }


def study_section(records: Sequence[RunRecord], learning_rate: float) -> dict[str, Any]:
    """Tables and values of one step size."""
    effects = paired_effects(records)
    gradient_effects = paired_effects(records, metrics=("gradient_norm_sq", "gap"))
    key = tag(learning_rate)
    tables = {
        f"epochs_{key}": rows_table(study_rows(records, "epochs")),
        f"gradients_{key}": rows_table(study_rows(records, "gradients")),
        f"controls_{key}": effects_table(effects),
        f"diverged_{key}": diverged_table(records),
    }
    values = {
        "learning_rate": learning_rate,
        "gradient_budget": gradient_budget(records),
        "verdict": verdict(effects),
        "runs": len(records),
        "diverged_runs": sum(r.diverged() for r in records),
        "mean_accepted_step": mean_accepted_steps(records),
        "implicit_penalty_over_loss": implicit_penalty(records, learning_rate),
        "gradient_norm_sq_effects": {
            f"{e['method']} − {e['control']}": list(e["gradient_norm_sq"])
            for e in gradient_effects
            if e["differs"] == "order"
        },
    }
    return {"tables": tables, "values": values}


def conclusions(values: dict[str, Any]) -> list[str]:
    """Sentences that follow from the verdict, so the text cannot outlive its numbers."""
    found = values["verdict"]
    lines = []
    for differs in ("order", "step size", "order and step size"):
        for outcome in ("higher", "lower", "within seed spread", "too few runs"):
            methods = found.get(f"{differs}: gap {outcome}", [])
            if methods:
                lines.append(
                    f"- {differs}: val − train gap {outcome} for " + ", ".join(methods) + "."
                )
        pattern = found.get(f"{differs}: article's pattern", [])
        lines.append(
            f"- {differs}: the article's pattern (training loss lower *and* validation loss "
            f"higher, both resolved) in "
            + (", ".join(pattern) if pattern else "no comparison")
            + "."
        )
    diverged = values["diverged_runs"]
    lines.append(
        f"- Diverged runs: {diverged} of {values['runs']}"
        + (" (listed above)." if diverged else ".")
    )
    steps = ", ".join(f"{m} {h:.2f}" for m, h in values["mean_accepted_step"].items())
    lines.append(f"- Mean accepted step size: {steps} (SGD's h = {values['learning_rate']}).")
    lines.append(
        "- SGD's implicit penalty (h/4)·‖∇L‖² after the last epoch is "
        f"{values['implicit_penalty_over_loss']:.1%} of its training loss (mean over seeds)."
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
        "the diverged ones, which are listed. The **controls** table compares each method with "
        "its control seed by seed: mean difference ± the half-width of its 95 % t interval; "
        "*higher*/*lower* when the interval excludes 0. The article's pattern is a training loss "
        "lower *and* a validation loss higher than the control's, both resolved.",
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
            "**Diverged runs**",
            "",
            f"<!-- result: overfitting diverged_{key} -->",
            "<!-- /result -->",
            "",
            "What these numbers support:",
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
