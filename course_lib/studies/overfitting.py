"""Do Runge–Kutta optimizers overfit? The study of notebook 06 and ``benchmarks/overfitting.py``.

The seed article says such optimizers drive the training loss very low while the validation loss
stays poor. A method here differs from SGD in two ways at once: its *order* (how closely one step
follows the gradient flow) and, when adaptive, its *step size* (the controller picks h). So the
study runs, from the same initial weights and the same batch order per seed:

* SGD, and the fixed-step methods Heun, RK4 and Dormand–Prince at SGD's learning rate h
  (same steps, only the order differs);
* Bogacki–Shampine (RK23) and Dormand–Prince with the adaptive controller;
* **SGD at an adaptive method's steps**: SGD replaying, step by step, the step sizes the
  adaptive run accepted (:class:`ReplayedSteps`). It has the adaptive run's steps and SGD's
  order, so comparing with it separates "higher order" from "larger step".

:func:`paired_effects` compares a method with its control seed by seed (a seed fixes weights
and batch order, so the difference is the method's alone) and gives a 95 % interval over seeds.
A difference is *resolved* when that interval excludes 0 (:func:`classify`), and *smaller than
δ* when it lies inside ±δ (:func:`size_class`), with δ a tenth of SGD's own final
validation − training gap (:func:`meaningful_effect`): an effect that matters for the article's
claim is one that moves the gap it is about by a noticeable share.

Every run is evaluated on the whole training and validation sets after each epoch, in float64
(the adaptive runs' accept/reject decisions are chaotic: float32 rounding differences between
CPUs change them). Three kinds of trouble are counted, never dropped silently: a run whose
training loss ends above a uniform guess's (ln 10) or is not finite has *diverged*; a run whose
training loss climbs back above its value after the first epoch has *blown up* (it may recover
later); an adaptive step that used up its retries and was applied anyway (the controller's
``on_failure="accept"``) is a *forced acceptance*. After the last epoch each run also measures
what implicit gradient regularisation is about on its own mini-batches (:class:`RunRecord`).

The training steps live in :mod:`course_lib.runge_kutta`, the controller in
:mod:`course_lib.adaptive`, the coefficients in :mod:`course_lib.tableaux`.
"""

from __future__ import annotations

from course_lib.data import as_dataset

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

#: The cross-entropy of a uniform guess over 10 classes: a run that ends above it has failed.
CHANCE_LOSS = math.log(10)


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


#: The rows of the study, in the order they run (an adaptive method before its replay).
METHODS: dict[str, Method] = {
    m.label: m
    for m in (
        Method("SGD"),
        Method("Heun", "heun"),
        Method("RK4", "rk4"),
        Method("Dormand–Prince, fixed step", "dormand_prince"),
        Method("Bogacki–Shampine (RK23), adaptive", "bogacki_shampine", adaptive=True),
        Method("Dormand–Prince, adaptive", "dormand_prince", adaptive=True),
        Method("SGD at RK23's adaptive steps", replays="Bogacki–Shampine (RK23), adaptive"),
        Method("SGD at Dormand–Prince's adaptive steps", replays="Dormand–Prince, adaptive"),
    )
}

#: What each paired comparison isolates: (method, its control, what differs between them).
COMPARISONS: tuple[tuple[str, str, str], ...] = (
    ("Heun", "SGD", "order"),
    ("RK4", "SGD", "order"),
    ("Dormand–Prince, fixed step", "SGD", "order"),
    ("Bogacki–Shampine (RK23), adaptive", "SGD at RK23's adaptive steps", "order"),
    ("Dormand–Prince, adaptive", "SGD at Dormand–Prince's adaptive steps", "order"),
    ("SGD at RK23's adaptive steps", "SGD", "step size"),
    ("SGD at Dormand–Prince's adaptive steps", "SGD", "step size"),
    ("Bogacki–Shampine (RK23), adaptive", "SGD", "order and step size"),
    ("Dormand–Prince, adaptive", "SGD", "order and step size"),
)

#: The smallest effect the study calls meaningful, as a share of SGD's own final gap.
MEANINGFUL_SHARE = 0.1


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
    """What the study trains: an MLP 64-``hidden_units``-10 on digits, SGD(h) as the step size.

    ``learning_rate`` is h for SGD and the fixed-step methods, and the first step of the adaptive
    ones, whose controller (:class:`course_lib.adaptive.AdaptiveStepSize`) uses ``rtol``/``atol``
    and ``on_failure="accept"`` so that a long study never stops on one hard batch.
    ``train_size`` keeps the first examples of the training split (None: all 1,348); a small
    training set gives overfitting room to show. The defaults are the study of notebook 06.
    """

    methods: tuple[str, ...] = tuple(METHODS)
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    epochs: int = 40
    learning_rate: float = 0.3
    batch_size: int = 64
    hidden_units: int = 128
    train_size: int | None = 512
    rtol: float = 1e-2
    atol: float = 1e-4

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
        if not np.isfinite(self.learning_rate) or self.learning_rate <= 0:
            raise ValueError(
                f"learning_rate={self.learning_rate!r} must be a positive number (the step size)."
            )
        if self.train_size is not None and (
            not isinstance(self.train_size, int) or self.train_size < self.batch_size
        ):
            raise ValueError(
                f"train_size={self.train_size!r} must be None (all) or an integer ≥ batch_size."
            )

    def ordered_methods(self) -> list[str]:
        """The chosen methods in :data:`METHODS` order, so a replay runs after its source."""
        return [label for label in METHODS if label in self.methods]


