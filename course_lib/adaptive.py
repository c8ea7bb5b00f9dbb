"""Adaptive step size for embedded Runge–Kutta pairs, after SciPy's controller (notebook 05).

An embedded pair (Bogacki–Shampine 2(3), Dormand–Prince 4(5)) computes two solutions of
different orders from the same stages; their difference estimates the local error of the step.
The controller here follows SciPy's ``scipy.integrate.RK23`` / ``RK45`` conventions:

* error norm (:func:`error_norm`): the RMS over *all* parameters of
  ``err / (atol + rtol·max(|p|, |p_new|))``;
* accept the step when that norm is below 1;
* next step size: ``h·factor`` with ``factor = safety·norm^(−1/(q+1))`` clipped to
  ``[min_factor, max_factor]``, q the lower of the two orders (:func:`growth_factor`,
  :func:`shrink_factor`); after a rejection within the same step the factor is capped at 1
  (no growth right after a failure), as SciPy does.

A rejected step restores the weights exactly and is retried on the *same* mini-batch with the
smaller step: the error estimate compares two solutions of one function, so every stage of every
try must see the same data. After ``max_rejections`` failed retries the policy ``on_failure``
decides: ``"raise"`` leaves the weights at the start of the step and raises
:class:`StepSizeError`; ``"accept"`` applies the last (smallest) try and warns.

A try whose error estimate is not finite (the trial points overflowed, or the loss is NaN) is
rejected and the step shrinks by ``min_factor``, as SciPy does. If every try is non-finite the
step raises :class:`StepSizeError` under both policies: accepting it would write NaN weights.

The controller knows nothing of Runge–Kutta stages: :func:`controlled_step` runs the retry loop
around a method's ``attempt(scale)`` (:class:`ControlledMethod`). Under a distribution strategy
every try all-reduces gradients, which TensorFlow cannot do inside control flow that runs in a
replica context; so the loop runs once, in cross-replica context, and each try runs on every
replica from there (:mod:`course_lib.distribution`). Every replica computes the same error norm
from the same all-reduced gradients, so the decisions are taken on replica 0's copy.

How the step size relates to the optimizer: the training step (:mod:`course_lib.runge_kutta`)
keeps a dimensionless *scale* in a variable (1 at the start) and uses
``h = learning_rate × scale``. So ``SGD(learning_rate=h0)`` starts the adaptive method at step
``h0``, and with ``SGD(learning_rate=1.0)`` the scale *is* the step size. The logs report the
step size ``h`` that was accepted (``"step_size"``) and the retries (``"rejections"``).
"""

from __future__ import annotations

from course_lib.distribution import (
    first_replica,
    for_each_replica,
    in_cross_replica_context,
)
from course_lib.validation import require_choice, require_integer, require_number

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import keras
from keras import ops

__all__ = [
    "AdaptiveStepSize",
    "ControlledMethod",
    "StepOutcome",
    "StepSizeError",
    "StepSizeLog",
    "as_adaptive",
    "controlled_step",
    "enforce_failure_policy",
    "error_norm",
    "growth_factor",
    "retry_until_accepted",
    "shrink_factor",
    "step_logs",
]

_POLICIES = ("raise", "accept")
#: Stands in for a zero error norm where it is raised to a negative power.
_TINY = 1e-300
#: Log entry that tells the Python side a step used up its retries (removed before Keras sees it).
FAILED_LOG = "_adaptive_step_failed"


class StepSizeError(RuntimeError):
    """The adaptive controller rejected a step more than ``max_rejections`` times."""


