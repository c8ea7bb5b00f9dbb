"""Do Runge–Kutta optimizers overfit? The harness of notebook 06 and ``benchmarks/overfitting.py``.

The seed article (Su Jianlin, "Keras之小众需求:自定义优化器", kexue.fm 2018) says RK23/RK45-style
optimizers drive the training loss very low while the validation loss and accuracy stay poor. An
adaptive Runge–Kutta optimizer differs from SGD in two ways at once: its *order* (how closely one
step follows the gradient flow) and its *step size* (the controller picks h). So this harness
trains, from the same initial weights and the same batch order per seed:

* SGD, and fixed-step Runge–Kutta methods at SGD's learning rate h (same steps, only the order
  differs): Heun, RK4, and the fixed-step twins of the two adaptive methods;
* RK23 (Bogacki–Shampine) and RK45 (Dormand–Prince), SciPy's names, with the adaptive controller;
* **SGD at an adaptive method's steps**: SGD replaying, step by step, the step sizes the adaptive
  run accepted (:class:`ReplayedSGD`). It has the adaptive run's steps and SGD's order, so
  comparing with it separates "higher order" from "larger step".

Every run is measured after each epoch on the whole training set (the labels it trains on) and the
whole validation set: loss and accuracy. Everything is float64: the adaptive runs' accept/reject
decisions are chaotic, and float32 rounding differences between CPUs change them. The harness runs
on Keras's TensorFlow and JAX backends alike (batches come from NumPy, the measurements are one
compiled function per backend); on JAX it needs the x64 mode.

Trouble is counted, never dropped silently: a run whose training loss ends above a uniform guess's
(ln 10) or is not finite has *diverged*; one whose training loss climbs back above its value after
the first epoch has *blown up* (it may recover); an adaptive step that used up its retries and was
applied anyway (``on_failure="accept"``) is a *forced acceptance*. After the last epoch each run
also measures what implicit gradient regularisation is about on its own mini-batches.

What the runs say is read by :mod:`course_lib.studies.readings` (a run at equal epochs, equal
gradient evaluations, matched training loss), judged by :mod:`course_lib.studies.statistics`, and
gathered regime by regime in :mod:`course_lib.studies.regimes`. The training steps live in
:mod:`course_lib.runge_kutta`, the controller in :mod:`course_lib.adaptive`.
"""

from __future__ import annotations

import gc
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

#: The cross-entropy of a uniform guess over 10 classes: a run that ends above it has failed.
CHANCE_LOSS = math.log(10)
#: Digits has 10 classes.
CLASSES = 10


@dataclass(frozen=True)
class Method:
    """One row of the study: a solver (``tableau`` None is SGD), adaptive or not, or a replay.

    ``replays`` names the adaptive method whose accepted step sizes this SGD run replays.
    """

    label: str
    tableau: str | None = None
    adaptive: bool = False
    replays: str | None = None

    @property
    def is_sgd(self) -> bool:
        return self.tableau is None

    def stages(self) -> int:
        """Gradient evaluations of one step (one try, for an adaptive method)."""
        from course_lib.tableaux import get_tableau

        return 1 if self.is_sgd else get_tableau(self.tableau).stages_needed(self.adaptive)


RK23, RK45 = "RK23, adaptive", "RK45, adaptive"
SGD_AT_RK23, SGD_AT_RK45 = "SGD at RK23's steps", "SGD at RK45's steps"
RK23_FIXED, RK45_FIXED = "RK23, fixed step", "RK45, fixed step"

#: The rows of the study, in the order they run (an adaptive method before its replay).
METHODS: dict[str, Method] = {
    m.label: m
    for m in (
        Method("SGD"),
        Method("Heun", "heun"),
        Method("RK4", "rk4"),
        Method(RK23_FIXED, "bogacki_shampine"),
        Method(RK45_FIXED, "dormand_prince"),
        Method(RK23, "bogacki_shampine", adaptive=True),
        Method(RK45, "dormand_prince", adaptive=True),
        Method(SGD_AT_RK23, replays=RK23),
        Method(SGD_AT_RK45, replays=RK45),
    )
}

#: The methods of the article's claim and their controls (the default of a study).
CLAIM_METHODS: tuple[str, ...] = (
    "SGD",
    RK23_FIXED,
    RK45_FIXED,
    RK23,
    RK45,
    SGD_AT_RK23,
    SGD_AT_RK45,
)


