"""SGD, SAM and Lookahead compared: on a 2-D landscape and on digits (notebook 07).

The optimizers live in :mod:`course_lib.lookahead` and :mod:`course_lib.sam`, the landscape in
:mod:`course_lib.landscapes`; this module holds what notebook 07 and ``benchmarks/beyond.py``
measure with them, so that the two can never disagree:

* :func:`landscape_path`: the library's Keras versions on a 2-D loss (one weight vector p), and
  :func:`numpy_path`, the same three methods written out in NumPy, the reference the Keras
  versions are tested against; :func:`fit_path` trains any Keras optimizer or training step on
  the same loss, so that the notebook can compare the learner's own classes with both;
* :func:`sam_objective`: the loss SAM is designed to minimise, max over ‖ε‖ ≤ ρ of L(p + ε),
  found by a dense search over the disc (not SAM's first-order guess of the worst point);
* :func:`compare_on_digits` (one run: :func:`train_on_digits`), :func:`comparison_table` and
  :func:`differences_table`: SGD, SAM
  and Lookahead on digits over seeds, and how far each method's accuracy is from SGD's, seed by
  seed, measured against the spread over seeds.

Everything trains in float64. On the landscape that makes the Keras paths comparable with NumPy
to round-off. On digits it makes a live run comparable with a benchmark recorded on another
machine: in float32, ten epochs at learning rate 0.1 could carry rounding differences between
CPUs (their SIMD kernels sum in different orders) far enough to flip validation images; float64
starts those differences about half a billion times smaller but cannot rule a flip out, so
notebook 07 compares its live run with the benchmark to within one validation image.
"""

from __future__ import annotations

from course_lib.studies.overfitting import check_run_settings
from course_lib.studies.results import Table, markdown_table

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

METHODS: tuple[str, ...] = ("SGD", "SAM", "Lookahead")
#: Gradient evaluations per training step of each method.
GRADIENTS_PER_STEP: dict[str, int] = {"SGD": 1, "SAM": 2, "Lookahead": 1}
#: Added to ‖g‖ in SAM's perturbation, as in :mod:`course_lib.sam`.
NORM_EPSILON = 1e-12


# --------------------------------------------------------------------------------------------
# Settings shared by the landscape and the digits runs
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def float64_keras() -> Iterator[None]:
    """Keras's default float type is float64 inside the block, and what it was after it.

    Layers, losses, metrics and an optimizer's learning rate take the default type when they are
    created, so everything a run uses must be created inside the block.
    """
    import keras

    previous = keras.config.floatx()
    keras.config.set_floatx("float64")
    try:
        yield
    finally:
        keras.config.set_floatx(previous)


def check_method_settings(rho: Any, sync_period: Any, slow_step_size: Any) -> None:
    """Raise ``ValueError`` naming the argument unless SAM's ρ and Lookahead's k, α are valid.

    ρ ≥ 0 (0 makes SAM plain SGD at twice the cost), k a positive integer, α in (0, 1].
    """
    if isinstance(rho, bool) or not isinstance(rho, int | float) or not math.isfinite(rho):
        raise ValueError(f"rho={rho!r} must be a finite number ≥ 0 (SAM's radius), e.g. 0.05.")
    if rho < 0:
        raise ValueError(f"rho={rho!r} must be ≥ 0 (SAM's radius), e.g. 0.05.")
    if isinstance(sync_period, bool) or not isinstance(sync_period, int) or sync_period < 1:
        raise ValueError(
            f"sync_period={sync_period!r} must be a positive integer (Lookahead's k), e.g. 5."
        )
    if (
        isinstance(slow_step_size, bool)
        or not isinstance(slow_step_size, int | float)
        or not 0.0 < slow_step_size <= 1.0
    ):
        raise ValueError(
            f"slow_step_size={slow_step_size!r} must lie in (0, 1] (Lookahead's α), e.g. 0.5."
        )


def _check_path_arguments(method: str, learning_rate: float, steps: int) -> None:
    if method not in METHODS:
        raise ValueError(f"method={method!r}: choose one of {list(METHODS)}.")
    if (
        isinstance(learning_rate, bool)
        or not isinstance(learning_rate, int | float)
        or not math.isfinite(learning_rate)
        or learning_rate <= 0
    ):
        raise ValueError(f"learning_rate={learning_rate!r} must be a positive finite number.")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"steps={steps!r} must be a non-negative integer.")


# --------------------------------------------------------------------------------------------
# The 2-D landscape: paths and the SAM objective
# --------------------------------------------------------------------------------------------


