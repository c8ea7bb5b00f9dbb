"""Cost of the Runge–Kutta training steps (notebooks 04 and 05): median time per step.

For a small (overhead-bound) and a larger (compute-bound) MLP, in one process with the
configurations alternated round by round, it measures the median step time (from a callback) of:

* Keras's standard ``train_step`` with SGD;
* a bare reference step that takes k gradients of the same batch, one after the other, and
  applies their mean: the floor for any k-stage method (k = 2, 3, 4, 6);
* every named tableau through :class:`course_lib.runge_kutta.RungeKuttaModel`, Heun also through
  :func:`course_lib.runge_kutta.inject_runge_kutta`;
* adaptive Dormand–Prince, with its gradient evaluations per accepted step;
* an ablation, Dormand–Prince's six stages with one-term trial points (see
  :func:`one_term_dormand_prince`): what the step costs without the weighted sums that build
  Dormand–Prince's trial points.

Goals: Heun within 5% of the 2-gradient reference, intrusive within 5% of clean, every tableau
within 10% of the reference with as many gradients. Steps are timed by the shared
:class:`course_lib.studies.timing.StepTimer`. The result goes to ``docs/results/multi_stage.json``
(notebook 04 claims against it) and its table into ``docs/benchmarks.md``; the script prints the
same table.

    python benchmarks/multi_stage.py [--rounds 5] [--steps 16]
"""

from __future__ import annotations

import course_lib
from course_lib.adaptive import AdaptiveStepSize, StepSizeLog
from course_lib.runge_kutta import RungeKuttaModel, inject_runge_kutta
from course_lib.studies.results import (
    BenchmarkRun,
    Table,
    markdown_table,
)
from course_lib.studies.timing import StepTimer
from course_lib.tableaux import TABLEAUX, ButcherTableau, get_tableau

import argparse
import logging
import statistics

import keras
import numpy as np
import tensorflow as tf

MODELS = {
    # name: (input width, hidden widths, batch size)
    "small MLP 32-64-10, batch 32": (32, (64,), 32),
    "MLP 512-512-512-10, batch 128": (512, (512, 512), 128),
}


class BareMultiGradient(keras.Model):
    """The floor for a k-stage method: k gradients of one batch, applied as their mean.

    Each pass depends on the previous gradient through a term of size 1e-30 (numerically
    nothing), so that TensorFlow can neither merge the identical passes nor run them in
    parallel: a real Runge–Kutta stage needs the previous one's gradient too.
    """

    def __init__(self, *args, gradients: int = 2, **kwargs):
        super().__init__(*args, **kwargs)
        self.gradients = gradients

    def train_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        variables = self.trainable_variables
        total, link, first_pred, first_loss = None, 0.0, None, None
        for _ in range(self.gradients):
            with tf.GradientTape() as tape:
                y_pred = self(x + link, training=True)
                loss = self.compute_loss(x=x, y=y, y_pred=y_pred, training=True)
            gradients = tape.gradient(loss, variables)
            link = tf.stop_gradient(1e-30 * tf.reduce_sum(gradients[0]))
            if total is None:
                total = gradients
            else:
                total = [t + g for t, g in zip(total, gradients, strict=True)]
            if first_pred is None:
                first_pred, first_loss = y_pred, loss
        loss_metric = next(metric for metric in self.metrics if metric.name == "loss")
        loss_metric.update_state(first_loss)
        self.optimizer.apply_gradients(
            zip([t / self.gradients for t in total], variables, strict=True)
        )
        return self.compute_metrics(x, y, first_pred)


def one_term_dormand_prince() -> ButcherTableau:
    """Dormand–Prince's six stages and weights b, with stage i at p − h·1e-30·g_(i−1).

    The ablation keeps everything a stage does (snapshot, moving the weights, a gradient that
    waits for the previous stage's, as in a real method and in the bare reference) and drops
    the arithmetic of the trial points: Dormand–Prince's rows of A combine up to five earlier
    gradients over every parameter, these combine one. Numerically every stage is at p.
    """
    tiny = 1e-30
    b = get_tableau("dormand_prince").b[:6]  # b_7 = 0: six stages are used
    rows = [tuple(tiny if j == i - 1 else 0.0 for j in range(6)) for i in range(6)]
    return ButcherTableau(
        name="dormand_prince_one_term", c=(0.0,) + (tiny,) * 5, a=tuple(rows), b=b, order=1
    )


def build(kind: str, spec, **kwargs) -> keras.Model:
    width, hidden, _ = spec
    course_lib.set_seed(0)
    inputs = keras.Input((width,))
    h = inputs
    for units in hidden:
        h = keras.layers.Dense(units, activation="relu")(h)
    outputs = keras.layers.Dense(10)(h)
    if kind == "bare":
        model = BareMultiGradient(inputs, outputs, gradients=kwargs["gradients"])
    elif kind == "rk":
        model = RungeKuttaModel(inputs=inputs, outputs=outputs, **kwargs)
    else:
        model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.SGD(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=False,
    )
    if kind == "intrusive":
        inject_runge_kutta(model, kwargs["tableau"])
    return model