@dataclass(frozen=True)
class AdaptiveStepSize:
    """Settings of the adaptive step-size controller (defaults: SciPy's).

    Parameters
    ----------
    rtol, atol:
        Relative and absolute tolerance of the local error, per parameter.
    safety:
        Factor < 1 that aims a little below the largest step the estimate allows.
    min_factor, max_factor:
        Bounds of the change of the step size in one step.
    max_rejections:
        How many times one step may be retried with a smaller step size.
    on_failure:
        ``"raise"`` (keep the weights, raise :class:`StepSizeError`) or ``"accept"`` (apply the
        last, smallest try and warn) when the retries are used up. A last try that is not finite
        is never applied: it raises under both policies.
    """

    rtol: float = 1e-3
    atol: float = 1e-6
    safety: float = 0.9
    min_factor: float = 0.2
    max_factor: float = 10.0
    max_rejections: int = 10
    on_failure: str = "raise"

    def __post_init__(self) -> None:
        for name, default in (("rtol", 1e-3), ("atol", 1e-6)):
            require_number(
                getattr(self, name),
                name,
                low=0.0,
                meaning="a tolerance of the local error, per parameter",
                example=f"{name}={default:g} (SciPy's default)",
            )
        if self.rtol == 0 and self.atol == 0:
            raise ValueError("rtol and atol are both 0: no step could pass; make one positive.")
        require_number(
            self.safety, "safety", low=0.0, high=1.0, low_inclusive=False, example="safety=0.9"
        )
        require_number(
            self.min_factor,
            "min_factor",
            low=0.0,
            high=1.0,
            low_inclusive=False,
            high_inclusive=False,
            example="min_factor=0.2 (SciPy's)",
        )
        require_number(
            self.max_factor,
            "max_factor",
            low=1.0,
            low_inclusive=False,
            finite=False,
            example="max_factor=10 (SciPy's)",
        )
        require_integer(
            self.max_rejections,
            "max_rejections",
            minimum=0,
            meaning="retries of one step",
            example="max_rejections=10",
        )
        require_choice(self.on_failure, "on_failure", _POLICIES)

    def exponent(self, order: int, embedded_order: int) -> float:
        """−1/(q+1) with q = min(order, embedded_order): how the error scales with h."""
        return -1.0 / (min(order, embedded_order) + 1)

    def to_config(self) -> dict[str, Any]:
        """A JSON-friendly dict for saving."""
        return asdict(self)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> AdaptiveStepSize:
        """Rebuild the settings from :meth:`to_config`'s dict."""
        return cls(**config)


def as_adaptive(adaptive: AdaptiveStepSize | bool | dict | None) -> AdaptiveStepSize | None:
    """Normalise the ``adaptive=`` argument: None/False → off, True → defaults, dict → settings."""
    if adaptive is None or adaptive is False:
        return None
    if adaptive is True:
        return AdaptiveStepSize()
    if isinstance(adaptive, AdaptiveStepSize):
        return adaptive
    if isinstance(adaptive, dict):
        return AdaptiveStepSize.from_config(adaptive)
    raise TypeError(
        f"adaptive must be None, True, a dict or an AdaptiveStepSize, got "
        f"{type(adaptive).__name__} {adaptive!r}."
    )


# --------------------------------------------------------------------------------------------
# The controller's arithmetic: pure functions of arrays or tensors (float64)
# --------------------------------------------------------------------------------------------


def error_norm(
    start: Sequence[Any], new: Sequence[Any], error: Sequence[Any], settings: AdaptiveStepSize
) -> Any:
    """SciPy's RMS norm of ``error / (atol + rtol·max(|p|, |p_new|))`` over all parameters.

    One array per variable in each list (NumPy arrays or tensors; static shapes); an ``error``
    entry of ``None`` (a variable without a gradient) is left out of the mean. The result is a
    float64 tensor, as are the factors below: float32 would move the accept/reject decisions.
    """
    total = ops.convert_to_tensor(0.0, "float64")
    count = 0
    for p, q, e in zip(start, new, error, strict=True):
        if e is None:
            continue
        p, q = ops.cast(p, "float64"), ops.cast(q, "float64")
        scale = settings.atol + settings.rtol * ops.maximum(ops.abs(p), ops.abs(q))
        total = total + ops.sum(ops.square(ops.cast(e, "float64") / scale))
        count += math.prod(tuple(p.shape))
    if count == 0:
        return ops.convert_to_tensor(0.0, "float64")
    return ops.sqrt(total / count)


def _safety_factor(norm: Any, settings: AdaptiveStepSize, exponent: float) -> Any:
    """safety·norm^exponent, the factor that aims the next error norm at about safety^(q+1)."""
    return settings.safety * ops.power(ops.maximum(norm, _TINY), exponent)


def shrink_factor(norm: Any, settings: AdaptiveStepSize, exponent: float) -> Any:
    """The step-size factor after a rejected try: ``max(min_factor, safety·norm^exponent)``.

    A norm that is not finite (the try overflowed) gives ``min_factor``, as SciPy's
    ``max(MIN_FACTOR, nan)`` does; a NaN carried into the step size would fail every later try.
    """
    norm = ops.convert_to_tensor(norm, "float64")
    factor = ops.maximum(settings.min_factor, _safety_factor(norm, settings, exponent))
    return ops.where(ops.isfinite(norm), factor, settings.min_factor)


