"""One training step that takes several gradients on the same mini-batch (notebooks 04, 05, 07).

A Keras optimizer's ``update_step`` sees one gradient. Heun and Runge–Kutta (notebooks 04–05)
and SAM (notebook 07) need the gradient at other points too, on the *same* mini-batch, so they
own the training step. What they share is this skeleton (:func:`multi_gradient_train_step`):

1. snapshot the trainable weights p and the non-trainable state (BatchNorm statistics, seeds)
   *by value* (a snapshot that kept references would "restore" weights that have already moved);
2. the first pass at p: predictions, loss and this replica's gradient; the loss goes to the
   running mean that ``fit`` logs, as Keras's own step does, so the logs describe p;
3. the method's *direction rule* takes gradients at trial points of its choice
   (:meth:`TrialPoints.gradients_at`): the non-trainable state is put back before each pass,
   so every pass evaluates the same function;
4. the weights go back to p and the non-trainable state to where the first pass left it (so
   BatchNorm's moving statistics move once per step, from p), and the compiled optimizer
   applies the rule's direction;
5. the compiled metrics are computed from the first pass's predictions.

A method supplies only its rule (SAM: a few lines, Runge–Kutta: its stages) and a
:class:`StepConfig` (its settings, saved with the model). Two ways in share the rest:

* **clean**: a model class with the :class:`MultiGradientTrainStep` mixin, whose ``train_step``
  is the skeleton; it saves and loads as a ``.keras`` file with its settings;
* **intrusive**: :func:`inject` swaps an existing compiled model's ``train_function`` for Keras's
  own train function built around the skeleton, tagged so that :func:`is_injected` recognises it
  and :func:`eject` removes it (``compile`` removes it too).

Under ``tf.distribute.MirroredStrategy`` each replica's gradient is its share of the batch's. A
rule builds trial points from the whole batch's gradient (``distribution.sum_replicas``) and
hands the optimizer this replica's share of the direction, which the optimizer sums.

On Keras's JAX backend the trainer calls a *stateless* ``train_step(state, data)``: the same
skeleton is a pure function there (:mod:`course_lib.jax_training_step`), and each method supplies
the same rule written on values (:meth:`StepConfig.stateless_direction_rule`). The mixin's
``train_step`` and :func:`inject` choose by ``keras.backend.backend()``; the TensorFlow code
below is unchanged by it.

The idea of taking over the training step comes from Su Jianlin, "Keras之小众需求:自定义优化器"
(kexue.fm, 2018), which built Keras 2's ``model.train_function`` by hand.
"""

from __future__ import annotations

from course_lib.distribution import global_loss
from course_lib.keras_internals import make_train_function

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import keras

if keras.backend.backend() == "tensorflow":
    # The TensorFlow step; on JAX the stateless one (jax_training_step) runs without it.
    import tensorflow as tf

__all__ = [
    "Batch",
    "Direction",
    "MultiGradientTrainStep",
    "StepConfig",
    "StepMethod",
    "StepStart",
    "TrialPoints",
    "assign_all",
    "batch_size_of",
    "eject",
    "inject",
    "is_injected",
    "multi_gradient_train_step",
    "require_optimizer",
    "snapshot",
]


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


class Batch(NamedTuple):
    """One mini-batch, as ``fit`` hands it to a training step."""

    x: Any
    y: Any
    sample_weight: Any


class StepStart(NamedTuple):
    """Where a step starts, as one replica sees it: tensors only (per replica under a strategy)."""

    batch: Batch
    #: The trainable weights p, by value.
    weights: list
    #: The non-trainable state before the first pass, put back before every trial pass.
    frozen_before: list
    #: The non-trainable state as the first pass left it, kept after the step.
    frozen_after: list
    #: ∇L(p): this replica's share of the batch's gradient.
    gradients: list


@dataclass(frozen=True)
class Direction:
    """What a direction rule returns.

    ``gradients`` are handed to the compiled optimizer, one per trainable variable (this
    replica's share); ``None`` when the rule applied the step itself (or kept the weights), as
    the adaptive Runge–Kutta step does inside its retry loop. ``logs`` are added to the step's.
    """

    gradients: list | None
    logs: Mapping[str, Any] = field(default_factory=dict)


def snapshot(variables: Sequence) -> list[tf.Tensor]:
    """Copies of the variables' current values (by value: later assigns don't change them)."""
    return [tf.identity(v.value) for v in variables]


def assign_all(variables: Sequence, values: Sequence) -> None:
    """Set each variable to the matching value."""
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)


def batch_size_of(x: Any) -> tf.Tensor:
    """The number of examples in the batch ``x`` (its first non-empty input's first axis)."""
    return tf.shape(next(i for i in tf.nest.flatten(x) if i is not None))[0]


