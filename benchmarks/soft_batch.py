"""Benchmark: memory and time of soft batch (course_lib.SoftBatch) against plain and built-in.

Usage: ``python benchmarks/soft_batch.py [--rounds 6] [--batches 8]``

Two models, an activation-heavy ConvNet on 64×64 images and a parameter-heavy MLP
(784-1024-1024-10, 1.9 M parameters), each trained with Adam in four configurations:

* plain batch 64, plain batch 16,
* Keras's built-in ``gradient_accumulation_steps=4`` at batch 16,
* ``SoftBatch(steps=4)`` at batch 16.

**Memory**: every configuration trains in a fresh process of its own, and reports its peak RSS.
**Time**: one process per model builds all four configurations, then runs short ``fit`` calls in
alternation, round after round, so that load from other programs hits them all alike; the
shared :class:`course_lib.studies.timing.StepTimer` times each training batch, and the table shows
medians (the first ``fit`` of each configuration, which traces the graph, is not timed).

The result goes to ``docs/results/soft_batch.json`` (notebook 03 claims against it) and its table
into ``docs/benchmarks.md``; the script prints the same table.
"""

from __future__ import annotations

from course_lib.studies.results import (
    BenchmarkRun,
    Table,
    markdown_table,
)

import argparse
import json
import os
import statistics
import subprocess
import sys
from typing import Any

CONFIGS = ("batch 64", "batch 16", "Keras accumulation 16×4", "SoftBatch 16×4")
MODELS = ("convnet", "mlp")


#: Examples in every configuration's data set: eight batches of 64.
EXAMPLES = 512


def build(model_name: str, config: str) -> tuple[Any, Any]:
    """A compiled model for one configuration, and the tf.data pipeline it trains on."""
    import course_lib
    from course_lib.soft_batch import SoftBatch

    import keras
    import numpy as np
    import tensorflow as tf

    course_lib.set_seed(0)
    batch = 64 if config == "batch 64" else 16
    if model_name == "convnet":
        shape, layers = (
            (64, 64, 3),
            [
                keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
                keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
                keras.layers.MaxPooling2D(2),
                keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
                keras.layers.GlobalAveragePooling2D(),
                keras.layers.Dense(10),
            ],
        )
    else:
        shape, layers = (
            (784,),
            [
                keras.layers.Dense(1024, activation="relu"),
                keras.layers.Dense(1024, activation="relu"),
                keras.layers.Dense(10),
            ],
        )
    model = keras.Sequential([keras.Input(shape), *layers])
    if config == "SoftBatch 16×4":
        optimizer = SoftBatch(keras.optimizers.Adam(1e-3), steps=4)
    elif config == "Keras accumulation 16×4":
        optimizer = keras.optimizers.Adam(1e-3, gradient_accumulation_steps=4)
    else:
        optimizer = keras.optimizers.Adam(1e-3)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=False,
    )
    rng = np.random.default_rng(0)
    # The same data set for every configuration, as in a real run: accumulating does not
    # shrink the data, only the batch (a set sized by the batch would flatter accumulation).
    x = rng.normal(size=(EXAMPLES, *shape)).astype("float32")
    y = rng.integers(0, 10, size=EXAMPLES)
    options = tf.data.Options()
    options.autotune.enabled = False  # its thread can delay fit's return by seconds
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).repeat().with_options(options)
    return model, data


def memory_worker(model_name: str, config: str, batches: int) -> dict[str, float]:
    import resource

    model, data = build(model_name, config)
    model.fit(data, steps_per_epoch=batches, epochs=1, verbose=0)
    return {"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # KiB on Linux


def time_worker(model_name: str, rounds: int, batches: int) -> dict[str, float]:
    built = {config: build(model_name, config) for config in CONFIGS}
    for model, data in built.values():  # trace every graph before timing anything
        model.fit(data, steps_per_epoch=batches, epochs=1, verbose=0)
    from course_lib.studies.timing import StepTimer

    seconds: dict[str, list[float]] = {config: [] for config in CONFIGS}
    for _ in range(rounds):
        for config, (model, data) in built.items():
            timer = StepTimer(skip=0)  # every graph was traced by the untimed fit above
            model.fit(data, steps_per_epoch=batches, epochs=1, verbose=0, callbacks=[timer])
            seconds[config] += timer.seconds
    return {config: 1000 * statistics.median(values) for config, values in seconds.items()}


def child(*args: str) -> dict[str, float]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_ENABLE_ONEDNN_OPTS="0")
    command = [sys.executable, __file__, "--worker", *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def table_of(peak: dict[tuple[str, str], float], ms: dict[str, dict[str, float]]) -> Table:
    """One row per model and configuration, raw numbers; the docs round them per column."""
    keras_config = "Keras accumulation 16×4"
    rows = []
    for model_name in MODELS:
        per64 = {c: ms[model_name][c] * (1 if c == "batch 64" else 4) for c in CONFIGS}
        for config in CONFIGS:
            memory = peak[(model_name, config)]
            rows.append(
                [
                    model_name,
                    config,
                    memory,
                    ms[model_name][config],
                    per64[config],
                    per64[config] / per64[keras_config],
                    memory / peak[(model_name, keras_config)],
                    memory / peak[(model_name, "batch 64")],
                ]
            )
    return Table(
        columns=[
            ("model", ""),
            ("configuration", ""),
            ("peak RSS (MB)", ".0f"),
            ("ms per batch", ".1f"),
            ("ms per 64 examples", ".1f"),
            ("time vs Keras accumulation", ".2f"),
            ("memory vs Keras accumulation", ".3f"),
            ("memory vs batch 64", ".3f"),
        ],
        rows=rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6, help="alternated timing rounds")
    parser.add_argument("--batches", type=int, default=8, help="batches per fit call")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, model_name, *rest = args.worker
        if kind == "memory":
            result = memory_worker(model_name, rest[0], args.batches)
        else:
            result = time_worker(model_name, args.rounds, args.batches)
        print(json.dumps(result))
        return

    run = BenchmarkRun(
        "soft_batch",
        "benchmarks/soft_batch.py",
        f"python benchmarks/soft_batch.py --rounds {args.rounds} --batches {args.batches}",
    )
    flags = ["--rounds", str(args.rounds), "--batches", str(args.batches)]
    peak = {
        (model_name, config): child("memory", model_name, config, *flags)["peak_mb"]
        for model_name in MODELS
        for config in CONFIGS
    }
    ms = {model_name: child("time", model_name, *flags) for model_name in MODELS}

    table = table_of(peak, ms)
    path = run.write({"configurations": table}, {"rounds": args.rounds, "batches": args.batches})
    load, seconds = run.recorded["load_average_before"], run.recorded["seconds"]
    print(markdown_table(table))
    print(
        f"Adam; ConvNet on 64×64×3 images, MLP 784-1024-1024-10. Memory: a fresh process per "
        f"configuration, {args.batches} batches. Time: median per batch over {args.rounds} "
        f"alternated rounds of {args.batches} batches, after one untimed fit each. "
        f"CPU threads: {os.cpu_count()}; 1-minute load average {load} before the run; "
        f"total {seconds:.0f} s. Written to "
        f"{path.relative_to(path.parents[2])}."
    )


if __name__ == "__main__":
    main()