def numpy_path(
    landscape: Any,
    method: str,
    p0: Sequence[float],
    learning_rate: float,
    steps: int,
    *,
    rho: float = 0.05,
    sync_period: int = 5,
    slow_step_size: float = 0.5,
) -> np.ndarray:
    """``method`` on ``landscape`` in float64 NumPy: all ``steps + 1`` points, one per row.

    * SGD: p ← p − h·∇L(p);
    * SAM: p ← p − h·∇L(p + ρ·g/(‖g‖ + 1e-12)) with g = ∇L(p);
    * Lookahead around SGD: k fast SGD steps, then slow ← slow + α·(fast − slow), fast ← slow.

    The reference :func:`landscape_path` (the library's Keras classes) is tested against.
    """
    _check_path_arguments(method, learning_rate, steps)
    check_method_settings(rho, sync_period, slow_step_size)
    fast = np.array(p0, dtype=np.float64)
    slow = fast.copy()
    points = [fast.copy()]
    for step in range(1, steps + 1):
        gradient = landscape.gradient(fast)
        if method == "SAM":
            perturbation = rho * gradient / (np.linalg.norm(gradient) + NORM_EPSILON)
            gradient = landscape.gradient(fast + perturbation)
        fast = fast - learning_rate * gradient
        if method == "Lookahead" and step % sync_period == 0:
            slow = slow + slow_step_size * (fast - slow)
            fast = slow.copy()
        points.append(fast.copy())
    return np.array(points)


def landscape_path(
    landscape: Any,
    method: str,
    p0: Sequence[float],
    learning_rate: float,
    steps: int,
    *,
    rho: float = 0.05,
    sync_period: int = 5,
    slow_step_size: float = 0.5,
) -> np.ndarray:
    """The library's Keras version of ``method`` on ``landscape``: all ``steps + 1`` points.

    ``SGD(learning_rate)``, wrapped in ``Lookahead`` or driven by ``SAMModel``, trained by
    :func:`fit_path` in float64, so that it can be compared with :func:`numpy_path` to round-off.
    """
    from course_lib.lookahead import Lookahead
    from course_lib.sam import SAMModel

    import keras

    _check_path_arguments(method, learning_rate, steps)
    check_method_settings(rho, sync_period, slow_step_size)
    with float64_keras():
        optimizer: Any = keras.optimizers.SGD(learning_rate)
        if method == "Lookahead":
            optimizer = Lookahead(optimizer, sync_period, slow_step_size)
        if method == "SAM":
            return fit_path(landscape, p0, steps, optimizer, SAMModel, rho=rho)
        return fit_path(landscape, p0, steps, optimizer)


def fit_path(
    landscape: Any,
    p0: Sequence[float],
    steps: int,
    optimizer: Any,
    model_class: Any = None,
    **model_arguments: Any,
) -> np.ndarray:
    """Train the 2-D weight p on ``landscape`` with ``fit``: all ``steps + 1`` points, one per row.

    The model's only weight is p (a bias-free ``Dense(2)`` on an input of ones, so its output is
    p), built as ``model_class(inputs=..., outputs=..., **model_arguments)`` (``keras.Model`` by
    default; a subclass brings its own ``train_step``), compiled with ``optimizer`` and trained
    one step per batch; ``landscape.keras_loss(y_true, y_pred)`` is the loss at p = ``y_pred``.

    Runs in float64, so Keras's default float type must already be float64 when ``optimizer`` is
    created (its learning rate is a variable of the default type): a float32 rate of 0.03 is off
    by 7e-10, which a comparison with :func:`numpy_path` at round-off would see.
    """
    import keras

    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"steps={steps!r} must be a non-negative integer.")
    if keras.config.floatx() != "float64":
        raise ValueError(
            "fit_path trains in float64 and the optimizer must have been created in float64: "
            "call keras.config.set_floatx('float64') before creating it."
        )
    model_class = keras.Model if model_class is None else model_class
    points = [np.asarray(p0, dtype=np.float64)]
    inputs = keras.Input((1,))
    layer = keras.layers.Dense(2, use_bias=False, name="p")
    model = model_class(inputs=inputs, outputs=layer(inputs), **model_arguments)
    layer.kernel.assign(points[0][None, :])
    model.compile(optimizer=optimizer, loss=landscape.keras_loss)
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: points.append(layer.kernel.numpy()[0].copy())
    )
    model.fit(
        np.ones((steps, 1)),
        np.zeros((steps, 2)),
        batch_size=1,
        shuffle=False,
        verbose=0,
        callbacks=[record],
    )
    return np.array(points)