@dataclass(frozen=True)
class Comparison:
    """``method − control``, paired by seed, and what differs between the two."""

    method: str
    control: str
    differs: str

    @property
    def name(self) -> str:
        return f"{self.method} − {self.control}"

    @property
    def short(self) -> str:
        """The name without commas, for figures and sentences: "RK23 adaptive − SGD at its
        steps"."""
        control = "SGD at its steps" if self.control.startswith("SGD at ") else self.control
        return f"{short_label(self.method)} − {control}"


def short_label(method: str) -> str:
    """A method's label without its comma: "RK23 adaptive", "RK45 fixed"."""
    return method.replace(", adaptive", " adaptive").replace(", fixed step", " fixed")


#: What each paired comparison isolates.
COMPARISONS: tuple[Comparison, ...] = (
    Comparison("Heun", "SGD", "order"),
    Comparison("RK4", "SGD", "order"),
    Comparison(RK23_FIXED, "SGD", "order"),
    Comparison(RK45_FIXED, "SGD", "order"),
    Comparison(RK23, SGD_AT_RK23, "order"),
    Comparison(RK45, SGD_AT_RK45, "order"),
    Comparison(SGD_AT_RK23, "SGD", "step size"),
    Comparison(SGD_AT_RK45, "SGD", "step size"),
    Comparison(RK23, "SGD", "order and step size"),
    Comparison(RK45, "SGD", "order and step size"),
)


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
    """What one study trains: an MLP 64-``hidden_units``-10 on digits, SGD(h) as the step size.

    ``learning_rate`` is h for SGD and the fixed-step methods, and the first step of the adaptive
    ones, whose controller (:class:`course_lib.adaptive.AdaptiveStepSize`) uses ``rtol``/``atol``
    and ``on_failure="accept"`` so that a long study never stops on one hard batch.
    ``train_size`` keeps the first examples of the training split (None: all 1,348); a small
    training set gives overfitting room to show. ``label_noise`` is the share of those training
    labels replaced by another class, drawn per seed (:func:`flip_labels`); validation labels
    are never touched.
    """

    methods: tuple[str, ...] = CLAIM_METHODS
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    epochs: int = 40
    learning_rate: float = 0.3
    batch_size: int = 64
    hidden_units: int = 128
    train_size: int | None = 512
    rtol: float = 1e-2
    atol: float = 1e-4
    label_noise: float = 0.0

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(
                f"methods={self.methods!r}: choose among {list(METHODS)} (at least one)."
            )
        for label in self.methods:
            source = METHODS[label].replays
            if source is not None and source not in self.methods:
                raise ValueError(
                    f"{label!r} replays the step sizes of {source!r}: add {source!r} to methods."
                )
        check_run_settings(self)
        for name in ("learning_rate", "rtol", "atol"):
            value = getattr(self, name)
            if not np.isfinite(value) or value <= 0:
                raise ValueError(f"{name}={value!r} must be a positive number.")
        if self.train_size is not None and (
            not isinstance(self.train_size, int) or self.train_size < self.batch_size
        ):
            raise ValueError(
                f"train_size={self.train_size!r} must be None (all) or an integer ≥ batch_size."
            )
        if not 0.0 <= self.label_noise < 1.0 - 1.0 / CLASSES:
            raise ValueError(
                f"label_noise={self.label_noise!r} must lie in [0, 0.9): the share of training "
                "labels replaced by another class (at 0.9 the labels carry no information)."
            )

    def ordered_methods(self) -> list[str]:
        """The chosen methods in :data:`METHODS` order, so a replay runs after its source."""
        return [label for label in METHODS if label in self.methods]

    def steps_per_epoch(self, data: Any) -> int:
        size = len(data.x_train) if self.train_size is None else self.train_size
        return math.ceil(size / self.batch_size)


