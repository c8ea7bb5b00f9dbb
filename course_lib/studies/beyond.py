"""SGD, SAM and Lookahead compared: on a 2-D landscape and on digits (notebook 07).

The optimizers live in :mod:`course_lib.lookahead` and :mod:`course_lib.sam`, the landscape in
:mod:`course_lib.landscapes`; this module holds what notebook 07 and ``benchmarks/beyond.py``
measure with them, so that the two can never disagree:

* :func:`landscape_path`: the library's Keras versions on a 2-D loss (one weight vector p);
* :func:`compare_on_digits` and :func:`format_comparison`: SGD, SAM and Lookahead on digits.
"""

from __future__ import annotations

from course_lib.landscapes import SharpFlatLandscape
from course_lib.studies.overfitting import check_run_settings

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

METHODS: tuple[str, ...] = ("SGD", "SAM", "Lookahead")


def _check_path_arguments(learning_rate: float, steps: int) -> None:
    if not np.isfinite(learning_rate) or learning_rate <= 0:
        raise ValueError(f"learning_rate={learning_rate!r} must be a positive finite number.")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"steps={steps!r} must be a non-negative integer.")


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
    from course_lib.data import as_dataset, load_dataset

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
    "compare_on_digits",
    "format_comparison",
    "landscape_path",
]