def growth_factor(
    norm: Any, after_rejection: Any, settings: AdaptiveStepSize, exponent: float
) -> Any:
    """The step-size factor for the next step after an accepted one.

    ``min(max_factor, safety·norm^exponent)`` (``max_factor`` for a zero norm), capped at 1 when
    this step was accepted only after a rejection.
    """
    norm = ops.convert_to_tensor(norm, "float64")
    factor = ops.where(
        norm == 0.0,
        settings.max_factor,
        ops.minimum(settings.max_factor, _safety_factor(norm, settings, exponent)),
    )
    return ops.where(after_rejection, ops.minimum(factor, 1.0), factor)


# --------------------------------------------------------------------------------------------
# The retry loop
# --------------------------------------------------------------------------------------------


class RetryOutcome(NamedTuple):
    """What the retry loop ends with: the last try, and whether it was accepted."""

    tries: Any
    scale: Any
    accepted: Any
    norm: Any
    payload: Any


def retry_until_accepted(
    attempt: Callable[[Any], tuple[Any, Any]],
    scale: Any,
    payload: Any,
    settings: AdaptiveStepSize,
    exponent: float,
) -> RetryOutcome:
    """Call ``attempt(scale)`` until its error norm is below 1 or the retries are used up.

    ``attempt`` returns ``(norm, payload)``: the try's error norm and what the caller needs to
    apply it later (a structure of tensors shaped like ``payload``, the initial value). Each
    retry shrinks ``scale`` by :func:`shrink_factor` of the last norm. Runs as one
    ``while_loop``, so it compiles into the training step.
    """

    def condition(tries, scale, accepted, norm, payload):
        return ops.logical_and(ops.logical_not(accepted), tries <= settings.max_rejections)

    def body(tries, scale, accepted, norm, payload):
        scale = ops.where(tries > 0, scale * shrink_factor(norm, settings, exponent), scale)
        norm, payload = attempt(scale)
        return tries + 1, scale, norm < 1.0, norm, payload

    initial = (
        ops.convert_to_tensor(0, "int32"),
        ops.convert_to_tensor(scale, "float64"),
        ops.convert_to_tensor(False),
        ops.convert_to_tensor(0.0, "float64"),
        payload,
    )
    return RetryOutcome(
        *ops.while_loop(condition, body, initial, maximum_iterations=settings.max_rejections + 1)
    )


class ControlledMethod(NamedTuple):
    """What a method hands :func:`controlled_step`; each function runs on every replica.

    ``attempt(scale, inputs)`` tries the step with ``h = learning_rate·scale`` and returns
    ``(error_norm, payload)``; it may leave the weights anywhere. ``restore(inputs)`` puts them
    back where the step started. ``apply(payload, scale, inputs)`` takes the step that try
    computed. ``initial_payload()`` is a payload of the right structure (zeros).
    """

    attempt: Callable[[Any, Any], tuple[Any, Any]]
    restore: Callable[[Any], None]
    apply: Callable[[Any, Any, Any], None]
    initial_payload: Callable[[], Any]


class StepOutcome(NamedTuple):
    """The controlled step's result, as the logs report it."""

    rejections: Any
    scale: Any
    accepted: Any
    norm: Any


def controlled_step(
    method: ControlledMethod,
    inputs: Any,
    scale: keras.Variable,
    settings: AdaptiveStepSize,
    exponent: float,
) -> StepOutcome:
    """Try, shrink and retry on the same batch, then apply the step or keep the weights.

    Called per replica with that replica's ``inputs`` (a structure of tensors, handed to the
    method's functions). ``scale`` is the variable holding h / learning_rate: the first try uses
    it, and an applied step leaves there the scale for the next batch.
    """

    def decide(distribution, inputs):
        def attempt_everywhere(try_scale):
            tried = for_each_replica(distribution, method.attempt, try_scale, inputs)
            return first_replica(distribution, tried)

        last = retry_until_accepted(
            attempt_everywhere, ops.copy(scale.value), method.initial_payload(), settings, exponent
        )
        for_each_replica(distribution, method.restore, inputs)
        rejections = last.tries - 1
        grow = growth_factor(last.norm, rejections > 0, settings, exponent)

        def apply_step():
            for_each_replica(distribution, method.apply, last.payload, last.scale, inputs)
            scale.assign(last.scale * grow)

        if settings.on_failure == "accept":
            # A failed last try is applied, unless it is not finite: that would be NaN weights.
            ops.cond(ops.isfinite(last.norm), apply_step, lambda: None)
        else:
            ops.cond(last.accepted, apply_step, lambda: None)
        return StepOutcome(rejections, last.scale, last.accepted, last.norm)

    return StepOutcome(*in_cross_replica_context(decide, inputs))


