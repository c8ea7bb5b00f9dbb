"""Do Runge–Kutta optimizers overfit? The study of notebook 06 and ``benchmarks/overfitting.py``.

The training steps live in :mod:`course_lib.runge_kutta` and the coefficients in
:mod:`course_lib.tableaux`; this module trains them on digits, records per-epoch metrics, and
tabulates and plots the result, live in reduced form in the notebook and in full in the benchmark.
"""

from __future__ import annotations

from course_lib.data import as_dataset

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

#: The optimizers the study compares: label → (tableau or None for plain SGD, adaptive or not).
STUDY_METHODS: dict[str, tuple[str | None, bool]] = {
    "SGD": (None, False),
    "Heun": ("heun", False),
    "RK4": ("rk4", False),
    "Dormand–Prince (adaptive)": ("dormand_prince", True),
}


def check_run_settings(settings: Any) -> None:
    """Raise unless ``settings.seeds`` are distinct and non-empty and ``epochs``, ``batch_size``
    and ``hidden_units`` are positive integers (the study settings of notebooks 06 and 07)."""
    seeds = settings.seeds
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds={seeds!r} must be distinct and at least one.")
    for name in ("epochs", "batch_size", "hidden_units"):
        value = getattr(settings, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}={value!r} must be a positive integer.")


@dataclass(frozen=True)
class StudySettings:
    """What the overfitting study trains: an MLP on digits, SGD(learning_rate) as the step size.

    ``rtol``/``atol`` set the adaptive controller (:class:`course_lib.adaptive.AdaptiveStepSize`,
    with ``on_failure="accept"`` so that a long study never stops on one hard batch).
    """

    methods: tuple[str, ...] = tuple(STUDY_METHODS)
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int = 40
    learning_rate: float = 0.3
    batch_size: int = 64
    hidden_units: int = 128
    rtol: float = 1e-2
    atol: float = 1e-4

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in STUDY_METHODS]
        if unknown or not self.methods:
            raise ValueError(
                f"methods={self.methods!r}: choose among {list(STUDY_METHODS)} (at least one)."
            )
        check_run_settings(self)
        if not np.isfinite(self.learning_rate) or self.learning_rate <= 0:
            raise ValueError(
                f"learning_rate={self.learning_rate!r} must be a positive number (the step size)."
            )


@dataclass
class RunRecord:
    """One training run: per-epoch metrics measured at the end of each epoch.

    ``train_loss``/``train_accuracy`` are evaluated on the whole training set after the epoch
    (not ``fit``'s running average over the moving weights); ``gradients`` is the cumulative
    number of gradient evaluations (mini-batch forward/backward passes), rejected tries included.
    """

    method: str
    seed: int
    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    gradients: list[int] = field(default_factory=list)
    step_sizes: list[float] = field(default_factory=list)


class _EpochEvaluation(keras.callbacks.Callback):
    """Evaluate train and validation sets after each epoch; count gradient evaluations."""

    def __init__(self, record: RunRecord, train, validation, stages: int) -> None:
        super().__init__()
        self.record, self.train, self.validation, self.stages = record, train, validation, stages
        self.gradients = 0

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        tries = 1 + int(round(float(logs.get("rejections", 0.0))))
        self.gradients += self.stages * tries
        if "step_size" in logs:
            self.record.step_sizes.append(float(logs["step_size"]))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        train = self.model.evaluate(self.train, verbose=0, return_dict=True)
        validation = self.model.evaluate(self.validation, verbose=0, return_dict=True)
        self.record.train_loss.append(float(train["loss"]))
        self.record.train_accuracy.append(float(train["accuracy"]))
        self.record.val_loss.append(float(validation["loss"]))
        self.record.val_accuracy.append(float(validation["accuracy"]))
        self.record.gradients.append(self.gradients)


def _study_model(method: str, settings: StudySettings, seed: int) -> keras.Model:
    from course_lib.adaptive import AdaptiveStepSize
    from course_lib.environment import set_seed
    from course_lib.runge_kutta import RungeKuttaSequential

    tableau, adaptive = STUDY_METHODS[method]
    set_seed(seed)
    layers = [
        keras.Input((64,)),
        keras.layers.Dense(settings.hidden_units, activation="relu"),
        keras.layers.Dense(10),
    ]
    if tableau is None:
        model = keras.Sequential(layers)
    else:
        controller = (
            AdaptiveStepSize(rtol=settings.rtol, atol=settings.atol, on_failure="accept")
            if adaptive
            else None
        )
        model = RungeKuttaSequential(layers, tableau=tableau, adaptive=controller)
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=settings.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def train_study_run(method: str, seed: int, settings: StudySettings, data: Any) -> RunRecord:
    """Train one method from one seed (weights and batch order both follow the seed)."""
    from course_lib.tableaux import get_tableau

    import warnings

    if method not in STUDY_METHODS:
        raise ValueError(f"method={method!r}: choose among {list(STUDY_METHODS)}.")
    tableau, adaptive = STUDY_METHODS[method]
    stages = 1 if tableau is None else get_tableau(tableau).stages_needed(adaptive=adaptive)
    keras.backend.clear_session()
    model = _study_model(method, settings, seed)
    record = RunRecord(method=method, seed=seed)
    train = as_dataset(data.x_train, data.y_train, 512)
    validation = as_dataset(data.x_val, data.y_val, 512)
    batches = as_dataset(data.x_train, data.y_train, settings.batch_size, shuffle_seed=seed)
    evaluation = _EpochEvaluation(record, train, validation, stages)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # on_failure="accept" warns per rejected-out step
        model.fit(batches, epochs=settings.epochs, shuffle=False, verbose=0, callbacks=[evaluation])
    return record


