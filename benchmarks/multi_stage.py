"""Cost of the Runge–Kutta training steps (notebooks 04, 05, A3): median time per step.

For a small (overhead-bound) and a larger (compute-bound) MLP, on Keras's TensorFlow backend
(``jit_compile=False``) and then on its JAX backend (jitted, in a child process, since a process
keeps one backend), with the configurations alternated round by round within each, it measures
the median step time (from a callback) of:

* Keras's standard ``train_step`` with SGD;
* a bare reference step that takes k gradients of the same batch, one after the other, and
  applies their mean: the floor for any k-stage method (k = 2, 3, 4, 6); on JAX a stateless
  ``train_step(state, data)`` written with Keras's public API only;
* every named tableau through :class:`course_lib.runge_kutta.RungeKuttaModel`, Heun also through
  :func:`course_lib.runge_kutta.inject_runge_kutta`;
* adaptive Dormand–Prince, with its gradient evaluations per accepted step (TensorFlow only);
* an ablation, Dormand–Prince's six stages with one-term trial points (see
  :func:`one_term_dormand_prince`): what the step costs without the weighted sums that build
  Dormand–Prince's trial points.

Goals: Heun within 5% of the 2-gradient reference, intrusive within 5% of clean, every tableau
within 10% of the reference with as many gradients on TensorFlow and within 5% on JAX (where XLA
fuses the arithmetic of the trial points, though each still reads the earlier stages'
gradients); the JAX table also gives each method's time over its TensorFlow time. Steps are
timed by the shared :class:`course_lib.studies.timing.StepTimer`. The result goes to
``docs/results/multi_stage.json`` (notebook 04 claims against it) and its tables into
``docs/benchmarks.md``; the script prints the same tables.

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
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np

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
        import tensorflow as tf

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


class BareMultiGradientJax(keras.Model):
    """:class:`BareMultiGradient` on JAX: a stateless ``train_step(state, data)``.

    Written with Keras's public stateless API only (``compute_loss_and_updates``,
    ``stateless_apply``, a ``StatelessScope`` for the metrics), as Keras's own JAX step is, so
    that it is the floor the library's stateless steps are measured against.
    """

    def __init__(self, *args, gradients: int = 2, **kwargs):
        super().__init__(*args, **kwargs)
        self.gradients = gradients

    def train_step(self, state, data):
        import jax

        trainable, non_trainable, optimizer_values, metric_values = state
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        grad_fn = jax.value_and_grad(self.compute_loss_and_updates, has_aux=True)
        total, link, first = None, 0.0, None
        for _ in range(self.gradients):
            (_, aux), gradients = grad_fn(
                trainable,
                non_trainable,
                metric_values,
                x + link,
                y,
                sample_weight,
                training=True,
                optimizer_variables=optimizer_values,
            )
            link = jax.lax.stop_gradient(1e-30 * keras.ops.sum(gradients[0]))
            total = (
                gradients
                if total is None
                else [t + g for t, g in zip(total, gradients, strict=True)]
            )
            first = aux if first is None else first
        loss, y_pred, non_trainable, metric_values = first
        trainable, optimizer_values = self.optimizer.stateless_apply(
            optimizer_values, [t / self.gradients for t in total], trainable
        )
        mapping = list(zip(self.metrics_variables, metric_values, strict=True))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            loss_metric = next(metric for metric in self.metrics if metric.name == "loss")
            loss_metric.update_state(loss, sample_weight=x.shape[0])
            logs = self.compute_metrics(x, y, y_pred, sample_weight)
        metric_values = [scope.get_current_value(v) for v in self.metrics_variables]
        return logs, (trainable, non_trainable, optimizer_values, metric_values)


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


def on_tensorflow() -> bool:
    return keras.backend.backend() == "tensorflow"


def build(kind: str, spec, **kwargs) -> keras.Model:
    """A compiled model: on TensorFlow without XLA, on JAX jitted (``fit`` always jits there)."""
    width, hidden, _ = spec
    course_lib.set_seed(0)
    inputs = keras.Input((width,))
    h = inputs
    for units in hidden:
        h = keras.layers.Dense(units, activation="relu")(h)
    outputs = keras.layers.Dense(10)(h)
    if kind == "bare":
        bare = BareMultiGradient if on_tensorflow() else BareMultiGradientJax
        model = bare(inputs, outputs, gradients=kwargs["gradients"])
    elif kind == "rk":
        model = RungeKuttaModel(inputs=inputs, outputs=outputs, **kwargs)
    else:
        model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.SGD(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=not on_tensorflow(),
    )
    if kind == "intrusive":
        inject_runge_kutta(model, kwargs["tableau"])
    return model


def configurations():
    """(label, builder kind, kwargs, gradients per step, reference label).

    On JAX the adaptive step is left out: its controller needs JAX's x64 mode, which changes
    the whole process's default precision; per gradient it costs what the fixed step costs.
    """
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
    if on_tensorflow():
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


def goal(row: dict, limit: float = 1.10) -> str:
    """Intrusive within 5% of clean, Heun within 5% and every other tableau within ``limit``
    of the bare reference with as many gradients (no goal for references and studies)."""
    if row["vs_clean"] is not None:
        return (
            f"≤ 1.05× clean: {'yes' if row['vs_clean'] <= 1.05 else 'no'} ({row['vs_clean']:.2f}×)"
        )
    if row["vs_reference"] is None or "adaptive" in row["method"] or "ablation" in row["method"]:
        return ""
    limit = 1.05 if row["method"].startswith("heun") else limit
    met = "yes" if row["vs_reference"] <= limit else "no"
    return f"≤ {limit:.2f}× reference: {met}"


def table_of(results: list[dict], tensorflow: list[dict] | None = None) -> Table:
    """The rows as raw numbers (the docs round them per column).

    Given the TensorFlow rows, it is the JAX table: each method's time over its TensorFlow
    time in a column of its own, and the 5 % goal for every tableau.
    """
    columns = [
        ("model", ""),
        ("method", ""),
        ("gradients / step", ".3g"),
        ("ms / step", ".2f"),
        ("× SGD", ".2f"),
        ("× bare reference", ".2f"),
    ]
    if tensorflow is not None:
        columns.append(("× TensorFlow", ".2f"))
        on_tensorflow = {(row["model"], row["method"]): row["ms"] for row in tensorflow}
    rows = []
    for row in results:
        cells = [
            row[key] for key in ("model", "method", "gradients", "ms", "vs_sgd", "vs_reference")
        ]
        if tensorflow is not None:
            cells.append(row["ms"] / on_tensorflow[(row["model"], row["method"])])
        rows.append([*cells, goal(row, limit=1.10 if tensorflow is None else 1.05)])
    return Table(columns=[*columns, ("goal", "")], rows=rows)


def measure_on_jax(rounds: int, steps: int) -> list[dict]:
    """:func:`measure` in a child process on Keras's JAX backend (a process keeps one backend)."""
    environment = dict(os.environ, KERAS_BACKEND="jax")
    command = [sys.executable, str(Path(__file__).resolve()), "--rounds", str(rounds)]
    command += ["--steps", str(steps), "--jax-worker"]
    completed = subprocess.run(command, env=environment, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"the JAX measurement failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternated rounds (default 5)")
    parser.add_argument("--steps", type=int, default=16, help="steps per round (default 16)")
    parser.add_argument("--jax-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.jax_worker:  # the child process of measure_on_jax: print the rows as JSON
        print(json.dumps(measure(args.rounds, args.steps)))
        return
    if not on_tensorflow():
        raise SystemExit(
            "Run this benchmark on the TensorFlow backend (unset KERAS_BACKEND): it measures "
            "the JAX rows in a child process of its own."
        )
    from course_lib.environment import no_retracing_warning

    import tensorflow as tf

    run = BenchmarkRun(
        "multi_stage",
        "benchmarks/multi_stage.py",
        f"python benchmarks/multi_stage.py --rounds {args.rounds} --steps {args.steps}",
    )
    with no_retracing_warning():
        tensorflow_rows = measure(args.rounds, args.steps)
    jax_rows = measure_on_jax(args.rounds, args.steps)
    tables = {
        "steps": table_of(tensorflow_rows),
        "jax_steps": table_of(jax_rows, tensorflow_rows),
    }
    path = run.write(tables, {"rounds": args.rounds, "steps": args.steps})
    load, seconds = run.recorded["load_average_before"], run.recorded["seconds"]
    import jax

    print(
        f"Multi-stage training steps: median ms per step over {args.rounds} alternated rounds of "
        f"{args.steps} steps; Keras {keras.__version__}; 1-minute load average {load} before the "
        f"run.\n\nTensorFlow {tf.__version__}, jit_compile=False:\n"
    )
    print(markdown_table(tables["steps"]))
    print(f"\nJAX {jax.__version__}, jitted (XLA):\n")
    print(markdown_table(tables["jax_steps"]))
    print(f"total benchmark time {seconds:.0f} s; written to {path.relative_to(path.parents[2])}")


if __name__ == "__main__":
    main()