@dataclass
class RunRecord:
    """One run: what was measured after each epoch, on the whole training / validation sets.

    ``gradients`` is the cumulative number of gradient evaluations (mini-batch passes, rejected
    adaptive tries included); ``gradient_norm_sq`` is ‖∇L‖² of the full training loss;
    ``step_sizes``, ``rejections`` and ``forced`` are per training step (adaptive runs and
    replays only; ``forced`` is 1 where the step used up its retries and was applied anyway).
    Epochs after a run stopped on a non-finite loss hold NaN.

    Measured once, after the last epoch, on the training set cut into mini-batches L_k of the
    study's batch size: ``batch_gradient_norm_sq`` is the mean of ‖∇L_k‖² (SGD's implicit
    penalty on mini-batches is h/4 times it), and ``step_correction`` is the mean over batches of
    ‖Heun step − SGD step‖ / ‖SGD step‖ at the study's h, the share of SGD's step that a
    second-order method on the same batch does not take.
    """

    method: str
    seed: int
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    gradient_norm_sq: list[float] = field(default_factory=list)
    gradients: list[int] = field(default_factory=list)
    step_sizes: list[float] = field(default_factory=list)
    rejections: list[int] = field(default_factory=list)
    forced: list[int] = field(default_factory=list)
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


@keras.saving.register_keras_serializable(package="course_lib")
class ReplayedSteps(keras.optimizers.schedules.LearningRateSchedule):
    """A learning rate that replays a list of step sizes: step k uses ``step_sizes[k]``.

    Keras calls a schedule with ``optimizer.iterations``, which is 0 at the first update, so
    ``SGD(learning_rate=ReplayedSteps(log))`` takes exactly the steps ``log`` recorded; after
    the list it keeps the last value. The values live in a variable of fixed length, so
    :meth:`replay` can load another run's steps without retracing the training function.
    """

    def __init__(self, step_sizes: Sequence[float], length: int | None = None) -> None:
        values = np.asarray(step_sizes, dtype=np.float64)
        if values.ndim != 1 or values.size == 0 or not np.all(np.isfinite(values) & (values > 0)):
            raise ValueError("step_sizes must be a non-empty list of finite numbers > 0.")
        self.length = int(length or values.size)
        self._values = keras.Variable(
            np.zeros(self.length), dtype="float64", trainable=False, name="replayed_steps"
        )
        self._count = keras.Variable(0, dtype="int64", trainable=False, name="replayed_count")
        self.replay(values)

    def replay(self, step_sizes: Sequence[float]) -> None:
        """Load new step sizes (at most ``length``)."""
        values = np.asarray(step_sizes, dtype=np.float64)
        if values.size > self.length:
            raise ValueError(f"{values.size} step sizes do not fit in length={self.length}.")
        if values.size == 0 or not np.all(np.isfinite(values) & (values > 0)):
            raise ValueError("step_sizes must be a non-empty list of finite numbers > 0.")
        padded = np.full(self.length, values[-1])
        padded[: values.size] = values
        self._values.assign(padded)
        self._count.assign(values.size)

    def __call__(self, step: Any) -> Any:
        from keras import ops

        index = ops.minimum(ops.cast(step, "int64"), self._count - 1)
        return ops.take(self._values, index)

    def get_config(self) -> dict[str, Any]:
        count = int(self._count.numpy())
        return {"step_sizes": self._values.numpy()[:count].tolist(), "length": self.length}


# --------------------------------------------------------------------------------------------
# Training one method from several seeds
# --------------------------------------------------------------------------------------------


def initial_weights(seed: int, hidden_units: int) -> list[np.ndarray]:
    """Keras's default initialisation (Glorot-uniform kernels, zero biases) from ``seed``.

    Drawn with NumPy, so that every method starts a seed from the very same weights.
    """
    rng = np.random.default_rng(seed)
    weights = []
    for fan_in, fan_out in ((64, hidden_units), (hidden_units, 10)):
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        weights += [rng.uniform(-limit, limit, (fan_in, fan_out)), np.zeros(fan_out)]
    return weights