@dataclass(frozen=True, eq=False)
class TrialPoints:
    """The model's weights as a step moves them: to trial points, and back to the start."""

    model: keras.Model
    #: The trainable variables, in the order of every list of weights and gradients.
    variables: list
    #: The non-trainable variables that are put back around every pass.
    frozen: list

    def forward(self, batch: Batch) -> tuple[Any, Any, list]:
        """Predictions, loss and gradient at the current weights, as Keras's own step takes them."""
        with tf.GradientTape() as tape:
            y_pred = self.model(batch.x, training=True)
            loss = self.model.compute_loss(
                x=batch.x,
                y=batch.y,
                y_pred=y_pred,
                sample_weight=batch.sample_weight,
                training=True,
            )
        return y_pred, loss, tape.gradient(loss, self.variables)

    def gradients_at(self, start: StepStart, point: Sequence[Any]) -> list:
        """This replica's gradient at the weights ``point``, on the step's batch and state."""
        assign_all(self.variables, point)
        assign_all(self.frozen, start.frozen_before)
        return self.forward(start.batch)[2]

    def restore(self, start: StepStart) -> None:
        """Weights back to p, non-trainable state as the first pass left it."""
        assign_all(self.variables, start.weights)
        assign_all(self.frozen, start.frozen_after)


#: A method's rule: from the start of the step to the direction the optimizer applies.
DirectionRule = Callable[[TrialPoints, StepStart], Direction]


# --------------------------------------------------------------------------------------------
# The skeleton
# --------------------------------------------------------------------------------------------


def multi_gradient_train_step(
    model: keras.Model, data: Any, rule: DirectionRule, own_variables: Sequence[Any] = ()
) -> dict[str, Any]:
    """One training step of ``model`` on ``data`` whose direction comes from ``rule``.

    Runs inside Keras's train function (a replica context); returns the logs, taken at the
    start point as a standard step's. ``own_variables`` are non-trainable variables of the
    method itself (the adaptive step scale), which the passes must not put back.
    """
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    own = {id(v) for v in own_variables}
    trial = TrialPoints(
        model,
        list(model.trainable_variables),
        [v for v in model.non_trainable_variables if id(v) not in own],
    )
    weights, frozen_before = snapshot(trial.variables), snapshot(trial.frozen)
    batch = Batch(x, y, sample_weight)
    y_pred, loss, gradients = trial.forward(batch)
    loss_metric = next(metric for metric in model.metrics if metric.name == "loss")
    loss_metric.update_state(global_loss(loss), sample_weight=batch_size_of(x))
    start = StepStart(batch, weights, frozen_before, snapshot(trial.frozen), gradients)

    direction = rule(trial, start)
    if direction.gradients is not None:
        trial.restore(start)
        model.optimizer.apply_gradients(zip(direction.gradients, trial.variables, strict=True))
    logs = dict(model.compute_metrics(x, y, y_pred, sample_weight=sample_weight))
    logs.update(direction.logs)
    return logs


# --------------------------------------------------------------------------------------------
# A method's settings and the checks both routes make
# --------------------------------------------------------------------------------------------


class StepConfig:
    """A method's settings: its rule, its own variables, and what is saved with a model."""

    def direction_rule(self) -> DirectionRule:
        raise NotImplementedError

    def stateless_direction_rule(self) -> Callable[[Any, StepStart], Any]:
        """The same rule as a pure function of the state, for Keras's JAX trainer.

        See :mod:`course_lib.jax_training_step`; the rule returns a ``StatelessDirection``.
        """
        raise NotImplementedError

    def check_stateless_route(self, intrusive: bool, where: str) -> None:
        """Raise a clear error if the method cannot run this way on JAX (before ``fit``)."""

    def own_variables(self) -> list:
        """Non-trainable variables of the method that the passes must not put back."""
        return []

    def check_model(self, model: keras.Model, where: str) -> None:
        """Raise a clear error if ``model`` cannot be trained this way (called before ``fit``)."""

    def finish_train_function(self, function: Callable, model: keras.Model) -> Callable:
        """Wrap ``model``'s train function on the Python side (the adaptive failure policy)."""
        return function

    def to_config(self) -> dict[str, Any]:
        """The settings as constructor keyword arguments, JSON-friendly."""
        raise NotImplementedError


@dataclass(frozen=True)
class StepMethod:
    """How a method names itself in messages and marks an injected train function."""

    #: "SAM", "Runge–Kutta".
    name: str
    #: The attribute that marks a train function installed by :func:`inject`.
    tag: str
    #: What the clean route's models set in their constructor ("rho", "its tableau").
    setting: str
    #: Finishes the sentence "Call model.compile(...) first;".
    needs_optimizer: str


