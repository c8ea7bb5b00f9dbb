"""Benchmark: the same optimizer steps on Keras's TensorFlow and JAX backends, side by side.

Usage: ``python benchmarks/backends.py [--rounds 7] [--batches 10]``

One MLP (784-512-512-10, 0.67 M parameters) trains with each optimizer of the course that runs on
both backends, and with Keras's own counterparts:

* ``SGD`` (Keras) and ``PlainSGD``, ``MomentumSGD`` (notebook 02), ``Adam`` (Keras), at batch 64;
* ``Lookahead(Adam)`` (notebook 07) at batch 64;
* ``SoftBatch(Adam, steps=4)`` (notebook 03) and Keras's built-in
  ``Adam(gradient_accumulation_steps=4)``, at micro-batches of 16: time per 64 examples.

A process runs on one backend only (Keras fixes it at import), so every measurement runs in a
fresh child process with ``KERAS_BACKEND`` set. **Memory**: one process per backend and
configuration reports its peak RSS after a short ``fit``. **Time**: one process per backend
builds every configuration, runs one untimed ``fit`` each (tracing and compiling), then
alternates short timed ``fit`` calls round after round, each round starting one configuration
later (over 7 rounds every configuration runs once in every position), so that load from other
programs and the cost of a position hit them all alike; the shared
:class:`course_lib.studies.timing.StepTimer` times each step, and the table shows medians. Both
backends compile the step with XLA (``jit_compile=True``). ``PlainSGD`` and Keras's ``SGD``
compile to the same program (tests/test_optimizers.py counts the operations of their traced
steps), so their ratio shows what is left of noise.

The result goes to ``docs/results/backends.json`` and its tables into ``docs/benchmarks.md``.
"""

from __future__ import annotations

from course_lib.studies.results import BenchmarkRun, Table, markdown_table

import argparse
import json
import os
import statistics
import subprocess
import sys
from typing import Any

BACKENDS = ("tensorflow", "jax")
CONFIGS = (
    "SGD",
    "PlainSGD",
    "MomentumSGD",
    "Adam",
    "Lookahead(Adam)",
    "Keras accumulation 16×4",
    "SoftBatch(Adam) 16×4",
)
ACCUMULATING = ("Keras accumulation 16×4", "SoftBatch(Adam) 16×4")


def _optimizer(config: str) -> Any:
    from course_lib.lookahead import Lookahead
    from course_lib.optimizers import MomentumSGD, PlainSGD
    from course_lib.soft_batch import SoftBatch

    import keras

    return {
        "SGD": lambda: keras.optimizers.SGD(0.01),
        "PlainSGD": lambda: PlainSGD(0.01),
        "MomentumSGD": lambda: MomentumSGD(0.01, momentum=0.9),
        "Adam": lambda: keras.optimizers.Adam(1e-3),
        "Lookahead(Adam)": lambda: Lookahead(keras.optimizers.Adam(1e-3), sync_period=5),
        "Keras accumulation 16×4": lambda: keras.optimizers.Adam(
            1e-3, gradient_accumulation_steps=4
        ),
        "SoftBatch(Adam) 16×4": lambda: SoftBatch(keras.optimizers.Adam(1e-3), steps=4),
    }[config]()


def build(config: str, batches: int) -> tuple[Any, Any, Any, int]:
    """A compiled model for one configuration, and NumPy data for ``batches`` of its batch."""
    import course_lib

    import keras
    import numpy as np

    course_lib.set_seed(0)
    _allow_xla()  # before compile, which reads it
    batch = 16 if config in ACCUMULATING else 64
    model = keras.Sequential(
        [
            keras.Input((784,)),
            keras.layers.Dense(512, activation="relu"),
            keras.layers.Dense(512, activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        optimizer=_optimizer(config),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch * batches, 784)).astype("float32")
    y = rng.integers(0, 10, size=batch * batches)
    return model, x, y, batch


def _allow_xla() -> None:
    """set_seed turns TensorFlow's op determinism on, which silently compiles without XLA."""
    import keras

    if keras.backend.backend() == "tensorflow":
        from tensorflow.python.framework import config

        config.disable_op_determinism()


def memory_worker(config: str, batches: int) -> dict[str, float]:
    import resource

    model, x, y, batch = build(config, batches)
    assert model.jit_compile, "Keras fell back to no XLA: the backends would run unlike steps"
    model.fit(x, y, batch_size=batch, epochs=2, shuffle=False, verbose=0)
    return {"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # KiB on Linux


def time_worker(rounds: int, batches: int) -> dict[str, float]:
    from course_lib.studies.timing import StepTimer

    built = {config: build(config, batches) for config in CONFIGS}
    for model, x, y, batch in built.values():  # compile every step before timing anything
        model.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0)
        assert model.jit_compile, "Keras fell back to no XLA: the backends would run unlike steps"
    seconds: dict[str, list[float]] = {config: [] for config in CONFIGS}
    for round_ in range(rounds):
        # Each round starts one configuration later, so that over len(CONFIGS) rounds every
        # configuration runs once in every position: a position's cost (the fit that follows
        # another's, the collector's timing) falls on all of them alike.
        shift = round_ % len(CONFIGS)
        for config in CONFIGS[shift:] + CONFIGS[:shift]:
            model, x, y, batch = built[config]
            timer = StepTimer(skip=0)
            model.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0, callbacks=[timer])
            seconds[config] += timer.seconds
    return {config: 1000 * statistics.median(values) for config, values in seconds.items()}


