"""What a multi-gradient training step hands around: the records at the bottom of the package.

Every module of :mod:`course_lib.multi_gradient_step` and every method (Runge–Kutta, SAM, the
adaptive controller) speaks in these terms, and this module imports nothing of course_lib, so
no import can go round in a circle:

* :class:`Batch`, :class:`StepStart`: the mini-batch and where the step starts (the weights p,
  the non-trainable state, ∇L(p), the learning rate, the loss scale under mixed precision);
* :class:`TrialPoints`: the one thing a rule asks of the backend, "the gradient at this point,
  on this batch";
* :class:`Direction`: what a rule answers, the direction the optimizer applies;
* :class:`Method`: a rule, and a step-size controller if the method has one.

A *rule* is a function ``rule(trial, start, step_size) -> Direction`` written once in
``keras.ops``; only :class:`TrialPoints` differs between the backends.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import keras

__all__ = [
    "Batch",
    "Controller",
    "Direction",
    "ErrorEstimate",
    "Method",
    "Rule",
    "StepStart",
    "TrialPoints",
]


class Batch(NamedTuple):
    """One mini-batch, as ``fit`` hands it to a training step."""

    x: Any
    y: Any
    sample_weight: Any


class StepStart(NamedTuple):
    """Where a step starts: tensors only (on TensorFlow, one replica's)."""

    batch: Batch
    #: The trainable weights p, by value.
    weights: list
    #: The non-trainable state before the first pass; every trial pass starts from it.
    frozen_before: list
    #: The non-trainable state as the first pass left it, kept after the step.
    frozen_after: list
    #: ∇L(p), the whole batch's (``None`` for a variable the loss does not depend on).
    gradients: list
    #: The optimizer's learning rate at this step (a schedule's value at its iteration count).
    learning_rate: Any
    #: The loss scale of a ``LossScaleOptimizer`` (mixed precision), ``None`` without one: each
    #: pass differentiates loss × scale and hands on the gradients divided by it.
    loss_scale: Any = None


class TrialPoints(Protocol):
    """The gradients of the step's loss at other weights: each backend's way of taking them."""

    def gradients_at(self, start: StepStart, point: Sequence[Any]) -> list:
        """∇L at the weights ``point``, on ``start``'s batch and non-trainable state.

        The whole batch's gradient, on every replica, unscaled (``start.loss_scale``); ``None``
        where ``start.gradients`` is.
        """
        ...

    def loss_and_gradients_at(self, start: StepStart, point: Sequence[Any]) -> tuple[Any, list]:
        """The whole batch's loss at ``point`` (unscaled) and :meth:`gradients_at` there.

        The skeleton asks it under mixed precision, to tell an overflow of the scaled gradient
        (the loss is finite) from a point where the loss itself is not.
        """
        ...

    def restore(self, start: StepStart) -> None:
        """Put the weights back to p and the non-trainable state to ``start.frozen_after``
        (the controller's own variables excepted)."""
        ...


class ErrorEstimate(NamedTuple):
    """An embedded pair's estimate of the local error of the step a rule proposes."""

    #: The weights after the step, in the weights' dtypes (formed in float64).
    new_weights: list
    #: The local error per variable, float64 (``None`` for a variable without a gradient).
    error: list


@dataclass(frozen=True)
class Direction:
    """What a rule returns.

    ``gradients`` are the whole batch's direction, one per trainable variable (``None`` for a
    variable without a gradient), which the optimizer applies as if it were the gradient.
    ``logs`` join the step's logs. ``estimate`` is given by a rule asked for one, for a
    step-size controller.
    """

    gradients: list
    logs: Mapping[str, Any] = field(default_factory=dict)
    estimate: ErrorEstimate | None = None


#: A method's rule: the direction from the start of the step, for a step of size ``step_size``.
Rule = Callable[[TrialPoints, StepStart, Any], Direction]


class Controller(Protocol):
    """A step-size controller: it tries a rule, decides, and applies the step itself."""

    #: Its own variables (the step scale): the trial passes never put them back.
    variables: Sequence[keras.Variable]

    def step(
        self, rule: Rule, trial: TrialPoints, start: StepStart, model: keras.Model
    ) -> Mapping[str, Any]:
        """Try ``rule``, apply the step it accepts (or keep the weights); the logs it adds."""
        ...

    def check_logs(self, logs: dict[str, Any]) -> None:
        """After each call of the train function, on the Python side: raise or warn on failure.

        Removes the entries of ``logs`` meant for it alone.
        """
        ...


@dataclass(frozen=True, eq=False)
class Method:
    """A training-step method: its rule, and a step-size controller if it has one.

    Without a controller the skeleton asks the rule for a step of the learning rate's size and
    the compiled optimizer applies the direction. ``check`` (optional) refuses a compiled model
    the method cannot train, with a message that starts with ``where``.
    """

    rule: Rule
    controller: Controller | None = None
    check: Callable[[keras.Model, str], None] | None = None

    @property
    def own_variables(self) -> list:
        """The controller's variables, which the passes must not put back."""
        return [] if self.controller is None else list(self.controller.variables)
