"""Experiments with Lookahead and SAM (notebook 06 and ``benchmarks/beyond.py``).

The optimizers live in :mod:`course_lib.lookahead` and :mod:`course_lib.sam`; this module holds
what notebook 06 and its benchmark measure with them, so that the two can never disagree:

* :class:`SharpFlatLandscape`: a 2-D loss with a sharp, narrow minimum and a flat, wide one,
  with NumPy value and gradient and the same loss in Keras ops;
* :func:`sam_path` and :func:`lookahead_path`: the two methods in NumPy on such a loss;
* :func:`landscape_path`: the library's Keras versions on the same loss (one weight vector p);
* :func:`compare_on_digits` and :func:`format_comparison`: SGD, SAM and Lookahead on digits.
"""

from __future__ import annotations

from course_lib.lookahead import lookahead_interpolation
from course_lib.rk_experiments import check_run_settings

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

METHODS: tuple[str, ...] = ("SGD", "SAM", "Lookahead")


@dataclass(frozen=True)
class SharpFlatLandscape:
    """L(x, y) = 1 − d_s·exp(−(x − x_s)²/2σ_s²) − d_f·exp(−(x − x_f)²/2σ_f²) + c·y²/2.

    Along x: a sharp well at ``x_s`` (width σ_s) and a flat one at ``x_f`` (width σ_f); along y
    a plain valley. The defaults make the sharp well the slightly deeper one.
    """

    sharp_at: float = -1.0
    sharp_width: float = 0.2
    sharp_depth: float = 1.0
    flat_at: float = 1.0
    flat_width: float = 0.8
    flat_depth: float = 0.9
    valley: float = 1.0

    def __post_init__(self) -> None:
        for name in ("sharp_width", "sharp_depth", "flat_width", "flat_depth", "valley"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be > 0.")

    def _wells(self, x: Any, exp: Callable[[Any], Any]) -> tuple[Any, Any]:
        sharp = self.sharp_depth * exp(-((x - self.sharp_at) ** 2) / (2 * self.sharp_width**2))
        flat = self.flat_depth * exp(-((x - self.flat_at) ** 2) / (2 * self.flat_width**2))
        return sharp, flat

    def value(self, p: Any) -> np.ndarray:
        p = np.asarray(p, dtype=np.float64)
        x, y = p[..., 0], p[..., 1]
        sharp, flat = self._wells(x, np.exp)
        return 1.0 - sharp - flat + 0.5 * self.valley * y**2

    def gradient(self, p: Any) -> np.ndarray:
        p = np.asarray(p, dtype=np.float64)
        x, y = p[..., 0], p[..., 1]
        sharp, flat = self._wells(x, np.exp)
        dx = sharp * (x - self.sharp_at) / self.sharp_width**2
        dx = dx + flat * (x - self.flat_at) / self.flat_width**2
        return np.stack([dx, self.valley * y], axis=-1)

    def keras_loss(self, y_true: Any, y_pred: Any) -> Any:
        """The same loss for a model whose output is p (``y_true`` is ignored)."""
        from keras import ops

        x, y = y_pred[..., 0], y_pred[..., 1]
        sharp, flat = self._wells(x, ops.exp)
        return 1.0 - sharp - flat + 0.5 * self.valley * y**2

    @property
    def minimum(self) -> np.ndarray:
        """The sharp minimum (approximately: the flat well's tail shifts it by ~1e-3)."""
        return np.array([self.sharp_at, 0.0])

    @property
    def flat_minimum(self) -> np.ndarray:
        return np.array([self.flat_at, 0.0])


def _check_path_arguments(learning_rate: float, steps: int) -> None:
    if not np.isfinite(learning_rate) or learning_rate <= 0:
        raise ValueError(f"learning_rate={learning_rate!r} must be a positive finite number.")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"steps={steps!r} must be a non-negative integer.")


def sam_path(
    gradient: Callable[[np.ndarray], np.ndarray],
    p0: Sequence[float],
    learning_rate: float,
    rho: float,
    steps: int,
) -> np.ndarray:
    """SAM with SGD in NumPy: p ← p − h·∇L(p + ρ·g/(‖g‖ + 1e-12)); all ``steps + 1`` points."""
    _check_path_arguments(learning_rate, steps)
    points = [np.asarray(p0, dtype=np.float64)]
    for _ in range(steps):
        p = points[-1]
        g = gradient(p)
        points.append(p - learning_rate * gradient(p + rho * g / (np.linalg.norm(g) + 1e-12)))
    return np.array(points)


