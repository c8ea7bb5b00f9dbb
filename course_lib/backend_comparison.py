"""The same trainings on TensorFlow and on JAX, each backend in its own process (appendix A2).

Keras picks its backend at its first import; switching a running process
(``keras.config.set_backend``) leaves every Keras object made before it unusable, so the course
gives each backend a process of its own. The appendix therefore trains each optimizer of
notebooks 02–03 (and Lookahead of 07) on the same problem in both: in its own kernel, and in a
fresh subprocess on the other backend (:func:`train_on_backend`), and compares the final weights.

The problem (:func:`shared_problem`) fixes everything a backend could choose differently: the
digits examples and their order (``shuffle=False``), and the initial weights, drawn with NumPy
(each backend's random initializers draw different numbers from the same seed). What remains
is each backend's float32 arithmetic: the same operations, summed in a different order by
different kernels, so the weights agree to round-off, and need not agree bit for bit.

Importing this module imports only NumPy; Keras is imported when a training runs.
"""

from __future__ import annotations

from course_lib.environment import SUPPORTED_BACKENDS, run_module_in_subprocess
from course_lib.validation import require_choice

import sys
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np

__all__ = [
    "KINDS",
    "SharedProblem",
    "max_abs_difference",
    "shared_problem",
    "train",
    "train_on_backend",
]

#: The trainings both backends run: the optimizers of notebooks 02 and 03, and Lookahead (07).
KINDS: tuple[str, ...] = ("sgd", "momentum", "nesterov", "soft_batch", "lookahead")


class SharedProblem(NamedTuple):
    """Everything the two backends must agree on before the first step."""

    x: np.ndarray  # (examples, 64) float32 digits pixels
    y: np.ndarray  # (examples,) integer labels
    initial_weights: list[np.ndarray]  # kernel, bias, kernel, bias of Dense(32, relu), Dense(10)
    batch_size: int  # SGD's batch; SoftBatch's micro-batch is a quarter of it
    epochs: int


def shared_problem() -> SharedProblem:
    """1,280 digits (40 batches of 32), a 64-32-10 network, Glorot-uniform weights from NumPy."""
    from course_lib.data import load_dataset

    digits = load_dataset("digits")
    rng = np.random.default_rng(2026)
    initial_weights = []
    for fan_in, fan_out in ((64, 32), (32, 10)):
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        initial_weights.append(rng.uniform(-limit, limit, (fan_in, fan_out)).astype(np.float32))
        initial_weights.append(np.zeros(fan_out, np.float32))
    return SharedProblem(
        x=digits.x_train[:1280],
        y=digits.y_train[:1280],
        initial_weights=initial_weights,
        batch_size=32,
        epochs=2,
    )


def _optimizer(kind: str):
    from course_lib.lookahead import Lookahead
    from course_lib.optimizers import MomentumSGD, PlainSGD
    from course_lib.soft_batch import SoftBatch

    import keras

    if kind == "sgd":
        return PlainSGD(0.1)
    if kind == "momentum":
        return MomentumSGD(0.05, momentum=0.9)
    if kind == "nesterov":
        return MomentumSGD(0.05, momentum=0.9, nesterov=True)
    if kind == "soft_batch":
        return SoftBatch(keras.optimizers.Adam(1e-2), steps=4)
    return Lookahead(keras.optimizers.Adam(1e-2), sync_period=5, slow_step_size=0.5)


def train(kind: str, problem: SharedProblem | None = None) -> dict[str, np.ndarray]:
    """Train the shared problem with ``kind`` on this process's Keras backend.

    Returns ``{"w0": ..., "w3": ..., "loss": per-epoch losses}``. SoftBatch trains micro-batches
    of a quarter of the batch, four per real update; the others train whole batches.
    """
    require_choice(kind, "kind", KINDS)
    problem = problem or shared_problem()
    import keras

    model = keras.Sequential(
        [
            keras.Input((problem.x.shape[1],)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    model.set_weights(problem.initial_weights)
    model.compile(
        optimizer=_optimizer(kind),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    batch_size = problem.batch_size // 4 if kind == "soft_batch" else problem.batch_size
    history = model.fit(
        problem.x,
        problem.y,
        batch_size=batch_size,
        epochs=problem.epochs,
        shuffle=False,
        verbose=0,
    )
    result = {f"w{i}": w for i, w in enumerate(model.get_weights())}
    result["loss"] = np.asarray(history.history["loss"], dtype=np.float64)
    return result


def train_on_backend(
    backend: str, kinds: str | Iterable[str], timeout: float = 300.0
) -> dict[str, dict[str, np.ndarray]]:
    """:func:`train` for each kind, in a fresh subprocess whose Keras runs on ``backend``.

    Returns ``{kind: {"w0": ..., "loss": ...}}``. The child gets this interpreter, the course's
    quiet TensorFlow settings and this checkout of ``course_lib`` first on its path. A failure
    raises ``RuntimeError`` with the child's last lines of output, not a bare exit code.
    """
    require_choice(backend, "backend", SUPPORTED_BACKENDS)
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    for kind in kinds:
        require_choice(kind, "kind", KINDS)
    return run_module_in_subprocess(
        "course_lib.backend_comparison", kinds, timeout, environment={"KERAS_BACKEND": backend}
    )


def max_abs_difference(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    """Largest |a − b| over the weights ``w0, w1, ...`` of two results of :func:`train`."""
    names = sorted(name for name in a if name.startswith("w"))
    if names != sorted(name for name in b if name.startswith("w")):
        raise ValueError("the two results hold different weights")
    return max(float(np.max(np.abs(a[n].astype(np.float64) - b[n]))) for n in names)


def _main(argv: Sequence[str]) -> int:
    if len(argv) != 2:
        print(
            f"usage: python -m course_lib.backend_comparison KIND[,KIND...] OUTFILE, KIND in "
            f"{list(KINDS)}; the backend is KERAS_BACKEND's",
            file=sys.stderr,
        )
        return 2
    import keras

    problem = shared_problem()
    arrays = {}
    for kind in argv[0].split(","):
        keras.backend.clear_session()
        for name, value in train(kind, problem).items():
            arrays[f"{kind}/{name}"] = value
    np.savez(argv[1], **arrays)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