# --------------------------------------------------------------------------------------------
# Logs and the failure policy
# --------------------------------------------------------------------------------------------


def step_logs(outcome: StepOutcome, step_size: Any) -> dict[str, Any]:
    """The logs an adaptive step adds: ``step_size``, ``rejections``, ``error_norm``."""
    return {
        "step_size": step_size,
        "rejections": outcome.rejections,
        "error_norm": outcome.norm,
        # A number, not a bool: under a strategy Keras averages every log across replicas.
        FAILED_LOG: ops.cast(ops.logical_not(outcome.accepted), "float32"),
    }


def enforce_failure_policy(
    train_function: Callable[..., Any],
    settings: AdaptiveStepSize,
    keep_state: Callable[[Any], None] | None = None,
) -> Callable[..., Any]:
    """Wrap a train function so that a step that used up its retries raises or warns.

    TensorFlow's train function maps an iterator to the logs. JAX's maps ``(state, iterator)``
    to ``(logs, state)``: the new state lives outside the model until ``fit`` writes it back,
    so before raising, ``keep_state(state)`` hands the failed step's state (the weights at its
    start) to the model.
    """

    def function(*args):
        result = train_function(*args)
        stateless = isinstance(result, tuple)
        logs, state = (dict(result[0]), result[1]) if stateless else (dict(result), None)
        if float(logs.pop(FAILED_LOG)) > 0:
            if stateless and keep_state is not None:
                keep_state(state)
            _fail(logs, settings)
        return (logs, state) if stateless else logs

    return function


def _fail(logs: dict[str, Any], settings: AdaptiveStepSize) -> None:
    """Raise :class:`StepSizeError` for a failed step, or warn under ``on_failure="accept"``."""
    tries = settings.max_rejections + 1
    step_size = float(logs["step_size"])
    if not math.isfinite(float(logs["error_norm"])):
        raise StepSizeError(
            f"adaptive step: the error estimate was not finite (NaN or inf) in all {tries} tries, "
            f"down to step size {step_size:.3g}: the loss or its gradient is not finite at the "
            "start of the step or at every trial point. The weights were left at the start of "
            "the step. Check the data and the loss for NaN/inf values, or lower the learning "
            "rate (the first step size)."
        )
    message = (
        f"adaptive step rejected {tries} times (error norm {float(logs['error_norm']):.3g}, "
        f"last step size {step_size:.3g}, rtol={settings.rtol}, atol={settings.atol})"
    )
    if settings.on_failure == "raise":
        raise StepSizeError(
            f"{message}; the weights were left at the start of the step. Loosen rtol/atol, raise "
            "max_rejections, lower the learning rate, or pass "
            "AdaptiveStepSize(on_failure='accept')."
        )
    warnings.warn(f"{message}; applied the last try anyway (on_failure='accept').", stacklevel=3)


class StepSizeLog(keras.callbacks.Callback):
    """Record the adaptive step size and the rejections of every training step.

    ``History`` keeps one value per *epoch* (the last step's); this callback keeps one per
    *step*, for figures of the step size over training. After ``fit``, read ``step_sizes``
    and ``rejections`` (lists of floats and ints).
    """

    def __init__(self) -> None:
        super().__init__()
        self.step_sizes: list[float] = []
        self.rejections: list[int] = []

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        if "step_size" not in logs:
            raise ValueError(
                "StepSizeLog found no 'step_size' in the training logs: use it with an adaptive "
                "Runge–Kutta model (adaptive=AdaptiveStepSize(...))."
            )
        self.step_sizes.append(float(logs["step_size"]))
        self.rejections.append(int(round(float(logs["rejections"]))))