def lookahead_path(
    gradient: Callable[[np.ndarray], np.ndarray],
    p0: Sequence[float],
    learning_rate: float,
    steps: int,
    sync_period: int = 5,
    slow_step_size: float = 0.5,
) -> np.ndarray:
    """Lookahead around SGD in NumPy; all ``steps + 1`` points of the fast weights."""
    _check_path_arguments(learning_rate, steps)
    points = [np.asarray(p0, dtype=np.float64)]
    slow = points[0].copy()
    for step in range(1, steps + 1):
        fast = points[-1] - learning_rate * gradient(points[-1])
        if step % sync_period == 0:
            slow = lookahead_interpolation(slow, fast, slow_step_size)
            fast = slow.copy()
        points.append(fast)
    return np.array(points)


def landscape_path(
    landscape: SharpFlatLandscape,
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

    The model's only weight is p (a bias-free ``Dense(2)`` on an input of ones), trained by
    ``fit`` one step per batch; float64 so that it can be compared with NumPy to round-off.
    """
    from course_lib.lookahead import Lookahead
    from course_lib.sam import SAMModel

    import keras

    if method not in METHODS:
        raise ValueError(f"method={method!r}: choose one of {list(METHODS)}.")
    _check_path_arguments(learning_rate, steps)
    points = [np.asarray(p0, dtype=np.float64)]
    previous = keras.config.floatx()
    keras.config.set_floatx("float64")
    try:
        inputs = keras.Input((1,))
        layer = keras.layers.Dense(2, use_bias=False, name="p")
        outputs = layer(inputs)
        optimizer: Any = keras.optimizers.SGD(learning_rate)
        if method == "SAM":
            model = SAMModel(inputs=inputs, outputs=outputs, rho=rho)
        else:
            model = keras.Model(inputs, outputs)
            if method == "Lookahead":
                optimizer = Lookahead(optimizer, sync_period, slow_step_size)
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
    finally:
        keras.config.set_floatx(previous)
    return np.array(points)


# --------------------------------------------------------------------------------------------
# Digits: validation accuracy of SGD, SAM and Lookahead
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ComparisonSettings:
    """An MLP on digits trained by SGD(learning_rate), SAM(rho) or Lookahead(SGD)."""

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


def compare_on_digits(
    settings: ComparisonSettings, methods: Sequence[str] = METHODS, data: Any = None
) -> dict[str, list[float]]:
    """Final validation accuracy of each method from each seed: ``{method: [acc per seed]}``.

    Weights and batch order both follow the seed; every method sees the same batches.
    """
    from course_lib.data import load_dataset
    from course_lib.rk_experiments import as_dataset

    import keras

    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"methods={list(methods)!r}: choose among {list(METHODS)}.")
    data = load_dataset("digits") if data is None else data
    validation = as_dataset(data.x_val, data.y_val, 512)
    results: dict[str, list[float]] = {method: [] for method in methods}
    for seed in settings.seeds:
        for method in methods:
            keras.backend.clear_session()
            model = _digits_model(method, settings, seed)
            batches = as_dataset(data.x_train, data.y_train, settings.batch_size, shuffle_seed=seed)
            model.fit(batches, epochs=settings.epochs, shuffle=False, verbose=0)
            scores = model.evaluate(validation, verbose=0, return_dict=True)
            results[method].append(float(scores["accuracy"]))
    return results


def format_comparison(results: dict[str, Sequence[float]], gradients: dict[str, int]) -> str:
    """A markdown table: mean, min and max validation accuracy over seeds, per method."""
    lines = [
        "| method | gradients per step | seeds | val accuracy mean | min | max |",
        "|---|---|---|---|---|---|",
    ]
    for method, values in results.items():
        values = np.asarray(values)
        lines.append(
            f"| {method} | {gradients.get(method, 1)} | {len(values)} | {values.mean():.4f} "
            f"| {values.min():.4f} | {values.max():.4f} |"
        )
    return "\n".join(lines)


#: Gradient evaluations per training step of each method.
GRADIENTS_PER_STEP: dict[str, int] = {"SGD": 1, "SAM": 2, "Lookahead": 1}

__all__ = [
    "GRADIENTS_PER_STEP",
    "METHODS",
    "ComparisonSettings",
    "SharpFlatLandscape",
    "compare_on_digits",
    "format_comparison",
    "landscape_path",
    "lookahead_path",
    "sam_path",
]