def child(backend: str, *args: str) -> dict[str, float]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_ENABLE_ONEDNN_OPTS="0")
    env["KERAS_BACKEND"] = backend
    command = [sys.executable, __file__, "--worker", *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{backend} {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def per_64(config: str, ms: float) -> float:
    """Time per 64 examples: four micro-batch steps for the accumulating configurations."""
    return 4 * ms if config in ACCUMULATING else ms


def steps_table(peak: dict[tuple[str, str], float], ms: dict[str, dict[str, float]]) -> Table:
    """One row per configuration: both backends' time per 64 examples and peak memory."""
    rows = []
    for config in CONFIGS:
        tf_ms, jax_ms = (per_64(config, ms[b][config]) for b in BACKENDS)
        rows.append(
            [
                config,
                tf_ms,
                jax_ms,
                jax_ms / tf_ms,
                peak[("tensorflow", config)],
                peak[("jax", config)],
            ]
        )
    return Table(
        columns=[
            ("configuration", ""),
            ("TensorFlow ms per 64 examples", ".2f"),
            ("JAX ms per 64 examples", ".2f"),
            ("JAX / TensorFlow time", ".2f"),
            ("TensorFlow peak RSS (MB)", ".0f"),
            ("JAX peak RSS (MB)", ".0f"),
        ],
        rows=rows,
    )


def accumulation_table(
    peak: dict[tuple[str, str], float], ms: dict[str, dict[str, float]]
) -> Table:
    """SoftBatch against Keras's built-in accumulation, on each backend (goal: within 5 %)."""
    soft, keras_config = ACCUMULATING[1], ACCUMULATING[0]
    rows = [
        [
            backend,
            ms[backend][soft] / ms[backend][keras_config],
            peak[(backend, soft)] / peak[(backend, keras_config)],
        ]
        for backend in BACKENDS
    ]
    return Table(
        columns=[
            ("backend", ""),
            ("SoftBatch / Keras accumulation, time", ".3f"),
            ("SoftBatch / Keras accumulation, memory", ".3f"),
        ],
        rows=rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rounds", type=int, default=7, help="alternated timing rounds (7: one per position)"
    )
    parser.add_argument("--batches", type=int, default=10, help="batches per fit call")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, *rest = args.worker
        if kind == "memory":
            result = memory_worker(rest[0], args.batches)
        else:
            result = time_worker(args.rounds, args.batches)
        print(json.dumps(result))
        return

    run = BenchmarkRun(
        "backends",
        "benchmarks/backends.py",
        f"python benchmarks/backends.py --rounds {args.rounds} --batches {args.batches}",
    )
    flags = ["--rounds", str(args.rounds), "--batches", str(args.batches)]
    peak = {
        (backend, config): child(backend, "memory", config, *flags)["peak_mb"]
        for backend in BACKENDS
        for config in CONFIGS
    }
    ms = {backend: child(backend, "time", *flags) for backend in BACKENDS}

    tables = {"steps": steps_table(peak, ms), "accumulation": accumulation_table(peak, ms)}
    path = run.write(tables, {"rounds": args.rounds, "batches": args.batches})
    load, seconds = run.recorded["load_average_before"], run.recorded["seconds"]
    for table in tables.values():
        print(markdown_table(table))
    print(
        f"MLP 784-512-512-10, XLA on both backends. Memory: a fresh process per backend and "
        f"configuration, 2 epochs of {args.batches} batches. Time: median per step over "
        f"{args.rounds} alternated rounds of {args.batches} batches, after one untimed fit "
        f"each. CPU threads: {os.cpu_count()}; 1-minute load average {load} before the run; "
        f"total {seconds:.0f} s. Written to {path.relative_to(path.parents[2])}."
    )


if __name__ == "__main__":
    main()