@dataclass
class RunRecord:
    """One run: what was measured after each epoch, on the whole training / validation sets.

    Index ``i`` of the per-epoch lists is the state after epoch ``i + 1``. ``gradients`` is the
    cumulative number of gradient evaluations (mini-batch passes, rejected adaptive tries
    included); ``step_sizes``, ``rejections`` and ``forced`` are per training step (adaptive runs
    and replays only; ``forced`` is 1 where the step used up its retries and was applied anyway).
    Epochs after a run stopped on a non-finite loss hold NaN.

    Measured once, after the last epoch: ``gradient_norm_sq``, ‖∇L‖² of the full training loss;
    on the training set cut into mini-batches L_k of the study's batch size,
    ``batch_gradient_norm_sq``, the mean of ‖∇L_k‖² (SGD's implicit penalty on mini-batches is
    h/4 times it), and ``step_correction``, the mean over batches of ‖Heun step − SGD step‖ /
    ‖SGD step‖ at the study's h: the share of SGD's step that a second-order method on the same
    batch does not take.
    """

    method: str
    seed: int
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    gradients: list[int] = field(default_factory=list)
    step_sizes: list[float] = field(default_factory=list)
    rejections: list[int] = field(default_factory=list)
    forced: list[int] = field(default_factory=list)
    gradient_norm_sq: float = math.nan
    batch_gradient_norm_sq: float = math.nan
    step_correction: float = math.nan

    def gap(self, epoch: int = -1) -> float:
        """Validation minus training loss after ``epoch`` (the last by default)."""
        return self.val_loss[epoch] - self.train_loss[epoch]

    def diverged(self, epoch: int = -1) -> bool:
        """Whether the training loss after ``epoch`` is not finite or above ln 10."""
        return is_diverged(self.train_loss[epoch])

    def largest_rise(self, epoch: int = -1) -> float:
        """The most the training loss rose above its lowest earlier value, up to ``epoch``."""
        losses = [loss for loss in self._up_to(epoch) if math.isfinite(loss)]
        return max([0.0] + [loss - min(losses[:i]) for i, loss in enumerate(losses) if i])

    def blew_up(self, epoch: int = -1) -> bool:
        """Whether, up to ``epoch``, the training loss climbed back above its first epoch's.

        Such a run lost at least all it had gained after its first epoch; it may recover later,
        so it need not have diverged.
        """
        losses = self._up_to(epoch)
        return any(loss > losses[0] for loss in losses[1:] if math.isfinite(loss))

    def _up_to(self, epoch: int) -> list[float]:
        """The training losses after epochs 1 to ``epoch`` (negative: counted from the end)."""
        return self.train_loss[: epoch + 1 if epoch >= 0 else len(self.train_loss) + epoch + 1]


def is_diverged(train_loss: float) -> bool:
    """A training loss that is not finite or worse than a uniform guess (ln 10) has failed."""
    return not math.isfinite(train_loss) or train_loss > CHANCE_LOSS


# --------------------------------------------------------------------------------------------
# The control: SGD replaying another run's step sizes
# --------------------------------------------------------------------------------------------


def _step_sizes(step_sizes: Sequence[float]) -> np.ndarray:
    values = np.asarray(step_sizes, dtype=np.float64)
    if values.ndim != 1 or values.size == 0 or not np.all(np.isfinite(values) & (values > 0)):
        raise ValueError("step_sizes must be a non-empty list of finite numbers > 0.")
    return values


class _StepTable(keras.optimizers.schedules.LearningRateSchedule):
    """The learning rate of :class:`ReplayedSGD`: its step table looked up at the step count."""

    def __init__(self, optimizer: ReplayedSGD) -> None:
        self.optimizer = optimizer

    def __call__(self, step: Any) -> Any:
        from keras import ops

        owner = self.optimizer
        index = ops.minimum(ops.cast(step, "int64"), ops.cast(owner.step_count, "int64") - 1)
        return ops.take(owner.step_table, index)

    def get_config(self) -> dict[str, Any]:
        return {}  # the steps are the optimizer's config (ReplayedSGD.get_config)