def _layers(hidden_units: int) -> list:
    return [
        keras.Input((64,), dtype="float64"),
        keras.layers.Dense(hidden_units, activation="relu", dtype="float64"),
        keras.layers.Dense(10, dtype="float64"),
    ]


def _steps_per_epoch(settings: StudySettings, data: Any) -> int:
    size = len(data.x_train) if settings.train_size is None else settings.train_size
    return math.ceil(size / settings.batch_size)


def _build_model(
    method: Method, settings: StudySettings, steps: int
) -> tuple[keras.Model, ReplayedSteps | None]:
    """One compiled model per method, reused for every seed (one trace, bounded memory).

    Returns the model and, for SGD, the schedule whose steps :func:`_reset` loads per seed.
    """
    from course_lib.adaptive import AdaptiveStepSize
    from course_lib.runge_kutta import RungeKuttaSequential

    layers = _layers(settings.hidden_units)
    rate = None
    if method.is_sgd:
        model = keras.Sequential(layers)
        rate = ReplayedSteps([settings.learning_rate], length=steps * settings.epochs)
        optimizer = keras.optimizers.SGD(learning_rate=rate)
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
    return model, rate


class _Evaluator:
    """Loss, accuracy and ‖∇L‖² on the whole training and validation sets, in one traced call;
    after the last epoch, the mini-batch quantities of implicit gradient regularisation."""

    def __init__(self, settings: StudySettings, data: Any) -> None:
        import tensorflow as tf

        self.model = keras.Sequential(_layers(settings.hidden_units))
        size = settings.train_size
        self.train = (
            tf.constant(data.x_train[:size], "float64"),
            tf.constant(data.y_train[:size]),
        )
        self.validation = (tf.constant(data.x_val, "float64"), tf.constant(data.y_val))
        self.loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype="float64")
        self.batch_size, self.step_size = settings.batch_size, settings.learning_rate
        self._measure = tf.function(self._measure_graph)
        self._measure_batches = tf.function(self._batch_graph)

    def _batch_graph(self) -> dict[str, Any]:
        """Mean over mini-batches of ‖∇L_k‖² and of ‖Heun step − SGD step‖ / ‖SGD step‖.

        On batch k, SGD steps −h·g(p) and Heun −(h/2)·(g(p) + g(p − h·g(p))): their difference
        is (h/2)·(g(p − h·g) − g(p)) ≈ −(h²/2)·H_k·g, the term implicit gradient regularisation
        attributes to SGD (h times the gradient of (h/4)·‖g‖²).
        """
        import tensorflow as tf

        variables = self.model.trainable_variables
        start = [tf.convert_to_tensor(v) for v in variables]
        (x, y), count = self.train, int(self.train[0].shape[0])
        h = tf.constant(self.step_size, "float64")

        def gradient_at(weights, xb, yb):
            with tf.GradientTape() as tape:
                tape.watch(weights)
                loss = self.loss(yb, self.model.stateless_call(weights, [], xb)[0])
            return tape.gradient(loss, weights)

        def norm(tensors):
            return tf.sqrt(tf.add_n([tf.reduce_sum(tf.square(t)) for t in tensors]))

        norms_sq, corrections = [], []
        for first in range(0, count, self.batch_size):
            xb, yb = x[first : first + self.batch_size], y[first : first + self.batch_size]
            g = gradient_at(start, xb, yb)
            trial = gradient_at([p - h * gi for p, gi in zip(start, g, strict=True)], xb, yb)
            norms_sq.append(norm(g) ** 2)
            difference = [a - b for a, b in zip(trial, g, strict=True)]
            corrections.append(norm(difference) / (2.0 * norm(g)))
        return {
            "batch_gradient_norm_sq": tf.reduce_mean(tf.stack(norms_sq)),
            "step_correction": tf.reduce_mean(tf.stack(corrections)),
        }

    def after_training(self, model: keras.Model) -> dict[str, float]:
        """The mini-batch quantities at ``model``'s final weights."""
        self._copy(model)
        return {name: float(value) for name, value in self._measure_batches().items()}

    def _measure_graph(self) -> dict[str, Any]:
        import tensorflow as tf

        variables = self.model.trainable_variables
        (x, y), (x_val, y_val) = self.train, self.validation
        with tf.GradientTape() as tape:
            logits = self.model(x)
            loss = self.loss(y, logits)
        gradient = tape.gradient(loss, variables)
        val_logits = self.model(x_val)

        def accuracy(labels, scores):
            hits = tf.equal(tf.argmax(scores, axis=-1), tf.cast(labels, "int64"))
            return tf.reduce_mean(tf.cast(hits, "float64"))

        return {
            "train_loss": loss,
            "val_loss": self.loss(y_val, val_logits),
            "train_accuracy": accuracy(y, logits),
            "val_accuracy": accuracy(y_val, val_logits),
            "gradient_norm_sq": tf.add_n([tf.reduce_sum(tf.square(g)) for g in gradient]),
        }

    def _copy(self, model: keras.Model) -> None:
        for target, source in zip(
            self.model.trainable_variables, model.trainable_variables, strict=True
        ):
            target.assign(source)

    def __call__(self, model: keras.Model) -> dict[str, float]:
        self._copy(model)
        return {name: float(value) for name, value in self._measure().items()}


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
        self, record: RunRecord, evaluator: _Evaluator, stages: int, steps: int, adaptive: bool
    ) -> None:
        super().__init__()
        self.record, self.evaluator, self.stages, self.steps = record, evaluator, stages, steps
        self.adaptive = adaptive
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
        measured = self.evaluator(self.model)
        for name, value in measured.items():
            getattr(self.record, name).append(value)
        self.record.gradients.append(self.count)
        if not math.isfinite(measured["train_loss"]):
            self.model.stop_training = True

    def on_train_end(self, logs: dict | None = None) -> None:
        for name, value in self.evaluator.after_training(self.model).items():
            setattr(self.record, name, value)


