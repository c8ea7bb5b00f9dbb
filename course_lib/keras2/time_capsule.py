"""The problem that the Keras 2 appendix shares with Keras 3 (taught in A1_keras2_time_capsule).

Keras 2 (``tf_keras``) trains the article's way only in graph mode, and graph mode is global to a
process, while Keras 3 trains only with eager execution (``import tensorflow`` loads Keras 3 in a
graph-mode process too, but its ``fit`` fails there). The appendix therefore trains each side in
its own process, on the *same* problem defined here, and compares the final weights:

* :func:`shared_problem`: seeded NumPy data, the layer sizes and the initial weights, so that
  both Keras versions start from identical weights and see identical batches in identical order
  (``shuffle=False``, and a sample count that is a multiple of the batch size);
* :func:`train_keras3`: the Keras 3 reference training of one kind (see :data:`KINDS`) with the
  course's own classes (``PlainSGD``, ``MomentumSGD``, ``SoftBatch``, ``inject_runge_kutta``);
* :func:`keras3_reference_weights`: the same in a fresh subprocess
  (``python -m course_lib.keras2.time_capsule KIND[,KIND...] OUTFILE``), for a graph-mode
  kernel, where Keras 3 cannot train.

Importing this module imports only NumPy (Keras 3 only inside :func:`train_keras3`).
The idea and the Keras 2 code style come from Su Jianlin, "Keras之小众需求:自定义优化器",
kexue.fm 2018; the code is our own.
"""

from __future__ import annotations

from course_lib.environment import run_module_in_subprocess

import sys
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

__all__ = [
    "KERAS2_HEIRS",
    "KERAS2_KINDS",
    "KINDS",
    "SharedProblem",
    "heirs_table",
    "keras2_reference_weights",
    "keras3_reference_weights",
    "max_abs_difference",
    "shared_problem",
    "train_keras3",
    "weights_of",
]

#: The reference trainings both sides know how to run.
KINDS: tuple[str, ...] = ("sgd", "momentum", "soft_batch", "heun")
#: What the Keras 2 side also runs: Keras 2's own SGD, the article-style (leaking) soft batch and
#: the soft batch corrected by selecting values instead of building the update in a branch.
KERAS2_KINDS: tuple[str, ...] = (*KINDS, "keras2_sgd", "article_soft_batch", "select_soft_batch")


#: Each Keras 2 construct of the article, its Keras 3 heir, and the notebook that teaches the heir.
KERAS2_HEIRS: tuple[tuple[str, str, str], ...] = (
    (
        "`Optimizer.get_updates(loss, params)`",
        "`update_step(gradient, variable, learning_rate)`",
        "02_minimal_optimizer",
    ),
    (
        "`self.get_gradients(loss, params)`",
        "the `gradient` argument of `update_step`",
        "01_reading_keras_sgd",
    ),
    (
        "`K.zeros(shape)` slots made in `get_updates`",
        "`add_optimizer_variables(variables, name)` in `build`",
        "02_minimal_optimizer",
    ),
    (
        "`K.gradients(loss, params)` in a hand-built train function",
        "gradients taken by `train_step` (a `GradientTape`)",
        "04_heun_train_step",
    ),
    (
        "`self.iterations` moved by hand with `K.update_add`",
        "`self.iterations`, incremented by `apply`",
        "01_reading_keras_sgd",
    ),
    (
        "`K.update(x, new)` / `K.update_add(x, d)`",
        "`self.assign(x, new)` / `self.assign_add(x, d)`",
        "02_minimal_optimizer",
    ),
    (
        "`K.switch(cond, then_fn, else_fn)` given functions, scalar cond (a `tf.cond`)",
        "`ops.cond(pred, true_fn, false_fn)`",
        "03_soft_batch",
    ),
    (
        "`K.switch(cond, a, b)` given finished tensors, scalar cond (a `tf.cond` handing one back)",
        "`ops.where(cond, a, b)`: a different mechanism, the same effect (pick between values)",
        "A2_same_optimizers_on_jax",
    ),
    (
        "`K.function(...)` + `model.train_function = f`",
        "`train_step(self, data)`, or `inject_runge_kutta(model)`",
        "04_heun_train_step",
    ),
)