@keras.saving.register_keras_serializable(package="course_lib")
class ReplayedSGD(keras.optimizers.SGD):
    """SGD whose step k is ``step_sizes[k]`` (after the list, the last one): the replay control.

    Keras computes a learning rate from the optimizer's step counter, 0 at the first update, so
    this SGD takes exactly the steps the list recorded. :meth:`replay` loads another run's steps
    into the same optimizer, so one compiled training function serves every seed.

    The table lives in two of the optimizer's own variables (``add_variable``), not in a
    schedule's. On TensorFlow either works. On JAX the compiled step is a pure function of the
    state ``fit`` hands it: the optimizer's variables are part of that state, a schedule's are
    not, and would be frozen into the compiled step as constants at its first trace, so that a
    reload would be silently ignored.
    """

    def __init__(self, step_sizes: Sequence[float], length: int | None = None, **kwargs) -> None:
        values = _step_sizes(step_sizes)
        kwargs.pop("learning_rate", None)  # from_config: the table is the learning rate
        super().__init__(learning_rate=_StepTable(self), **kwargs)
        self.length = int(length or values.size)
        self.step_table = self.add_variable(
            (self.length,), initializer="zeros", dtype="float64", name="replayed_steps"
        )
        self.step_count = self.add_variable(
            (), initializer="zeros", dtype="int64", name="replayed_count"
        )
        self.replay(values)

    def replay(self, step_sizes: Sequence[float]) -> None:
        """Load new step sizes (at most ``length``)."""
        values = _step_sizes(step_sizes)
        if values.size > self.length:
            raise ValueError(f"{values.size} step sizes do not fit in length={self.length}.")
        padded = np.full(self.length, values[-1])
        padded[: values.size] = values
        self.step_table.assign(padded)
        self.step_count.assign(values.size)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.pop("learning_rate", None)
        count = int(keras.ops.convert_to_numpy(self.step_count))
        steps = keras.ops.convert_to_numpy(self.step_table)[:count].tolist()
        return {**config, "step_sizes": steps, "length": self.length}


# --------------------------------------------------------------------------------------------
# What every method of a seed shares: initial weights, training labels, batch order
# --------------------------------------------------------------------------------------------


def initial_weights(seed: int, hidden_units: int) -> list[np.ndarray]:
    """Keras's default initialisation (Glorot-uniform kernels, zero biases) from ``seed``.

    Drawn with NumPy, so that every method starts a seed from the very same weights.
    """
    rng = np.random.default_rng(seed)
    weights = []
    for fan_in, fan_out in ((64, hidden_units), (hidden_units, CLASSES)):
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        weights += [rng.uniform(-limit, limit, (fan_in, fan_out)), np.zeros(fan_out)]
    return weights


def flip_labels(
    labels: np.ndarray, fraction: float, seed: int, classes: int = CLASSES
) -> np.ndarray:
    """A copy of ``labels`` with exactly ``round(fraction · n)`` of them replaced by another class.

    Which labels, and the wrong class each gets (uniform over the ``classes − 1`` others), are
    drawn from ``seed``: the same seed flips the same labels the same way. The noise is
    "symmetric": it carries no information about the true class, so a network can only fit the
    flipped labels by memorising them.
    """
    labels = np.asarray(labels)
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction={fraction!r} must lie in [0, 1].")
    rng = np.random.default_rng([seed, 0x1ABE1])  # not the weights' or the batches' stream
    count = int(round(fraction * labels.size))
    chosen = rng.choice(labels.size, size=count, replace=False)
    flipped = labels.copy()
    flipped[chosen] = (labels[chosen] + rng.integers(1, classes, size=count)) % classes
    return flipped


def training_set(settings: StudySettings, data: Any, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The images and labels a seed trains on: the first ``train_size``, labels flipped if asked."""
    size = settings.train_size
    x, y = data.x_train[:size].astype("float64"), np.asarray(data.y_train[:size])
    if settings.label_noise:
        y = flip_labels(y, settings.label_noise, seed)
    return x, y


def epoch_batches(
    x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, epochs: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The mini-batches of ``epochs`` epochs, in order: epoch e shuffles with the NumPy
    generator seeded by (``seed``, e).

    Every method of a seed sees the same batches, on either backend, and a run of fewer epochs
    sees the first epochs of a longer one. Keras consumes a generator in order, one epoch after
    another (``fit(..., steps_per_epoch=...)``).
    """
    for epoch in range(epochs):
        order = np.random.default_rng([seed, epoch]).permutation(len(x))
        for first in range(0, len(x), batch_size):
            chosen = order[first : first + batch_size]
            yield x[chosen], y[chosen]


# --------------------------------------------------------------------------------------------
# Measurements: one compiled function per backend
# --------------------------------------------------------------------------------------------


def require_float64_backend() -> None:
    """The study computes in float64; on JAX that needs the x64 mode, on at JAX's start."""
    if keras.backend.backend() == "jax":
        import jax

        if not jax.config.jax_enable_x64:
            raise RuntimeError(
                "the overfitting study trains in float64, and JAX computes in float32 unless its "
                "x64 mode is on: set JAX_ENABLE_X64=1 before JAX is imported (benchmarks/"
                "overfitting.py sets it for its worker processes)."
            )
    elif keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            f"the overfitting study runs on the tensorflow and jax backends, not "
            f"{keras.backend.backend()!r}: set KERAS_BACKEND before importing Keras."
        )