def _reset(
    model: keras.Model,
    schedule: ReplayedSteps | None,
    seed: int,
    settings: StudySettings,
    source: RunRecord | None,
) -> None:
    """Put the model back to the seed's start: weights, step counter, step sizes."""
    for variable, value in zip(
        model.trainable_variables, initial_weights(seed, settings.hidden_units), strict=True
    ):
        variable.assign(value)
    model.optimizer.iterations.assign(0)
    if getattr(model, "runge_kutta_adaptive", None) is not None:
        model.runge_kutta_step_scale.assign(1.0)
    if schedule is not None:
        schedule.replay([settings.learning_rate] if source is None else source.step_sizes)


def _pad(record: RunRecord, epochs: int) -> None:
    """Fill the epochs after a stopped run with NaN (its gradient count stays where it stopped)."""
    while len(record.train_loss) < epochs:
        for name in ("train_loss", "val_loss", "train_accuracy", "val_accuracy"):
            getattr(record, name).append(math.nan)
        record.gradient_norm_sq.append(math.nan)
        record.gradients.append(record.gradients[-1] if record.gradients else 0)


def shuffled_batches(settings: StudySettings, data: Any, runs: int = 1) -> dict[int, list[Any]]:
    """Per seed, ``runs`` datasets of the training set that all shuffle alike, epoch by epoch.

    Each is ``as_dataset(..., shuffle_seed=seed)`` built after ``set_seed(seed)``: every method
    trains a seed on the same batches. A dataset keeps the seeds it was built with, so they are
    all built before any training: seeding TensorFlow clears its kernel caches, and reseeding
    between runs would re-instantiate every traced function in every run.
    """
    from course_lib.environment import set_seed

    size = settings.train_size
    x, y = data.x_train[:size].astype("float64"), data.y_train[:size]
    batches = {}
    for seed in settings.seeds:
        set_seed(seed)
        batches[seed] = [
            as_dataset(x, y, settings.batch_size, shuffle_seed=seed) for _ in range(runs)
        ]
    return batches


def train_method(
    label: str,
    settings: StudySettings,
    data: Any,
    sources: dict[int, RunRecord] | None = None,
    evaluator: _Evaluator | None = None,
    models: dict | None = None,
    batches: dict[int, list[Any]] | None = None,
) -> list[RunRecord]:
    """Train ``label`` from every seed; a replay needs its source run per seed in ``sources``.

    ``models`` caches compiled models by solver, so SGD and its replays share one (each traced
    training function costs seconds and memory that Keras does not give back). ``batches``
    (from :func:`shuffled_batches`) holds the datasets left to train on; each run takes one.
    """
    from course_lib.adaptive import StepSizeError
    from course_lib.tableaux import get_tableau

    method = METHODS[label]
    if method.replays is not None and not set(settings.seeds) <= set(sources or {}):
        raise ValueError(f"{label!r} needs the runs of {method.replays!r} for every seed.")
    batches = shuffled_batches(settings, data) if batches is None else batches
    short = [seed for seed in settings.seeds if not batches.get(seed)]
    if short:
        raise ValueError(
            f"batches has no dataset left for seeds {short}: build one per run and seed with "
            "shuffled_batches(settings, data, runs=...)."
        )
    steps = _steps_per_epoch(settings, data)
    stages = 1 if method.is_sgd else get_tableau(method.tableau).stages_needed(method.adaptive)
    evaluator = evaluator or _Evaluator(settings, data)
    models = {} if models is None else models
    key = (method.tableau, method.adaptive)
    if key not in models:
        models[key] = _build_model(method, settings, steps)
    model, schedule = models[key]
    records = []
    for seed in settings.seeds:
        source = None if method.replays is None else sources[seed]
        _reset(model, schedule, seed, settings, source)
        record = RunRecord(method=label, seed=seed)
        callback = _RecordEpochs(record, evaluator, stages, steps, method.adaptive)
        if method.replays is not None:
            record.step_sizes = list(source.step_sizes)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # on_failure="accept" warns per rejected-out step
            try:
                model.fit(
                    batches[seed].pop(), epochs=settings.epochs, verbose=0, callbacks=[callback]
                )
            except StepSizeError:  # every try was NaN/inf: diverged; _pad marks the rest NaN
                pass
        _pad(record, settings.epochs)
        records.append(record)
    return records


