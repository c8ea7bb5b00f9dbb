"""Steps per second of softmax regression with tf.GradientTape vs a hand-written gradient.

Notebook 02 asks whether writing the gradient by hand, as the seed article suggests for simple
models, makes training faster. Both routes run the same SGD step inside a ``tf.function``
(``course_lib.handwritten.make_sgd_step``) on the digits training set; only the gradient differs.
Passes of the two routes alternate, so a slow moment on a shared machine hurts both; the table
shows medians. The steps are timed with ``course_lib.handwritten.seconds_per_step``, the helper
the notebook uses too (these are bare ``tf.function`` steps, not ``fit``, so the ``StepTimer``
callback does not apply).

Usage: ``python benchmarks/handwritten_gradients.py [--passes 15]``. Writes
``docs/results/handwritten_gradients.json`` (notebook 02 loads it) and re-renders its table in
docs/benchmarks.md. About a minute on a 2-core CPU.
"""

from __future__ import annotations

import course_lib
from course_lib import handwritten
from course_lib.data import load_dataset
from course_lib.studies.results import (
    BenchmarkRun,
    Table,
    machine,
    markdown_table,
)

import argparse
import os
import statistics

import keras
import numpy as np
import tensorflow as tf

ROUTES = {"tape": handwritten.tape_gradients, "hand-written": handwritten.handwritten_gradients}
BATCH_SIZES = (32, 256, 1348)
COLUMNS = [
    ("batch size", ""),
    ("XLA", ""),
    ("tape steps/s", ",.0f"),
    ("hand-written steps/s", ",.0f"),
    ("hand-written / tape", ".2f×"),
]


def batches_of(x: np.ndarray, y: np.ndarray, batch_size: int) -> list[tuple[tf.Tensor, tf.Tensor]]:
    """Whole batches only, so every step in a pass has the same shape (no retracing)."""
    return [
        (tf.constant(x[i : i + batch_size]), tf.constant(y[i : i + batch_size].astype(np.int32)))
        for i in range(0, len(x) - batch_size + 1, batch_size)
    ]


def measure(batch_size: int, jit_compile: bool, passes: int) -> dict[str, float]:
    """Median seconds per step for each route, passes alternating between the routes."""
    digits = load_dataset("digits")
    batches = batches_of(digits.x_train, digits.y_train, batch_size)
    # Each pass covers at least ~200 steps, so one pass takes long enough to time.
    batches = batches * max(1, 200 // len(batches))
    steps = {}
    for name, gradient_fn in ROUTES.items():
        weights, bias = handwritten.init_parameters(64, 10)
        steps[name] = handwritten.make_sgd_step(
            gradient_fn, weights, bias, 0.1, jit_compile=jit_compile
        )
    timings: dict[str, list[float]] = {name: [] for name in ROUTES}
    for index in range(passes):
        order = list(ROUTES) if index % 2 == 0 else list(reversed(ROUTES))
        for name in order:
            timings[name] += handwritten.seconds_per_step(steps[name], batches, repeats=1)
    return {name: statistics.median(values) for name, values in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=15, help="timed passes per route")
    args = parser.parse_args()
    if args.passes < 1:
        parser.error(f"--passes={args.passes} must be at least 1.")
    run = BenchmarkRun("handwritten_gradients", "benchmarks/handwritten_gradients.py")
    rows = []
    for jit_compile in (False, True):
        for batch_size in BATCH_SIZES:
            seconds = measure(batch_size, jit_compile, args.passes)
            tape, hand = 1 / seconds["tape"], 1 / seconds["hand-written"]
            rows.append([batch_size, "on" if jit_compile else "off", tape, hand, hand / tape])
            print(f"batch {batch_size}, XLA {rows[-1][1]}: {hand / tape:.2f}×", flush=True)
    table = Table(COLUMNS, rows)
    path = run.write(
        {"steps": table},
        {
            "passes": args.passes,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "course_lib": course_lib.__version__,
            "oneDNN": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
        },
    )
    load, seconds = run.recorded["load_average_before"], run.recorded["seconds"]
    print(
        f"\nTensorFlow {tf.__version__}, {machine()}; median of {args.passes} alternated "
        f"passes; 1-minute load average {load} before the run. Written to "
        f"{path.relative_to(path.parents[2])}.\n"
    )
    print(markdown_table(table))


if __name__ == "__main__":
    main()