def require_optimizer(model: keras.Model, where: str, why: str) -> keras.optimizers.Optimizer:
    """Return the compiled optimizer, or raise a clear error if there is none or it scales the loss.

    ``why`` finishes the sentence "Call model.compile(...) first;" for the method at hand.
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or not getattr(model, "compiled", False):
        raise ValueError(
            f"{where}: model {getattr(model, 'name', model)!r} has no optimizer. Call "
            f"model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss=...) first; "
            f"{why}"
        )
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        raise TypeError(
            f"{where}: LossScaleOptimizer (mixed precision) is not supported by a multi-gradient "
            "step: its extra evaluation points need unscaled gradients. Use a float32 or float64 "
            "policy."
        )
    return optimizer


def _check_model(model: keras.Model, method: StepMethod, config: StepConfig, where: str) -> None:
    require_optimizer(model, where, method.needs_optimizer)
    config.check_model(model, where)


# --------------------------------------------------------------------------------------------
# The clean route
# --------------------------------------------------------------------------------------------


class MultiGradientTrainStep:
    """Mixin: a ``train_step`` that runs the skeleton with the model's :class:`StepConfig`.

    Put it before the Keras model class; a method's mixin sets :attr:`step_method` and
    :attr:`step_defaults` and implements :meth:`_step_config_for`; the model calls
    :meth:`_configure_step` with the settings in ``__init__``. They are saved in its config.
    """

    step_method: ClassVar[StepMethod]
    #: The constructor's settings and their defaults (restored by ``from_config``).
    step_defaults: ClassVar[dict[str, Any]]
    step_config: StepConfig

    def _step_config_for(self, **settings: Any) -> StepConfig:
        """The method's :class:`StepConfig` for the constructor's settings (checked)."""
        raise NotImplementedError

    def _configure_step(self, **settings: Any) -> None:
        self.step_config = self._step_config_for(**settings)

    def train_step(self, *args: Any) -> Any:
        """TensorFlow: ``train_step(data) -> logs``.

        JAX: ``train_step(state, data) -> (logs, state)``, the stateless step of
        :mod:`course_lib.jax_training_step`.
        """
        config = self.step_config
        if keras.backend.backend() == "jax":
            from course_lib.jax_training_step import stateless_multi_gradient_step

            state, data = args
            return stateless_multi_gradient_step(
                self, state, data, config.stateless_direction_rule()
            )
        (data,) = args
        return multi_gradient_train_step(
            self, data, config.direction_rule(), config.own_variables()
        )

    def make_train_function(self, force: bool = False):
        if self.train_function is not None and not force:
            return self.train_function
        where = f"{type(self).__name__}.fit"
        _check_model(self, self.step_method, self.step_config, where)
        if keras.backend.backend() == "jax":
            self.step_config.check_stateless_route(intrusive=False, where=where)
        super().make_train_function(force=True)
        self.train_function = self.step_config.finish_train_function(self.train_function, self)
        return self.train_function

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(self.step_config.to_config())
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None):
        """Rebuild the model, then its settings (``Sequential.from_config`` drops them)."""
        config = dict(config)
        settings = {name: config.pop(name, d) for name, d in cls.step_defaults.items()}
        model = super().from_config(config, custom_objects=custom_objects)
        model._configure_step(**settings)
        return model


# --------------------------------------------------------------------------------------------
# The intrusive route
# --------------------------------------------------------------------------------------------


def inject(model: Any, method: StepMethod, config: StepConfig, where: str) -> keras.Model:
    """Install Keras's train function around the skeleton as ``model.train_function``.

    Built with Keras's own machinery, so ``steps_per_execution``, distribution and
    ``jit_compile`` behave as in a standard ``fit``; ``evaluate`` and ``predict`` are unchanged.
    The function is tagged with ``config`` so that :func:`is_injected` recognises it;
    ``compile()`` resets ``train_function`` and so removes it too.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"{where}: model must be a keras.Model, got {type(model).__name__}; build and compile "
            "a Keras model first."
        )
    if isinstance(model, MultiGradientTrainStep):
        raise TypeError(
            f"{where}: model {model.name!r} is already a {type(model).__name__}, which owns its "
            f"training step; set {model.step_method.setting} in its constructor instead of "
            "injecting."
        )
    _check_model(model, method, config, where)
    if keras.backend.backend() == "jax":
        from course_lib import jax_training_step

        config.check_stateless_route(intrusive=True, where=where)
        built = jax_training_step.make_train_function(model, config.stateless_direction_rule())
    else:
        rule, own = config.direction_rule(), config.own_variables()

        def step(data: Any) -> dict[str, Any]:
            return multi_gradient_train_step(model, data, rule, own)

        built = make_train_function(model, step)
    function = config.finish_train_function(built, model)

    def train_function(*args):
        return function(*args)

    setattr(train_function, method.tag, config)
    model.train_function = train_function
    return model


def is_injected(model: keras.Model, method: StepMethod) -> bool:
    """Whether ``model.train_function`` was installed by :func:`inject` for ``method``."""
    return hasattr(getattr(model, "train_function", None), method.tag)


def eject(model: keras.Model, method: StepMethod) -> keras.Model:
    """Undo :func:`inject`: the next ``fit`` builds Keras's standard step again."""
    if not is_injected(model, method):
        raise ValueError(
            f"model {getattr(model, 'name', model)!r} has no injected {method.name} step (it was "
            "never injected, or compile() already removed it)."
        )
    model.train_function = None
    return model