def run_overfitting_study(settings: StudySettings, data: Any | None = None) -> list[RunRecord]:
    """Every method from every seed; ``data`` defaults to ``load_dataset("digits")``."""
    if data is None:
        from course_lib.data import load_dataset

        data = load_dataset("digits")
    import gc

    order = settings.ordered_methods()
    batches = shuffled_batches(settings, data, runs=len(order))
    evaluator = _Evaluator(settings, data)
    models: dict = {}
    records: list[RunRecord] = []
    keys = [(METHODS[label].tableau, METHODS[label].adaptive) for label in order]
    for index, label in enumerate(order):
        source = METHODS[label].replays
        sources = {r.seed: r for r in records if r.method == source} if source else None
        records += train_method(label, settings, data, sources, evaluator, models, batches)
        if keys[index] not in keys[index + 1 :]:  # no later method trains this solver
            del models[keys[index]]
            gc.collect()  # lets a notebook's kernel reuse the memory for the next model
    return records


# --------------------------------------------------------------------------------------------
# Rows: mean and spread per method, at equal epochs or equal gradient evaluations
# --------------------------------------------------------------------------------------------

#: The per-run quantities a row summarises.
METRICS: tuple[str, ...] = ("train_loss", "val_loss", "gap", "val_accuracy", "gradient_norm_sq")
#: Quantities measured once, after the last epoch.
AFTER_TRAINING: tuple[str, ...] = ("batch_gradient_norm_sq", "step_correction")


def value_at(record: RunRecord, metric: str, epoch: int) -> float:
    """One measured quantity of a run after ``epoch`` (``"gap"``: validation − training loss)."""
    if metric == "gap":
        return record.gap(epoch)
    if metric in AFTER_TRAINING:
        if epoch not in (-1, len(record.train_loss) - 1):
            raise ValueError(f"{metric} is measured after the last epoch only, not at {epoch}.")
        return getattr(record, metric)
    return getattr(record, metric)[epoch]


def gradient_budget(records: Sequence[RunRecord]) -> int:
    """The gradient evaluations SGD used in all its epochs: what every method gets at equal cost."""
    sgd = [r.gradients[-1] for r in records if r.method == "SGD"]
    if not sgd:
        raise ValueError("comparing at equal gradient evaluations needs the SGD runs (the budget).")
    return min(sgd)


def read_epoch(record: RunRecord, comparison: str, budget: int | None = None) -> int | None:
    """The epoch index a comparison reads: the last one, or the last within ``budget`` (None if
    even the first epoch costs more)."""
    if comparison == "epochs":
        return len(record.train_loss) - 1
    if comparison != "gradients":
        raise ValueError(f"comparison={comparison!r} must be 'epochs' or 'gradients'.")
    within = [i for i, count in enumerate(record.gradients) if count <= budget]
    return within[-1] if within else None


