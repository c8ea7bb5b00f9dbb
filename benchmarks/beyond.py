"""Validation accuracy of SGD, SAM and Lookahead(SGD) on digits, over more seeds (notebook 07).

Usage: ``python benchmarks/beyond.py [--seeds 5] [--epochs 10]``. Prints a markdown table (mean,
min and max over seeds) and the wall time; the settings are notebook 07's, with more seeds.
"""

from __future__ import annotations

import course_lib  # noqa: F401  (quiets TensorFlow before it loads)
from course_lib.studies.beyond import (
    GRADIENTS_PER_STEP,
    ComparisonSettings,
    compare_on_digits,
    format_comparison,
)

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=10)
    arguments = parser.parse_args()
    settings = ComparisonSettings(seeds=tuple(range(arguments.seeds)), epochs=arguments.epochs)
    started = time.perf_counter()
    results = compare_on_digits(settings)
    print(
        f"MLP 64-64-10 on digits, SGD lr {settings.learning_rate}, batch {settings.batch_size}, "
        f"{settings.epochs} epochs, SAM rho {settings.rho}, Lookahead k {settings.sync_period} "
        f"alpha {settings.slow_step_size}, seeds {list(settings.seeds)}\n"
    )
    print(format_comparison(results, GRADIENTS_PER_STEP))
    print(f"\nwall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