def _compiled(function: Callable) -> Callable:
    """``function`` compiled by the backend: ``tf.function`` or ``jax.jit``."""
    if keras.backend.backend() == "jax":
        import jax

        return jax.jit(function)
    import tensorflow as tf

    return tf.function(function)


def _value_and_gradient(function: Callable, weights: list) -> tuple[Any, list]:
    """``function(weights)`` (a scalar) and its gradient with respect to ``weights``.

    The one backend-specific step of the measurements: Keras has no public gradient function.
    """
    if keras.backend.backend() == "jax":
        import jax

        return jax.value_and_grad(function)(weights)
    import tensorflow as tf

    with tf.GradientTape() as tape:
        tape.watch(weights)
        value = function(weights)
    return value, tape.gradient(value, weights)


#: What :meth:`Measurements.after_epoch` returns, in this order.
EPOCH_QUANTITIES = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")
#: What :meth:`Measurements.after_training` returns, in this order.
FINAL_QUANTITIES = ("gradient_norm_sq", "batch_gradient_norm_sq", "step_correction")


class Measurements:
    """Loss and accuracy on the whole training and validation sets at given weights; after the
    last epoch, the gradient quantities of implicit gradient regularisation.

    Its own copy of the study's MLP evaluates any weights through ``stateless_call``, so it
    never touches the model being trained. Each measurement is one compiled call that returns
    one array (one transfer from the device per epoch). The training labels are an argument:
    with label noise each seed has its own.
    """

    def __init__(self, settings: StudySettings, data: Any) -> None:
        from keras import ops

        require_float64_backend()
        self.model = keras.Sequential(_layers(settings.hidden_units))
        self.x_train = ops.convert_to_tensor(data.x_train[: settings.train_size], "float64")
        self.x_val = ops.convert_to_tensor(data.x_val, "float64")
        self.y_val = ops.convert_to_tensor(np.asarray(data.y_val), "int64")
        self.loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype="float64")
        self.batch_size, self.step_size = settings.batch_size, settings.learning_rate
        self._epoch = _compiled(self._epoch_values)
        self._final = _compiled(self._final_values)

    def _logits(self, weights: list, x: Any) -> Any:
        return self.model.stateless_call(weights, [], x)[0]

    def _epoch_values(self, weights: list, y_train: Any) -> Any:
        from keras import ops

        def accuracy(labels, logits):
            # A sum and a division, not ops.mean: on JAX, Keras 3.15's mean of a float64 tensor
            # is computed in float32.
            hits = ops.equal(ops.argmax(logits, axis=-1), ops.cast(labels, "int64"))
            return ops.sum(ops.cast(hits, "float64")) / int(labels.shape[0])

        train, val = self._logits(weights, self.x_train), self._logits(weights, self.x_val)
        return ops.stack(
            [
                self.loss(y_train, train),
                self.loss(self.y_val, val),
                accuracy(y_train, train),
                accuracy(self.y_val, val),
            ]
        )

    def _final_values(self, weights: list, y_train: Any) -> Any:
        """‖∇L‖², mean over mini-batches of ‖∇L_k‖² and of ‖Heun step − SGD step‖/‖SGD step‖.

        On batch k, SGD steps −h·g(p) and Heun −(h/2)·(g(p) + g(p − h·g(p))): their difference
        is (h/2)·(g(p − h·g) − g(p)) ≈ −(h²/2)·H_k·g, the term implicit gradient regularisation
        attributes to SGD (h times the gradient of (h/4)·‖g‖²).
        """
        from keras import ops

        def gradient(point, x, y):
            return _value_and_gradient(lambda w: self.loss(y, self._logits(w, x)), point)[1]

        def norm_sq(tensors):
            return sum(ops.sum(ops.square(t)) for t in tensors)

        full = norm_sq(gradient(weights, self.x_train, y_train))
        count, h = int(self.x_train.shape[0]), self.step_size
        norms_sq, corrections = [], []
        for first in range(0, count, self.batch_size):
            xb = self.x_train[first : first + self.batch_size]
            yb = y_train[first : first + self.batch_size]
            g = gradient(weights, xb, yb)
            trial = gradient([p - h * gi for p, gi in zip(weights, g, strict=True)], xb, yb)
            norms_sq.append(norm_sq(g))
            difference = norm_sq([a - b for a, b in zip(trial, g, strict=True)])
            corrections.append(ops.sqrt(difference) / (2.0 * ops.sqrt(norm_sq(g))))
        batches = len(norms_sq)
        return ops.stack([full, sum(norms_sq) / batches, sum(corrections) / batches])

    @staticmethod
    def _weights(model: keras.Model) -> list:
        return [v.value for v in model.trainable_variables]

    def after_epoch(self, model: keras.Model, y_train: np.ndarray) -> dict[str, float]:
        """:data:`EPOCH_QUANTITIES` at ``model``'s current weights."""
        values = keras.ops.convert_to_numpy(self._epoch(self._weights(model), y_train))
        return dict(zip(EPOCH_QUANTITIES, values.tolist(), strict=True))

    def after_training(self, model: keras.Model, y_train: np.ndarray) -> dict[str, float]:
        """:data:`FINAL_QUANTITIES` at ``model``'s final weights."""
        values = keras.ops.convert_to_numpy(self._final(self._weights(model), y_train))
        return dict(zip(FINAL_QUANTITIES, values.tolist(), strict=True))