def _spread(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and standard deviation over seeds (sd None for a single value)."""
    if not values:
        return None, None
    array = np.asarray(values, dtype=np.float64)
    return float(array.mean()), (float(array.std(ddof=1)) if array.size > 1 else None)


def study_rows(records: Sequence[RunRecord], comparison: str = "epochs") -> list[dict[str, Any]]:
    """One row per method: runs, diverged runs, epochs read, and mean/sd of each metric.

    ``comparison="epochs"`` reads every run after its last epoch; ``"gradients"`` reads each run
    at its last epoch within SGD's total gradient evaluations. Means and spreads are over the runs
    that did not diverge at that epoch; ``diverged`` counts the others (shown, not dropped), and
    ``blew up`` those among the kept runs that blew up on the way (:meth:`RunRecord.blew_up`).
    """
    budget = gradient_budget(records) if comparison == "gradients" else None
    rows = []
    for method in dict.fromkeys(r.method for r in records):
        runs = [r for r in records if r.method == method]
        epochs = [read_epoch(r, comparison, budget) for r in runs]
        read = [(r, e) for r, e in zip(runs, epochs, strict=True) if e is not None]
        kept = [(r, e) for r, e in read if not r.diverged(e)]
        row: dict[str, Any] = {
            "method": method,
            "runs": len(runs),
            "not reached": len(runs) - len(read),
            "diverged": len(read) - len(kept),
            "diverged seeds": [r.seed for r, e in read if r.diverged(e)],
            "blew up": sum(r.blew_up(e) for r, e in kept),
            "epochs": [e + 1 for _, e in read],
            "gradients": [r.gradients[e] for r, e in read],
        }
        for metric in METRICS:
            row[metric] = _spread([value_at(r, metric, e) for r, e in kept])
        rows.append(row)
    return rows


def _cell(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def format_study_table(rows: Sequence[dict[str, Any]], digits: int = 3) -> str:
    """A markdown table: mean ± sd over the runs that did not diverge, and how many did."""
    lines = [
        "| method | diverged | blew up | epochs | gradient evaluations | train loss | val loss "
        "| val − train | val acc |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        epochs = sorted(set(row["epochs"]))
        epoch_text = (
            "–"
            if not epochs
            else str(epochs[0])
            if len(epochs) == 1
            else f"{epochs[0]}–{epochs[-1]}"
        )
        gradients = f"{np.mean(row['gradients']):,.0f}" if row["gradients"] else "–"
        cells = [
            f"{_cell(row[m][0], digits)} ± {_cell(row[m][1], digits)}"
            for m in ("train_loss", "val_loss", "gap", "val_accuracy")
        ]
        diverged = f"{row['diverged']}/{row['runs']}"
        if row["not reached"]:
            diverged += f" ({row['not reached']} not reached)"
        lines.append(
            f"| {row['method']} | {diverged} | {row['blew up']} | {epoch_text} | {gradients} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Controls: a method against its control, seed by seed
# --------------------------------------------------------------------------------------------


def confidence_interval(differences: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Mean of paired differences and the half-width of its t interval (NaN if fewer than 2)."""
    from scipy import stats

    values = np.asarray(differences, dtype=np.float64)
    if values.size < 2:
        return (float(values.mean()) if values.size else math.nan), math.nan
    half = (
        stats.t.ppf(0.5 + level / 2, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size)
    )
    return float(values.mean()), float(half)


def classify(mean: float, half_width: float) -> str:
    """ "higher" or "lower" when the interval excludes 0 (resolved), else "within seed spread"."""
    if not math.isfinite(half_width):
        return "too few runs"
    if mean - half_width > 0:
        return "higher"
    if mean + half_width < 0:
        return "lower"
    return "within seed spread"


def size_class(mean: float, half_width: float, delta: float) -> str:
    """Where the 95 % interval lies against the meaningful effect ±``delta``.

    ``"< δ"``: inside (−δ, δ), the effect is smaller than δ; ``"≥ δ"``: wholly beyond δ on
    one side, at least δ; ``"undecided"``: it straddles ±δ, the seeds cannot tell.
    """
    if not math.isfinite(half_width):
        return "undecided"
    if -delta < mean - half_width and mean + half_width < delta:
        return "< δ"
    if mean - half_width >= delta or mean + half_width <= -delta:
        return "≥ δ"
    return "undecided"


def meaningful_effect(records: Sequence[RunRecord], share: float = MEANINGFUL_SHARE) -> float:
    """δ: ``share`` of SGD's mean final validation − training gap (runs that did not diverge).

    The article's claim is about that gap; an effect on a loss smaller than a tenth of SGD's own
    gap would not make a method "overfit easily".
    """
    gaps = [r.gap() for r in records if r.method == "SGD" and not r.diverged()]
    if not gaps:
        raise ValueError("the meaningful effect δ is a share of SGD's gap: the study needs SGD.")
    return share * float(np.mean(gaps))


def paired_effects(
    records: Sequence[RunRecord],
    comparisons: Sequence[tuple[str, str, str]] = COMPARISONS,
    metrics: Sequence[str] = ("train_loss", "val_loss", "gap"),
) -> list[dict[str, Any]]:
    """Method − control after the last epoch, paired by seed, for each comparison present.

    A seed pairs two runs that started from the same weights and saw the same batches, so the
    difference is the method's alone. Seeds where either run diverged are left out of the mean
    and counted in ``excluded``. Each metric gets (mean, half-width of the 95 % interval,
    ``classify`` result).
    """
    by_key = {(r.method, r.seed): r for r in records}
    effects = []
    for method, control, differs in comparisons:
        seeds = sorted(
            {s for m, s in by_key if m == method} & {s for m, s in by_key if m == control}
        )
        if not seeds:
            continue
        pairs = [(by_key[method, s], by_key[control, s]) for s in seeds]
        kept = [(a, b) for a, b in pairs if not a.diverged() and not b.diverged()]
        effect: dict[str, Any] = {
            "method": method,
            "control": control,
            "differs": differs,
            "pairs": len(kept),
            "excluded": len(pairs) - len(kept),
        }
        for metric in metrics:
            differences = [value_at(a, metric, -1) - value_at(b, metric, -1) for a, b in kept]
            mean, half = confidence_interval(differences)
            effect[metric] = (mean, half, classify(mean, half))
        effects.append(effect)
    return effects


def shows_article_pattern(effect: dict[str, Any]) -> bool:
    """The article's pattern: training loss lower *and* validation loss higher, both resolved."""
    return effect["train_loss"][2] == "lower" and effect["val_loss"][2] == "higher"


def _described(mean: float, half: float, delta: float | None) -> str:
    """ "lower, < δ": the direction the interval resolves, then its size against δ."""
    direction = classify(mean, half)
    return direction if delta is None else f"{direction}, {size_class(mean, half, delta)}"


def format_effects_table(
    effects: Sequence[dict[str, Any]], delta: float | None = None, digits: int = 3
) -> str:
    """A markdown table of the paired differences (mean ± 95 % half-width, and what they say).

    With ``delta`` each cell also says where its interval lies against ±δ (:func:`size_class`).
    """
    lines = [
        "| method − control | what differs | pairs | Δ train loss | Δ val loss | Δ (val − train) "
        "| article's pattern |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in effects:
        cells = []
        for metric in ("train_loss", "val_loss", "gap"):
            mean, half, _ = e[metric]
            number = (
                f"{_cell(mean, digits)} ± {_cell(half if math.isfinite(half) else None, digits)}"
            )
            cells.append(f"{number} ({_described(mean, half, delta)})")
        pairs = f"{e['pairs']}" + (f" ({e['excluded']} diverged)" if e["excluded"] else "")
        pattern = "yes" if shows_article_pattern(e) else "no"
        lines.append(
            f"| {e['method']} − {e['control']} | {e['differs']} | {pairs} | "
            + " | ".join(cells)
            + f" | {pattern} |"
        )
    return "\n".join(lines)


def verdict(effects: Sequence[dict[str, Any]], delta: float | None = None) -> dict[str, list[str]]:
    """Sort the comparisons by what they isolate and what the gap did.

    Returns, for "order", "step size" and "order and step size", the methods whose gap came out
    higher, lower, or within seed spread, the comparisons that show the article's whole pattern
    and, with ``delta``, those whose gap interval lies inside ±δ, beyond it, or straddles it.
    The notebook states its conclusion from these lists, so a re-run with other numbers changes
    the conclusion, not just the digits.
    """
    result: dict[str, list[str]] = {}
    for differs in ("order", "step size", "order and step size"):
        for e in (e for e in effects if e["differs"] == differs):
            mean, half, outcome = e["gap"]
            result.setdefault(f"{differs}: gap {outcome}", []).append(e["method"])
            if delta is not None:
                size = size_class(mean, half, delta)
                result.setdefault(f"{differs}: gap {size}", []).append(e["method"])
            if shows_article_pattern(e):
                result.setdefault(f"{differs}: article's pattern", []).append(e["method"])
    return result


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def plot_gaps(records: Sequence[RunRecord], axes: Any = None) -> Any:
    """Validation − training loss against epochs, one panel per method, one line per seed.

    Every panel but SGD's also shows SGD's mean (black, dashed, drawn on top: where a method
    matches SGD the two coincide and the reference stays visible), shares the y axis with the
    others, and names in its title how many runs diverged (their lines are left out, never
    silently) and how many blew up on the way (:meth:`RunRecord.blew_up`; drawn).
    """
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(r.method for r in records))
    if axes is None:
        columns = 4
        rows = math.ceil(len(methods) / columns)
        _, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.6 * rows))
    axes = np.atleast_1d(axes).ravel()
    colors = [f"C{i}" for i in range(10) if i != 7]  # C7 is grey, like the reference
    sgd = [r for r in records if r.method == "SGD" and not r.diverged()]
    reference = np.mean([[r.gap(e) for e in range(len(r.train_loss))] for r in sgd], axis=0)
    for index, (ax, method) in enumerate(zip(axes, methods, strict=False)):
        runs = [r for r in records if r.method == method]
        drawn = [r for r in runs if not r.diverged()]
        for r in drawn:
            gaps = [r.gap(e) for e in range(len(r.train_loss))]
            ax.plot(np.arange(1, len(gaps) + 1), gaps, color=colors[index % 9], lw=1, alpha=0.8)
        if sgd and method != "SGD":
            epochs = np.arange(1, len(reference) + 1)
            ax.plot(epochs, reference, color="black", ls="--", lw=1.2, zorder=3, label="SGD, mean")
            ax.legend(fontsize=7, loc="upper left")
        missing = len(runs) - len(drawn)
        note = f"\n{missing} of {len(runs)} runs diverged (not drawn)" if missing else ""
        blown = sum(r.blew_up() for r in drawn)
        note += f"\n{blown} of {len(runs)} runs blew up on the way" if blown else ""
        ax.set_title(f"{method}{note}", fontsize=8)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel("val − train loss", fontsize=8)
    used = axes[: len(methods)]
    low = min(ax.get_ylim()[0] for ax in used)
    high = max(ax.get_ylim()[1] for ax in used)
    for ax in used:
        ax.set_ylim(low, high)  # one scale for every panel, so that gaps compare across them
    for ax in axes[len(methods) :]:
        ax.axis("off")
    return axes


