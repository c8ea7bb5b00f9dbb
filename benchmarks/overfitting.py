"""Do Runge–Kutta optimizers overfit? The full study behind notebook 06, regime by regime.

The seed article (Su Jianlin, "Keras之小众需求:自定义优化器", kexue.fm 2018) remarks that RK23/RK45
training steps overfit easily: very low training loss, poor validation loss and accuracy. This
script measures that on scikit-learn's digits in every arm of :mod:`course_lib.studies.regimes`
(long training, noisy labels, two controller tolerances, two batch sizes, a small-step sanity
check), each with SGD, the fixed-step twins of RK23 and RK45, the adaptive optimizers and SGD
replaying their accepted steps, paired by seed. The readings the verdicts read form Holm's
family, fixed in advance and corrected for their number; every other reading is descriptive
(uncorrected). Each regime gets a verdict by the rule notebook 06 states before any number; the
small-step arm is a check of the harness.

It runs on Keras's JAX backend (it sets ``KERAS_BACKEND=jax`` and ``JAX_ENABLE_X64=1`` for its
worker processes; ``--backend tensorflow`` runs the same on TensorFlow, several times slower),
spreads the (regime, seed) runs over ``--workers`` processes (default: one per CPU core), prints
each one as it finishes, and writes

* ``docs/results/overfitting.json`` through :class:`course_lib.studies.results.BenchmarkRun`
  (raw numbers: per regime its settings, rows, readings, failures and curves; the verdicts);
* ``docs/overfitting.md`` (the tables rendered from that file, and what they show) and its three
  figures, ``docs/overfitting.png`` and ``docs/overfitting_end.png`` (the forest plots at
  matched training loss and at the end of training) and ``docs/overfitting_curves.png``;
* README's blocks of verdicts and of the harness check.

Run ``python benchmarks/overfitting.py`` for the full study (12 seeds; see docs/overfitting.md for
how long it took). ``--scale provisional`` runs the same arms with shorter budgets and 6 seeds
and marks its result provisional; ``--quick`` is a smoke test (2 seeds, a few epochs) that writes
under ``build/overfitting-quick/`` unless ``--out`` says otherwise; ``--render`` rewrites the page
and figures from the existing result file without training.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SEEDS = {"full": 12, "provisional": 6, "quick": 2}

# --------------------------------------------------------------------------------------------
# The worker: one process trains (regime, seed) jobs and keeps one regime's models compiled
# --------------------------------------------------------------------------------------------

_CACHE: dict[str, Any] = {}


def _start_worker(backend: str) -> None:
    """Set the backend before Keras loads (a worker process starts fresh)."""
    os.environ["KERAS_BACKEND"] = backend
    if backend == "jax":
        os.environ["JAX_ENABLE_X64"] = "1"
        os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
    sys.path.insert(0, str(ROOT))
    import course_lib  # noqa: F401  (quiet TensorFlow first)


def train_regime_seed(scale: str, key: str, seed: int) -> tuple[str, int, list, float, float]:
    """Every method of regime ``key`` from ``seed``: the records, wall and CPU seconds taken.

    The worker reuses a regime's compiled models for its next seed of the same regime.
    """
    from course_lib.data import load_dataset
    from course_lib.studies.overfitting import Measurements, train_method
    from course_lib.studies.regimes import regimes

    import gc

    started, cpu = time.perf_counter(), time.process_time()
    regime = next(r for r in regimes(scale) if r.key == key)
    settings = regime.settings((seed,))
    if _CACHE.get("regime") != key:
        _CACHE.clear()
        gc.collect()
        data = load_dataset("digits")
        _CACHE.update(regime=key, data=data, models={}, measurements=Measurements(settings, data))
    records: list = []
    for label in settings.ordered_methods():
        from course_lib.studies.overfitting import METHODS

        source = METHODS[label].replays
        sources = {r.seed: r for r in records if r.method == source} if source else None
        records += train_method(
            label, settings, _CACHE["data"], sources, _CACHE["measurements"], _CACHE["models"]
        )
    return key, seed, records, time.perf_counter() - started, time.process_time() - cpu


# --------------------------------------------------------------------------------------------
# The main process: schedule, show progress, gather, write
# --------------------------------------------------------------------------------------------


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def run_all(
    scale: str, seeds: Sequence[int], workers: int, backend: str
) -> tuple[dict[str, list], dict[str, dict[str, float]]]:
    """Every (regime, seed) job over ``workers`` processes: records, and per regime the wall
    and CPU seconds its jobs took (CPU time says what a busy machine's wall time cannot)."""
    from course_lib.studies.regimes import regimes

    jobs = [(r.key, s) for r in regimes(scale) for s in seeds]
    records: dict[str, list] = {key: [] for key, _ in jobs}
    seconds: dict[str, float] = dict.fromkeys(records, 0.0)
    cpu_seconds: dict[str, float] = dict.fromkeys(records, 0.0)
    started = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    print(f"{len(jobs)} jobs (regime × seed) on {workers} {backend} worker processes", flush=True)
    with concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=context, initializer=_start_worker, initargs=(backend,)
    ) as pool:
        pending = [pool.submit(train_regime_seed, scale, key, seed) for key, seed in jobs]
        for done, future in enumerate(concurrent.futures.as_completed(pending), start=1):
            key, seed, runs, took, cpu = future.result()
            records[key] += runs
            seconds[key] += took
            cpu_seconds[key] += cpu
            elapsed = time.perf_counter() - started
            left = elapsed / done * (len(jobs) - done)
            print(
                f"[{done:3d}/{len(jobs)}] {key} seed {seed}: {took:5.1f} s ({cpu:5.1f} s CPU) · "
                f"elapsed "
                f"{_clock(elapsed)} · about {_clock(left)} left",
                flush=True,
            )
    for key in records:  # the order of the seeds, whatever order the jobs finished in
        records[key].sort(key=lambda r: (r.seed,))
    return records, {"wall": seconds, "cpu": cpu_seconds}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scale",
        choices=("full", "provisional", "quick"),
        default="full",
        help="the study's budgets (default), shorter ones marked provisional, or a smoke test",
    )
    parser.add_argument("--quick", action="store_true", help="same as --scale quick")
    parser.add_argument("--seeds", type=int, help="seeds 0..N-1 (default: 12 full, 6 provisional)")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="processes (default: cores)"
    )
    parser.add_argument(
        "--backend", choices=("jax", "tensorflow"), default="jax", help="Keras backend (jax)"
    )
    parser.add_argument("--out", type=Path, help="folder of the result file, the page and figures")
    parser.add_argument(
        "--render",
        action="store_true",
        help="no training: rewrite the page and figures from the existing result file",
    )
    args = parser.parse_args(argv)
    scale = "quick" if args.quick else args.scale
    seeds = tuple(range(args.seeds or SEEDS[scale]))
    out = args.out or (ROOT / "build" / "overfitting-quick" if scale == "quick" else ROOT / "docs")

    _start_worker(args.backend)  # the main process renders only, on the same backend
    from course_lib.studies.overfitting_report import render, write_report
    from course_lib.studies.results import BenchmarkRun

    directory = out / "results" if out.name == "docs" else out
    if args.render:
        render(out, directory)
        print(f"rewrote {out / 'overfitting.md'} and its figures from {directory}")
        return

    command = "python benchmarks/overfitting.py" + "".join(
        f" {a}" for a in (argv if argv is not None else sys.argv[1:])
    )
    run = BenchmarkRun(
        "overfitting",
        "benchmarks/overfitting.py",
        command,
        directory=directory,
        docs=[out / "overfitting.md"],
    )
    workers = max(1, args.workers)
    records, seconds = run_all(scale, seeds, workers, args.backend)
    write_report(run, records, seconds, scale=scale, backend=args.backend, out=out, workers=workers)
    print(f"wrote {run.directory / 'overfitting.json'} and {out / 'overfitting.md'}")
    print(f"study took {_clock(run.recorded['seconds'])} (m:s)")


if __name__ == "__main__":
    main()