def run_overfitting_study(settings: StudySettings, data: Any | None = None) -> list[RunRecord]:
    """Every method from every seed; ``data`` defaults to ``load_dataset("digits")``."""
    if data is None:
        from course_lib.data import load_dataset

        data = load_dataset("digits")
    return [
        train_study_run(method, seed, settings, data)
        for seed in settings.seeds
        for method in settings.methods
    ]


_METRICS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")


def _epoch_within_budget(record: RunRecord, budget: int) -> int:
    """Index of the last epoch whose cumulative gradient count is within ``budget``."""
    within = [i for i, count in enumerate(record.gradients) if count <= budget]
    if not within:
        raise ValueError(
            f"{record.method} (seed {record.seed}) used {record.gradients[0]} gradients in its "
            f"first epoch, more than the budget {budget}; train longer or raise the budget."
        )
    return within[-1]


def study_rows(records: Sequence[RunRecord], comparison: str) -> list[dict[str, Any]]:
    """Mean and spread (min–max over seeds) per method, at equal epochs or equal gradients.

    ``comparison="epochs"`` reads every run at its last epoch. ``comparison="gradients"`` gives
    every method the gradient evaluations SGD used in all its epochs, and reads each run at its
    last epoch within that budget (Heun: half the epochs, RK4: a quarter...).
    """
    if comparison not in ("epochs", "gradients"):
        raise ValueError(f"comparison={comparison!r} must be 'epochs' or 'gradients'.")
    methods = list(dict.fromkeys(r.method for r in records))
    budget = None
    if comparison == "gradients":
        sgd = [r for r in records if r.method == "SGD"]
        if not sgd:
            raise ValueError("comparison='gradients' needs SGD runs to set the budget.")
        budget = min(r.gradients[-1] for r in sgd)
    rows = []
    for method in methods:
        runs = [r for r in records if r.method == method]
        epochs = [
            len(r.gradients) - 1 if budget is None else _epoch_within_budget(r, budget)
            for r in runs
        ]
        row: dict[str, Any] = {"method": method, "seeds": len(runs)}
        row["epochs"] = [e + 1 for e in epochs]
        row["gradients"] = [r.gradients[e] for r, e in zip(runs, epochs, strict=True)]
        for metric in _METRICS:
            values = np.array([getattr(r, metric)[e] for r, e in zip(runs, epochs, strict=True)])
            row[metric] = (float(values.mean()), float(values.min()), float(values.max()))
        gap = np.array([r.val_loss[e] - r.train_loss[e] for r, e in zip(runs, epochs, strict=True)])
        row["gap"] = (float(gap.mean()), float(gap.min()), float(gap.max()))
        rows.append(row)
    return rows


def _mean_spread(values: tuple[float, float, float], digits: int) -> str:
    mean, low, high = values
    return f"{mean:.{digits}f} ({low:.{digits}f}–{high:.{digits}f})"


def format_study_table(rows: Sequence[dict[str, Any]], digits: int = 3) -> str:
    """A markdown table: mean (min–max over seeds) of each metric, one row per method."""
    header = (
        "| method | epochs | gradient evaluations | train loss | val loss | val − train loss "
        "| train acc | val acc |\n|---|---|---|---|---|---|---|---|"
    )
    lines = [header]
    for row in rows:
        epochs = sorted(set(row["epochs"]))
        epoch_text = str(epochs[0]) if len(epochs) == 1 else f"{epochs[0]}–{epochs[-1]}"
        gradients = int(np.mean(row["gradients"]))
        lines.append(
            f"| {row['method']} | {epoch_text} | {gradients:,} "
            f"| {_mean_spread(row['train_loss'], digits)} "
            f"| {_mean_spread(row['val_loss'], digits)} "
            f"| {_mean_spread(row['gap'], digits)} "
            f"| {_mean_spread(row['train_accuracy'], digits)} "
            f"| {_mean_spread(row['val_accuracy'], digits)} |"
        )
    return "\n".join(lines)


def plot_study(records: Sequence[RunRecord], axes: Any = None) -> Any:
    """Validation loss and training loss against gradient evaluations, mean over seeds."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(12, 4))
    methods = list(dict.fromkeys(r.method for r in records))
    for index, method in enumerate(methods):
        runs = [r for r in records if r.method == method]
        length = min(len(r.gradients) for r in runs)
        gradients = np.mean([r.gradients[:length] for r in runs], axis=0)
        for ax, metric in zip(axes, ("train_loss", "val_loss"), strict=True):
            values = np.array([getattr(r, metric)[:length] for r in runs])
            color = f"C{index}"
            ax.plot(gradients, values.mean(axis=0), color=color, label=method)
            low, high = values.min(axis=0), values.max(axis=0)
            ax.fill_between(gradients, low, high, color=color, alpha=0.2)
    for ax, title in zip(axes, ("training loss", "validation loss"), strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("gradient evaluations (mini-batch passes)")
        ax.set_ylabel(title)
        ax.set_title(f"{title.capitalize()}: mean over seeds, band min–max")
        ax.legend(fontsize=8)
    return axes