# --------------------------------------------------------------------------------------------
# Tables for the result file (raw numbers; docs render them, notebooks claim against them)
# --------------------------------------------------------------------------------------------


def rows_table(rows: Sequence[dict[str, Any]]) -> Any:
    """:func:`study_rows` as a :class:`course_lib.studies.results.Table` of raw numbers."""
    from course_lib.studies.results import Table

    columns = [("method", ""), ("runs", ""), ("diverged", ""), ("blew up", ""), ("not reached", "")]
    columns += [("epochs", ""), ("gradient evaluations", ",.0f")]
    names = (("train loss", "train_loss"), ("val loss", "val_loss"), ("val − train", "gap"))
    names += (("val acc", "val_accuracy"),)
    for header, _ in names:
        columns += [(header, ".3f"), (f"{header} sd", ".3f")]
    table_rows = []
    for row in rows:
        epochs = sorted(set(row["epochs"]))
        epoch_text = "" if not epochs else f"{epochs[0]}" + (f"–{epochs[-1]}" * (len(epochs) > 1))
        gradients = float(np.mean(row["gradients"])) if row["gradients"] else None
        values = [row["method"], row["runs"], row["diverged"], row["blew up"], row["not reached"]]
        values.append(epoch_text)
        values.append(gradients)
        for _, metric in names:
            values += list(row[metric])
        table_rows.append(values)
    return Table(columns, table_rows)


