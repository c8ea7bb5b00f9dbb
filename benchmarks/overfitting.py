"""Do Runge–Kutta optimizers overfit more than SGD? The full study behind notebook 05.

The seed article (Su Jianlin, "Keras之小众需求:自定义优化器", kexue.fm 2018) remarks that RK23/RK45
training steps overfit easily: very low training loss, poor validation loss and accuracy. This
script measures that on scikit-learn's digits (1,348 training / 449 validation images) with an
MLP 64-128-10: SGD, Heun, RK4 and adaptive Dormand–Prince, several seeds (weights and batch
order), two step sizes, compared

* at **equal epochs** (same number of steps, so the same time on the gradient flow for the
  fixed-step methods), and
* at **equal gradient evaluations** (every method gets the mini-batch passes SGD used; Heun then
  runs half the epochs, RK4 a quarter...).

Every number is measured after the epoch on the whole training and validation sets. It prints
markdown tables (mean and min–max over seeds) and writes them with a figure to
``docs/overfitting.md`` and ``docs/overfitting.png``. Run: ``python benchmarks/overfitting.py``
(about 3 minutes on 2 CPU cores with the default 10 seeds); ``--quick`` runs a smoke version
that writes nothing. It also counts the runs that end worse than a uniform guess: the adaptive
method's mean is dominated by them, so the count says more than the mean.
"""

from __future__ import annotations

import course_lib  # noqa: F401  (quiet TensorFlow first)

import argparse
import math
import time
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from course_lib.data import load_dataset  # noqa: E402
from course_lib.studies.overfitting import (  # noqa: E402
    RunRecord,
    StudySettings,
    format_study_table,
    plot_study,
    run_overfitting_study,
    study_rows,
)

import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LEARNING_RATES = (0.1, 0.5)
#: The cross-entropy of a uniform guess over digits' 10 classes: a run that ends above it failed.
CHANCE_LOSS = math.log(10)


def failed_runs(records: Sequence[RunRecord]) -> str:
    """Per method, how many runs ended with a training loss above a uniform guess's."""
    methods = list(dict.fromkeys(r.method for r in records))
    counts = []
    for method in methods:
        runs = [r for r in records if r.method == method]
        failed = sum(r.train_loss[-1] > CHANCE_LOSS for r in runs)
        counts.append(f"{method} {failed}/{len(runs)}")
    return (
        f"Runs whose final training loss is above ln 10 ≈ {CHANCE_LOSS:.2f} (a uniform guess): "
        + ", ".join(counts)
        + "."
    )


def adaptive_runs(records: Sequence[RunRecord]) -> str:
    """Each adaptive run's final losses: with runs that blow up, the mean hides the rest."""
    runs = [r for r in records if "adaptive" in r.method]
    cells = [
        f"seed {r.seed}: {r.train_loss[-1]:.3f} / {r.val_loss[-1]:.3f} / "
        f"{r.val_loss[-1] - r.train_loss[-1]:.3f}"
        for r in runs
    ]
    return (
        f"{runs[0].method} per seed (train loss / val loss / val − train): "
        + "; ".join(cells)
        + "."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="15 epochs, 1 seed; writes nothing")
    parser.add_argument(
        "--seeds", type=int, default=10, help="seeds 0..N-1 per method and step size (default 10)"
    )
    args = parser.parse_args()
    data = load_dataset("digits")
    started = time.perf_counter()
    sections = []
    fig, axes = plt.subplots(len(LEARNING_RATES), 2, figsize=(12, 4 * len(LEARNING_RATES)))
    for row_axes, learning_rate in zip(axes, LEARNING_RATES, strict=True):
        settings = StudySettings(
            seeds=(0,) if args.quick else tuple(range(args.seeds)),
            epochs=15 if args.quick else 40,
            learning_rate=learning_rate,
        )
        records = run_overfitting_study(settings, data)
        text = [
            f"### Step size (SGD learning rate) {learning_rate}, {settings.epochs} epochs, "
            f"seeds {list(settings.seeds)}",
            "",
            "**Equal epochs**",
            "",
            format_study_table(study_rows(records, "epochs")),
            "",
            failed_runs(records),
            "",
            adaptive_runs(records),
            "",
            "**Equal gradient evaluations** (the budget SGD used in all its epochs)",
            "",
            format_study_table(study_rows(records, "gradients")),
            "",
        ]
        sections.append("\n".join(text))
        print("\n".join(text), flush=True)
        plot_study(records, axes=row_axes)
        for ax in row_axes:
            ax.set_title(f"{ax.get_title()}, h = {learning_rate}", fontsize=9)
    seconds = time.perf_counter() - started
    print(f"study took {seconds:.0f} s")
    if args.quick:
        return
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "overfitting.png", dpi=90)
    header = (
        "# Do Runge–Kutta optimizers overfit? (measured)\n\n"
        "Produced by `python benchmarks/overfitting.py` (see its docstring; notebook 05 runs a "
        "reduced version live). Digits, MLP 64-128-10 (ReLU), batch 64, SGD learning rate = "
        "the step size h; adaptive Dormand–Prince: rtol 1e-2, atol 1e-4, starting at h. "
        "Cells: mean (min–max) over seeds, measured on the whole training / validation set "
        "after the epoch. Gradient evaluations count mini-batch forward/backward passes, "
        "rejected adaptive tries included.\n\n"
        "![training and validation loss against gradient evaluations](overfitting.png)\n\n"
    )
    (ROOT / "docs" / "overfitting.md").write_text(
        header + "\n".join(sections) + f"\nRun time: {seconds:.0f} s on 2 CPU cores.\n",
        encoding="utf-8",
    )


if __name__ == "__main__":
    main()
