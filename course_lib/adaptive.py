"""Adaptive step size for embedded Runge–Kutta pairs, after SciPy's controller (notebook 05).

An embedded pair (Bogacki–Shampine 2(3), Dormand–Prince 4(5)) computes two solutions of
different orders from the same stages; their difference estimates the local error of the step.
The controller here follows SciPy's ``scipy.integrate.RK23`` / ``RK45`` conventions:

* error norm: the RMS over *all* parameters of ``err / (atol + rtol·max(|p|, |p_new|))``;
* accept the step when that norm is below 1;
* next step size: ``h·factor`` with ``factor = safety·norm^(−1/(q+1))`` clipped to
  ``[min_factor, max_factor]``, q the lower of the two orders; after a rejection within the same
  step the factor is capped at 1 (no growth right after a failure), as SciPy does.

A rejected step restores the weights exactly and is retried on the *same* mini-batch with the
smaller step: the error estimate compares two solutions of one function, so every stage of every
try must see the same data. After ``max_rejections`` failed retries the policy ``on_failure``
decides: ``"raise"`` leaves the weights at the start of the step and raises
:class:`StepSizeError`; ``"accept"`` applies the last (smallest) try and warns.

A try whose error estimate is not finite (the trial points overflowed, or the loss is NaN) is
rejected and the step shrinks by ``min_factor``, as SciPy does. If every try is non-finite the
step raises :class:`StepSizeError` under both policies: accepting it would write NaN weights.

How the step size relates to the optimizer: the training step (:mod:`course_lib.runge_kutta`)
keeps a dimensionless *scale* in a variable (1 at the start) and uses
``h = learning_rate × scale``. So ``SGD(learning_rate=h0)`` starts the adaptive method at step
``h0``, and with ``SGD(learning_rate=1.0)`` the scale *is* the step size. The logs report the
step size ``h`` that was accepted (``"step_size"``) and the retries (``"rejections"``).
"""

from __future__ import annotations

from course_lib.validation import require_choice, require_integer, require_number

from dataclasses import asdict, dataclass
from typing import Any

import keras

__all__ = ["AdaptiveStepSize", "StepSizeError", "StepSizeLog"]

_POLICIES = ("raise", "accept")


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