def configurations():
    """(label, builder kind, kwargs, gradients per step, reference label)."""
    rows = [("SGD (standard train_step)", "standard", {}, 1, None)]
    for k in (2, 3, 4, 6):
        rows.append((f"bare {k}-gradient reference", "bare", {"gradients": k}, k, None))
    for name, tableau in TABLEAUX.items():
        k = tableau.stages_needed()
        reference = "SGD (standard train_step)" if k == 1 else f"bare {k}-gradient reference"
        rows.append((f"{name} (clean)", "rk", {"tableau": name}, k, reference))
        if name == "heun":
            rows.append(("heun (intrusive)", "intrusive", {"tableau": name}, k, reference))
    rows.append(
        (
            "dormand_prince, one-term trial points (ablation)",
            "rk",
            {"tableau": one_term_dormand_prince()},
            6,
            "bare 6-gradient reference",
        )
    )
    rows.append(
        (
            "dormand_prince adaptive (clean)",
            "rk",
            {"tableau": "dormand_prince", "adaptive": AdaptiveStepSize(rtol=1e-2, atol=1e-4)},
            None,
            "bare 6-gradient reference",
        )
    )
    return rows


def measure(rounds: int, steps: int) -> list[dict]:
    results = []
    for model_name, spec in MODELS.items():
        width, _, batch = spec
        rng = np.random.default_rng(0)
        x = rng.normal(size=(steps * batch, width)).astype("float32")
        y = rng.integers(0, 10, size=(steps * batch,))
        rows = configurations()
        models = {label: build(kind, spec, **kwargs) for label, kind, kwargs, _, _ in rows}
        times = {label: [] for label in models}
        evaluations = []
        for model in models.values():  # warm-up: tracing
            model.fit(x[: 2 * batch], y[: 2 * batch], batch_size=batch, verbose=0)
        for _ in range(rounds):
            for label, _, kwargs, _, _ in rows:
                timer = StepTimer()
                callbacks = [timer]
                log = StepSizeLog() if "adaptive" in kwargs else None
                if log is not None:
                    callbacks.append(log)
                models[label].fit(
                    x, y, batch_size=batch, verbose=0, shuffle=False, callbacks=callbacks
                )
                # A fit's first step also starts its data iterator: not timed.
                times[label].extend(timer.seconds[1:])
                if log is not None:
                    # Stage 1 once, the other 6 stages once per try.
                    evaluations.extend(1 + 6 * (1 + r) for r in log.rejections)
        medians = {label: statistics.median(values) for label, values in times.items()}
        for label, _, _, gradients, reference in rows:
            results.append(
                {
                    "model": model_name,
                    "method": label,
                    "gradients": gradients
                    if gradients is not None
                    else statistics.mean(evaluations),
                    "ms": 1000 * medians[label],
                    "vs_sgd": medians[label] / medians["SGD (standard train_step)"],
                    "vs_reference": None
                    if reference is None
                    else medians[label] / medians[reference],
                    "reference": reference,
                    "vs_clean": medians[label] / medians["heun (clean)"]
                    if label == "heun (intrusive)"
                    else None,
                }
            )
    return results


def goal(row: dict) -> str:
    if row["vs_clean"] is not None:
        return (
            f"≤ 1.05× clean: {'yes' if row['vs_clean'] <= 1.05 else 'no'} ({row['vs_clean']:.2f}×)"
        )
    if row["vs_reference"] is None or "adaptive" in row["method"] or "ablation" in row["method"]:
        return ""
    limit = 1.05 if row["method"].startswith("heun") else 1.10
    met = "yes" if row["vs_reference"] <= limit else "no"
    return f"≤ {limit:.2f}× reference: {met}"


class _DropRetracingWarning(logging.Filter):
    """Drop TensorFlow's "triggered tf.function retracing" warning, and only that one.

    Every model here builds its own train function, and each traces exactly once (its warm-up
    ``fit``). TensorFlow's detector counts traces per Python code object, shared by all the
    models' functions, so building dozens of models in a row looks to it like one function
    retracing. The warning is a false positive here; any other TensorFlow message still shows.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


def table_of(results: list[dict]) -> Table:
    """The rows as raw numbers; the docs round them per column."""
    return Table(
        columns=[
            ("model", ""),
            ("method", ""),
            ("gradients / step", ".3g"),
            ("ms / step", ".2f"),
            ("× SGD", ".2f"),
            ("× bare reference", ".2f"),
            ("goal", ""),
        ],
        rows=[
            [
                row["model"],
                row["method"],
                row["gradients"],
                row["ms"],
                row["vs_sgd"],
                row["vs_reference"],
                goal(row),
            ]
            for row in results
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternated rounds (default 5)")
    parser.add_argument("--steps", type=int, default=16, help="steps per round (default 16)")
    args = parser.parse_args()
    tf.get_logger().addFilter(_DropRetracingWarning())
    run = BenchmarkRun(
        "multi_stage",
        "benchmarks/multi_stage.py",
        f"python benchmarks/multi_stage.py --rounds {args.rounds} --steps {args.steps}",
    )
    table = table_of(measure(args.rounds, args.steps))
    path = run.write({"steps": table}, {"rounds": args.rounds, "steps": args.steps})
    load, seconds = run.recorded["load_average_before"], run.recorded["seconds"]
    print(
        f"Multi-stage training steps: median ms per step over {args.rounds} alternated rounds of "
        f"{args.steps} steps; TensorFlow {tf.__version__}, Keras {keras.__version__}, "
        f"jit_compile=False; 1-minute load average {load} before the run.\n"
    )
    print(markdown_table(table))
    print(f"total benchmark time {seconds:.0f} s; written to {path.relative_to(path.parents[2])}")


if __name__ == "__main__":
    main()