def heirs_table() -> str:
    """:data:`KERAS2_HEIRS` as a markdown table with links to the notebooks."""
    lines = ["| Keras 2 (the article) | Keras 3 heir | taught in |", "| --- | --- | --- |"]
    for old, new, notebook in KERAS2_HEIRS:
        lines.append(f"| {old} | {new} | [{notebook}]({notebook}.ipynb) |")
    return "\n".join(lines)


class SharedProblem(NamedTuple):
    """Everything both Keras versions must agree on before the first step."""

    x: np.ndarray  # (samples, inputs) float32
    y: np.ndarray  # (samples, 1) float32 regression targets
    initial_weights: list[np.ndarray]  # kernel, bias, kernel, bias of Dense(hidden, tanh), Dense(1)
    hidden_units: int
    batch_size: int
    epochs: int
    learning_rate: float
    momentum: float
    soft_batch_steps: int


def shared_problem(samples: int = 128, inputs: int = 4, hidden_units: int = 8) -> SharedProblem:
    """The seeded regression problem of the appendix: a 4-8-1 tanh network, MSE loss.

    ``samples`` must be a multiple of the batch size (16) and of ``16 * soft_batch_steps`` (64),
    so that every epoch ends on a complete soft-batch group and no partial batch differs between
    the two Keras versions.
    """
    for name, value in (("samples", samples), ("inputs", inputs), ("hidden_units", hidden_units)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} must be a positive integer.")
    if samples % 64:
        raise ValueError(
            f"samples={samples} must be a multiple of 64 (batch 16 × soft-batch steps 4), so "
            "that every epoch ends on a complete group; pass e.g. samples=128."
        )
    rng = np.random.default_rng(2018)
    x = rng.normal(size=(samples, inputs)).astype(np.float32)
    true_weights = rng.normal(size=(inputs, 1))
    y = (np.tanh(x @ true_weights) + 0.1 * rng.normal(size=(samples, 1))).astype(np.float32)
    limit_1 = np.sqrt(6.0 / (inputs + hidden_units))
    limit_2 = np.sqrt(6.0 / (hidden_units + 1))
    initial_weights = [
        rng.uniform(-limit_1, limit_1, size=(inputs, hidden_units)).astype(np.float32),
        np.zeros(hidden_units, dtype=np.float32),
        rng.uniform(-limit_2, limit_2, size=(hidden_units, 1)).astype(np.float32),
        np.zeros(1, dtype=np.float32),
    ]
    return SharedProblem(
        x=x,
        y=y,
        initial_weights=initial_weights,
        hidden_units=hidden_units,
        batch_size=16,
        epochs=2,
        learning_rate=0.1,
        momentum=0.9,
        soft_batch_steps=4,
    )


def _check_kind(kind: object, known: tuple[str, ...] = KINDS) -> str:
    if kind not in known:
        raise ValueError(f"kind={kind!r} is not a reference training; choose one of {list(known)}.")
    return kind  # type: ignore[return-value]


def _check_kinds(kinds: str | Iterable[str], known: tuple[str, ...] = KINDS) -> list[str]:
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    if not kinds:
        raise ValueError(f"kinds is empty; pass one or more of {list(known)}.")
    return [_check_kind(kind, known) for kind in kinds]