def disc_offsets(rho: float, directions: int = 360, rings: int = 8) -> np.ndarray:
    """Points ε of the disc ‖ε‖ ≤ ρ: its centre, and ``directions`` angles on each of ``rings``
    circles of radius ρ/rings, 2ρ/rings, ..., ρ (the edge). Shape ``(1 + rings·directions, 2)``.
    """
    if isinstance(rho, bool) or not isinstance(rho, int | float) or not rho >= 0:
        raise ValueError(f"rho={rho!r} must be a number ≥ 0 (the radius of the disc).")
    for name, value in (("directions", directions), ("rings", rings)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} must be a positive integer.")
    angles = np.linspace(0.0, 2 * np.pi, directions, endpoint=False)
    radii = rho * np.arange(1, rings + 1) / rings
    ring_points = radii[:, None, None] * np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    return np.concatenate([np.zeros((1, 2)), ring_points.reshape(-1, 2)])


def sam_objective(
    landscape: Any, points: Any, rho: float, *, directions: int = 360, rings: int = 8
) -> np.ndarray:
    """max over ‖ε‖ ≤ ρ of L(p + ε) at each point p: the loss SAM is designed to minimise.

    Found by a dense search over the disc (:func:`disc_offsets`), not by SAM's first-order
    guess ε = ρ·g/‖g‖. With 360 directions the search misses the true maximum by at most
    L's change along 1/720 of a turn of the edge. Points are processed in chunks, so memory
    stays small for a whole grid.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim == 0 or points.shape[-1] != 2:
        raise ValueError(f"points must have a last axis of length 2, got shape {points.shape}.")
    offsets = disc_offsets(rho, directions, rings)
    flat = points.reshape(-1, 2)
    chunk = max(1, 2_000_000 // len(offsets))
    worst = np.empty(len(flat))
    for start in range(0, len(flat), chunk):
        block = flat[start : start + chunk, None, :] + offsets[None, :, :]
        worst[start : start + chunk] = landscape.value(block).max(axis=1)
    return worst.reshape(points.shape[:-1])


# --------------------------------------------------------------------------------------------
# Digits: validation accuracy of SGD, SAM and Lookahead
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ComparisonSettings:
    """An MLP on digits trained by SGD(learning_rate), SAM(rho) or Lookahead(SGD), in float64."""

    seeds: tuple[int, ...] = (0, 1)
    epochs: int = 10
    learning_rate: float = 0.1
    batch_size: int = 32
    hidden_units: int = 64
    rho: float = 0.05
    sync_period: int = 5
    slow_step_size: float = 0.5

    def __post_init__(self) -> None:
        check_run_settings(self)
        _check_path_arguments("SGD", self.learning_rate, 0)
        check_method_settings(self.rho, self.sync_period, self.slow_step_size)

    def describe(self) -> str:
        """One line: what was trained, for the header of a table."""
        return (
            f"MLP 64-{self.hidden_units}-10 on digits in float64, SGD lr {self.learning_rate}, "
            f"batch {self.batch_size}, {self.epochs} epochs, SAM ρ {self.rho}, Lookahead k "
            f"{self.sync_period} α {self.slow_step_size}, {len(self.seeds)} seeds"
        )


def _digits_model(method: str, settings: ComparisonSettings, seed: int) -> Any:
    from course_lib.environment import set_seed
    from course_lib.lookahead import Lookahead
    from course_lib.sam import SAMSequential

    import keras

    set_seed(seed)
    layers = [
        keras.Input((64,)),
        keras.layers.Dense(settings.hidden_units, activation="relu"),
        keras.layers.Dense(10),
    ]
    optimizer: Any = keras.optimizers.SGD(settings.learning_rate)
    if method == "SAM":
        model = SAMSequential(layers, rho=settings.rho)
    else:
        model = keras.Sequential(layers)
        if method == "Lookahead":
            optimizer = Lookahead(optimizer, settings.sync_period, settings.slow_step_size)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def train_on_digits(method: str, settings: ComparisonSettings, seed: int, data: Any) -> Any:
    """One run of the comparison: ``method`` trained from ``seed``; returns the trained model.

    Everything is created in float64 (layers, loss, metrics, the optimizer's learning rate) and
    the data is cast to it, whatever Keras's default float type outside.
    """
    from course_lib.data import as_dataset

    import keras

    if method not in METHODS:
        raise ValueError(f"method={method!r}: choose one of {list(METHODS)}.")
    x_train = data.x_train.astype(np.float64)
    with float64_keras():
        keras.backend.clear_session()
        model = _digits_model(method, settings, seed)
        batches = as_dataset(x_train, data.y_train, settings.batch_size, shuffle_seed=seed)
        model.fit(batches, epochs=settings.epochs, shuffle=False, verbose=0)
    return model


def compare_on_digits(
    settings: ComparisonSettings, methods: Sequence[str] = METHODS, data: Any = None
) -> dict[str, list[float]]:
    """Final validation accuracy of each method from each seed: ``{method: [acc per seed]}``.

    Weights and batch order both follow the seed; for one seed every method starts from the same
    weights and sees the same batches, so the runs of one seed form a pair (or triple). Each run
    is :func:`train_on_digits`, in float64.
    """
    from course_lib.data import as_dataset, load_dataset

    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"methods={list(methods)!r}: choose among {list(METHODS)}.")
    data = load_dataset("digits") if data is None else data
    validation = as_dataset(data.x_val.astype(np.float64), data.y_val, 512)
    results: dict[str, list[float]] = {method: [] for method in methods}
    for seed in settings.seeds:
        for method in methods:
            model = train_on_digits(method, settings, seed, data)
            with float64_keras():
                scores = model.evaluate(validation, verbose=0, return_dict=True)
            results[method].append(float(scores["accuracy"]))
    return results


def _check_results(results: Mapping[str, Sequence[float]]) -> dict[str, np.ndarray]:
    if not results:
        raise ValueError("results is empty: pass {method: [accuracy per seed]}.")
    arrays = {method: np.asarray(values, dtype=np.float64) for method, values in results.items()}
    counts = {method: len(values) for method, values in arrays.items()}
    if len(set(counts.values())) != 1 or min(counts.values()) < 1:
        raise ValueError(
            f"every method needs one accuracy per seed, and the same seeds; got counts {counts}."
        )
    return arrays


def comparison_table(results: Mapping[str, Sequence[float]]) -> Table:
    """Mean, standard deviation (over seeds, n − 1), min and max validation accuracy per method."""
    rows = []
    for method, values in _check_results(results).items():
        spread = float(values.std(ddof=1)) if len(values) > 1 else None
        rows.append(
            [
                method,
                GRADIENTS_PER_STEP.get(method, 1),
                len(values),
                float(values.mean()),
                spread,
                float(values.min()),
                float(values.max()),
            ]
        )
    columns = [
        ("method", ""),
        ("gradients per step", ""),
        ("seeds", ""),
        ("val accuracy mean", ".4f"),
        ("std over seeds", ".4f"),
        ("min", ".4f"),
        ("max", ".4f"),
    ]
    return Table(columns, rows)


def differences_table(results: Mapping[str, Sequence[float]], baseline: str = "SGD") -> Table:
    """Each method minus ``baseline``, seed by seed: mean, its standard error, and the count of
    seeds where the method was better, worse or equal.

    Runs of one seed share weights and batches, so the paired difference removes what the seed
    does to both; "within the spread over seeds" means the mean difference is less than two of
    its standard errors (std of the differences / √n) away from zero.
    """
    arrays = _check_results(results)
    if baseline not in arrays:
        raise ValueError(f"baseline={baseline!r} is not among the methods {list(arrays)}.")
    if len(arrays[baseline]) < 2:
        raise ValueError("a standard error needs at least two seeds.")
    rows = []
    for method, values in arrays.items():
        if method == baseline:
            continue
        difference = values - arrays[baseline]
        error = float(difference.std(ddof=1) / np.sqrt(len(difference)))
        rows.append(
            [
                f"{method} − {baseline}",
                float(difference.mean()),
                error,
                int((difference > 0).sum()),
                int((difference < 0).sum()),
                int((difference == 0).sum()),
            ]
        )
    columns = [
        ("difference", ""),
        ("mean", "+.4f"),
        ("standard error", ".4f"),
        ("seeds better", ""),
        ("worse", ""),
        ("equal", ""),
    ]
    return Table(columns, rows)


def format_comparison(results: Mapping[str, Sequence[float]]) -> str:
    """:func:`comparison_table` as markdown text (what the notebook prints)."""
    return markdown_table(comparison_table(results))


__all__ = [
    "GRADIENTS_PER_STEP",
    "METHODS",
    "ComparisonSettings",
    "check_method_settings",
    "compare_on_digits",
    "comparison_table",
    "differences_table",
    "disc_offsets",
    "fit_path",
    "float64_keras",
    "format_comparison",
    "landscape_path",
    "numpy_path",
    "sam_objective",
    "train_on_digits",
]