# --------------------------------------------------------------------------------------------
# Training one method from several seeds
# --------------------------------------------------------------------------------------------


def _layers(hidden_units: int) -> list:
    return [
        keras.Input((64,), dtype="float64"),
        keras.layers.Dense(hidden_units, activation="relu", dtype="float64"),
        keras.layers.Dense(CLASSES, dtype="float64"),
    ]


def _build_model(method: Method, settings: StudySettings, steps: int) -> keras.Model:
    """One compiled model per solver, reused for every seed (one trace, bounded memory)."""
    from course_lib.adaptive import AdaptiveStepSize
    from course_lib.runge_kutta import RungeKuttaSequential

    layers = _layers(settings.hidden_units)
    if method.is_sgd:
        model = keras.Sequential(layers)
        optimizer = ReplayedSGD([settings.learning_rate], length=steps * settings.epochs)
    else:
        adaptive = None
        if method.adaptive:
            adaptive = AdaptiveStepSize(rtol=settings.rtol, atol=settings.atol, on_failure="accept")
        model = RungeKuttaSequential(layers, tableau=method.tableau, adaptive=adaptive)
        optimizer = keras.optimizers.SGD(learning_rate=settings.learning_rate)
    # Adaptive runs need every step's logs (step size, rejections); the others run an epoch
    # per call, which saves Python overhead and changes no number.
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype="float64"),
        steps_per_execution=1 if method.adaptive else steps,
    )
    return model


def step_cost(stages: int, rejections: int = 0, adaptive: bool = False) -> int:
    """Gradient evaluations of one training step of a method with ``stages`` stages.

    A fixed step evaluates every stage once. An adaptive step takes stage 1 at the start point
    once, then ``stages − 1`` more per try: a retry keeps the start point and the batch, so its
    first stage is the same (course_lib.runge_kutta reuses it).
    """
    if not adaptive:
        return stages
    return 1 + (stages - 1) * (1 + rejections)


class _RecordEpochs(keras.callbacks.Callback):
    """Measure after each epoch; log each adaptive step; stop when the loss is not finite."""

    def __init__(
        self,
        record: RunRecord,
        measurements: Measurements,
        labels: np.ndarray,
        method: Method,
        steps: int,
    ) -> None:
        super().__init__()
        self.record, self.measurements, self.labels = record, measurements, labels
        self.stages, self.steps, self.adaptive = method.stages(), steps, method.adaptive
        self.count = 0

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.adaptive:
            logs = logs or {}
            rejections = int(round(float(logs["rejections"])))
            self.record.step_sizes.append(float(logs["step_size"]))
            self.record.rejections.append(rejections)
            # An applied step whose error norm is not below 1 was not accepted by the test:
            # its retries ran out and on_failure="accept" applied the last try.
            self.record.forced.append(int(float(logs["error_norm"]) >= 1.0))
            self.count += step_cost(self.stages, rejections, adaptive=True)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if not self.adaptive:  # every step costs the same, no logs needed
            self.count += step_cost(self.stages) * self.steps
        measured = self.measurements.after_epoch(self.model, self.labels)
        for name, value in measured.items():
            getattr(self.record, name).append(value)
        self.record.gradients.append(self.count)
        if not math.isfinite(measured["train_loss"]):
            self.model.stop_training = True

    def on_train_end(self, logs: dict | None = None) -> None:
        for name, value in self.measurements.after_training(self.model, self.labels).items():
            setattr(self.record, name, value)