def train_keras3(kind: str, problem: SharedProblem | None = None) -> dict[str, np.ndarray]:
    """Train the shared problem with the course's Keras 3 classes; needs an eager process.

    Returns ``{"w0": ..., "w1": ..., "loss": per-epoch losses}``, the final weights in
    ``model.get_weights()`` order. The kinds:

    * ``"sgd"``: ``PlainSGD(lr)``;  ``"momentum"``: ``MomentumSGD(lr, momentum)``;
    * ``"soft_batch"``: ``SoftBatch(PlainSGD(lr), steps)`` at the same micro-batch size;
    * ``"heun"``: ``PlainSGD(lr)`` with ``inject_runge_kutta(model, "heun")``.
    """
    kind = _check_kind(kind)
    problem = problem or shared_problem()
    import keras
    import tensorflow as tf

    if not tf.executing_eagerly():
        raise RuntimeError(
            "train_keras3 needs eager execution, but this process disabled it (a Keras 2 "
            "graph-mode kernel?); call keras3_reference_weights(kind) to run it in a subprocess."
        )
    from course_lib.optimizers import MomentumSGD, PlainSGD
    from course_lib.runge_kutta import inject_runge_kutta
    from course_lib.soft_batch import SoftBatch

    model = keras.Sequential(
        [
            keras.Input((problem.x.shape[1],)),
            keras.layers.Dense(problem.hidden_units, activation="tanh"),
            keras.layers.Dense(1),
        ]
    )
    model.set_weights(problem.initial_weights)
    rate = problem.learning_rate
    if kind == "momentum":
        optimizer = MomentumSGD(rate, momentum=problem.momentum)
    elif kind == "soft_batch":
        optimizer = SoftBatch(PlainSGD(rate), steps=problem.soft_batch_steps)
    else:
        optimizer = PlainSGD(rate)
    model.compile(optimizer=optimizer, loss="mse", jit_compile=False)
    if kind == "heun":
        inject_runge_kutta(model, "heun")
    history = model.fit(
        problem.x,
        problem.y,
        batch_size=problem.batch_size,
        epochs=problem.epochs,
        shuffle=False,
        verbose=0,
    )
    result = {f"w{i}": w for i, w in enumerate(model.get_weights())}
    result["loss"] = np.asarray(history.history["loss"], dtype=np.float64)
    return result


def keras3_reference_weights(
    kinds: str | Iterable[str], timeout: float = 300.0
) -> dict[str, dict[str, np.ndarray]]:
    """:func:`train_keras3` for each kind, in one fresh eager subprocess.

    Returns ``{kind: {"w0": ..., ..., "loss": ...}}``. Use it from a graph-mode (Keras 2) kernel.
    """
    return run_module_in_subprocess("course_lib.keras2.time_capsule", _check_kinds(kinds), timeout)


def keras2_reference_weights(
    kinds: str | Iterable[str], timeout: float = 300.0
) -> dict[str, dict[str, np.ndarray]]:
    """The Keras 2 trainings of :mod:`course_lib.keras2.reference`, in one graph-mode subprocess.

    Returns ``{kind: {"w0": ..., ..., "loss": ...}}``, plus ``"motion"`` (max |Δw| per
    micro-batch of one epoch) for the soft-batch kinds. Use it from an eager (Keras 3) process.
    """
    kinds = _check_kinds(kinds, KERAS2_KINDS)
    return run_module_in_subprocess("course_lib.keras2.reference", kinds, timeout)


def weights_of(result: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The weight arrays ``w0, w1, ...`` of one result, in order."""
    count = sum(1 for name in result if name.startswith("w") and name[1:].isdigit())
    return [result[f"w{i}"] for i in range(count)]


def max_abs_difference(a: Iterable[np.ndarray], b: Iterable[np.ndarray]) -> float:
    """Largest |a - b| over two lists of same-shaped arrays (refuses mismatched lists)."""
    a, b = list(a), list(b)
    if len(a) != len(b):
        raise ValueError(f"the weight lists differ in length: {len(a)} and {len(b)} arrays.")
    largest = 0.0
    for i, (left, right) in enumerate(zip(a, b, strict=True)):
        left, right = np.asarray(left, np.float64), np.asarray(right, np.float64)
        if left.shape != right.shape:
            raise ValueError(f"array {i} has shapes {left.shape} and {right.shape}.")
        largest = max(largest, float(np.max(np.abs(left - right), initial=0.0)))
    return largest


def _main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(
            "usage: python -m course_lib.keras2.time_capsule KIND[,KIND...] OUTFILE, KIND in "
            f"{list(KINDS)}",
            file=sys.stderr,
        )
        return 2
    kinds = _check_kinds(argv[0].split(","))
    import course_lib  # noqa: F401  (quiet TensorFlow before it loads)

    arrays = {}
    for kind in kinds:
        import keras

        keras.backend.clear_session()
        for name, value in train_keras3(kind).items():
            arrays[f"{kind}/{name}"] = value
    np.savez(argv[1], **arrays)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
