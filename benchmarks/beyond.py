"""Validation accuracy of SGD, SAM and Lookahead(SGD) on digits, over many seeds (notebook 07).

Usage: ``python benchmarks/beyond.py [--seeds 20] [--epochs 10]``. The settings are notebook 07's
(:class:`course_lib.studies.beyond.ComparisonSettings`), with more seeds. Writes
``docs/results/beyond.json`` (two tables: accuracy per method, and each method minus SGD seed by
seed), rewrites the marked tables of ``docs/benchmarks.md`` from it, and prints both tables.
Notebook 07 loads the file and checks its sentence about the spread over seeds against it.
"""

from __future__ import annotations

import course_lib  # noqa: F401  (quiets TensorFlow before it loads)
from course_lib.studies.beyond import (
    ComparisonSettings,
    compare_on_digits,
    comparison_table,
    differences_table,
)
from course_lib.studies.results import BenchmarkRun, markdown_table

import argparse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=10)
    arguments = parser.parse_args()
    settings = ComparisonSettings(seeds=tuple(range(arguments.seeds)), epochs=arguments.epochs)
    run = BenchmarkRun("beyond", "benchmarks/beyond.py")
    results = compare_on_digits(settings)
    tables = {"accuracy": comparison_table(results), "differences": differences_table(results)}
    run.write(
        tables,
        {
            "settings": settings.describe(),
            "seeds": list(settings.seeds),
            "epochs": settings.epochs,
            "per_seed_accuracy": results,
        },
    )
    print(settings.describe() + "\n")
    for table in tables.values():
        print(markdown_table(table))
    print(f"wall time {run.recorded['seconds']:.0f} s")


if __name__ == "__main__":
    main()