def _reset(
    model: keras.Model, seed: int, settings: StudySettings, source: RunRecord | None
) -> None:
    """Put the model back to the seed's start: weights, step counter, step sizes."""
    for variable, value in zip(
        model.trainable_variables, initial_weights(seed, settings.hidden_units), strict=True
    ):
        variable.assign(value)
    model.optimizer.iterations.assign(0)
    if getattr(model, "runge_kutta_adaptive", None) is not None:
        model.runge_kutta_step_scale.assign(1.0)
    if isinstance(model.optimizer, ReplayedSGD):
        steps = [] if source is None else replayable(source)
        model.optimizer.replay(steps or [settings.learning_rate])


def replayable(source: RunRecord) -> list[float]:
    """The source run's step sizes up to its first that is not a finite positive number.

    An adaptive run that failed can log an infinite or NaN step; its replay takes the steps
    before it and then keeps the last of them (SGD's h if there is none). Such a pair is left
    out of the comparisons, but the replay's own run is still compared with SGD's.
    """
    steps = []
    for h in source.step_sizes:
        if not (math.isfinite(h) and h > 0):
            break
        steps.append(h)
    return steps


def _pad(record: RunRecord, epochs: int) -> None:
    """Fill the epochs after a stopped run with NaN (its gradient count stays where it stopped)."""
    while len(record.train_loss) < epochs:
        for name in EPOCH_QUANTITIES:
            getattr(record, name).append(math.nan)
        record.gradients.append(record.gradients[-1] if record.gradients else 0)


def train_method(
    label: str,
    settings: StudySettings,
    data: Any,
    sources: dict[int, RunRecord] | None = None,
    measurements: Measurements | None = None,
    models: dict | None = None,
) -> list[RunRecord]:
    """Train ``label`` from every seed; a replay needs its source run per seed in ``sources``.

    ``models`` caches compiled models by solver, so SGD and its replays share one (each traced
    training function costs seconds and memory that Keras does not give back).
    """
    from course_lib.adaptive import StepSizeError

    method = METHODS[label]
    if method.replays is not None and not set(settings.seeds) <= set(sources or {}):
        raise ValueError(f"{label!r} needs the runs of {method.replays!r} for every seed.")
    steps = settings.steps_per_epoch(data)
    measurements = measurements or Measurements(settings, data)
    models = {} if models is None else models
    key = (method.tableau, method.adaptive)
    if key not in models:
        models[key] = _build_model(method, settings, steps)
    model = models[key]
    records = []
    for seed in settings.seeds:
        source = None if method.replays is None else sources[seed]
        _reset(model, seed, settings, source)
        x, y = training_set(settings, data, seed)
        record = RunRecord(method=label, seed=seed)
        callback = _RecordEpochs(record, measurements, y, method, steps)
        if method.replays is not None:
            record.step_sizes = list(source.step_sizes)
        batches = epoch_batches(x, y, settings.batch_size, seed, settings.epochs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # on_failure="accept" warns per rejected-out step
            try:
                model.fit(
                    batches,
                    steps_per_epoch=steps,
                    epochs=settings.epochs,
                    shuffle=False,
                    verbose=0,
                    callbacks=[callback],
                )
            except StepSizeError:  # every try was NaN/inf: diverged; _pad marks the rest NaN
                pass
        _pad(record, settings.epochs)
        records.append(record)
    return records


def run_overfitting_study(
    settings: StudySettings,
    data: Any | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[RunRecord]:
    """Every method from every seed; ``data`` defaults to ``load_dataset("digits")``.

    ``progress`` is called with each method's label once its runs are done.
    """
    if data is None:
        from course_lib.data import load_dataset

        data = load_dataset("digits")
    order = settings.ordered_methods()
    measurements = Measurements(settings, data)
    models: dict = {}
    records: list[RunRecord] = []
    keys = [(METHODS[label].tableau, METHODS[label].adaptive) for label in order]
    for index, label in enumerate(order):
        source = METHODS[label].replays
        sources = {r.seed: r for r in records if r.method == source} if source else None
        records += train_method(label, settings, data, sources, measurements, models)
        if progress is not None:
            progress(label)
        if keys[index] not in keys[index + 1 :]:  # no later method trains this solver
            del models[keys[index]]
            gc.collect()  # lets a notebook's kernel reuse the memory for the next model
    return records