def effects_table(effects: Sequence[dict[str, Any]], delta: float) -> Any:
    """:func:`paired_effects` as a Table: mean differences, 95 % half-widths and what they say.

    For each loss the table gives the direction the interval resolves (:func:`classify`) and its
    size against the meaningful effect δ (:func:`size_class`), then the article's pattern.
    """
    from course_lib.studies.results import Table

    columns = [("method", ""), ("control", ""), ("what differs", ""), ("pairs", "")]
    columns += [("excluded (diverged)", "")]
    names = (("Δ train loss", "train_loss"), ("Δ val loss", "val_loss"))
    names += (("Δ (val − train)", "gap"),)
    for header, _ in names:
        columns += [(header, "+.3f"), (f"{header} ±", ".3f")]
    for label in ("train", "val", "gap"):
        columns += [(label, ""), (f"{label} vs δ", "")]
    columns += [("article's pattern", "")]
    table_rows = []
    for e in effects:
        values = [e["method"], e["control"], e["differs"], e["pairs"], e["excluded"]]
        for _, metric in names:
            mean, half, _ = e[metric]
            values += [_finite_or_none(mean), _finite_or_none(half)]
        for _, metric in names:
            mean, half, direction = e[metric]
            values += [direction, size_class(mean, half, delta)]
        values.append("yes" if shows_article_pattern(e) else "no")
        table_rows.append(values)
    return Table(columns, table_rows)


def stability_table(records: Sequence[RunRecord]) -> Any:
    """Per method: runs that blew up, the largest rise of a training loss, forced acceptances.

    A forced acceptance is an adaptive step that used up its retries and was applied anyway
    (``on_failure="accept"``); ``accepted steps`` counts every applied adaptive step.
    """
    from course_lib.studies.results import Table

    columns = [("method", ""), ("runs", ""), ("blew up", ""), ("largest rise", ".3f")]
    columns += [("forced acceptances", ""), ("runs with one", ""), ("adaptive steps", "")]
    rows = []
    for method in dict.fromkeys(r.method for r in records):
        runs = [r for r in records if r.method == method]
        adaptive = any(r.forced for r in runs)
        rows.append(
            [
                method,
                len(runs),
                sum(r.blew_up() for r in runs),
                max(r.largest_rise() for r in runs),
                sum(sum(r.forced) for r in runs) if adaptive else None,
                sum(any(r.forced) for r in runs) if adaptive else None,
                sum(len(r.forced) for r in runs) if adaptive else None,
            ]
        )
    return Table(columns, rows)


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def diverged_table(records: Sequence[RunRecord]) -> Any:
    """Every run that ended diverged: which, from which seed, from which epoch on."""
    from course_lib.studies.results import Table

    columns = [("method", ""), ("seed", ""), ("first epoch above ln 10", "")]
    columns += [("final train loss", ".3g"), ("final val loss", ".3g")]
    rows = []
    for r in records:
        if r.diverged():
            first = next(i for i, loss in enumerate(r.train_loss) if is_diverged(loss)) + 1
            final = [_finite_or_none(r.train_loss[-1]), _finite_or_none(r.val_loss[-1])]
            rows.append([r.method, r.seed, first, *final])
    return Table(columns, rows)
