"""The argument checks course_lib repeats: counts, numbers in a range, choices, fresh optimizers.

A wrong argument fails when the object is made, with a message that names the argument, its
value, what it means and a correct call, rather than training silently into garbage (a NaN
learning rate, a momentum of 1) or failing later inside a traced function. The rules that are easy
to get subtly wrong live here once: ``True`` is not a number although ``bool`` is an ``int``, NaN
fails every range, and a float is not a count even when it is whole.

Importing this module imports neither TensorFlow nor Keras, so ``course_lib.environment`` can use
it before TensorFlow is configured.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any

__all__ = [
    "is_number",
    "require_choice",
    "require_fresh_optimizer",
    "require_integer",
    "require_number",
]


def is_number(value: Any) -> bool:
    """Whether ``value`` is a real number (``bool`` excluded)."""
    return isinstance(value, Real) and not isinstance(value, bool)


def _explained(meaning: str | None) -> str:
    return "" if meaning is None else f" ({meaning})"


def require_integer(
    value: Any, name: str, *, minimum: int, meaning: str | None = None, example: str
) -> int:
    """Return ``value`` if it is an integer ≥ ``minimum``; otherwise raise naming ``name``.

    ``TypeError`` for anything that is not an integer (floats and bools included), ``ValueError``
    below ``minimum``. ``example`` is a correct setting, e.g. ``"steps=4"``.
    """
    if isinstance(value, bool) or not isinstance(value, Integral):
        kind = "a positive integer" if minimum == 1 else f"an integer ≥ {minimum}"
        raise TypeError(
            f"{name} must be {kind}{_explained(meaning)}, got {value!r} of type "
            f"{type(value).__name__}; e.g. {example}."
        )
    if value < minimum:
        raise ValueError(
            f"{name} must be at least {minimum}{_explained(meaning)}, got {name}={value!r}; "
            f"e.g. {example}."
        )
    return int(value)


def _interval(
    low: float | None, high: float | None, low_inclusive: bool, high_inclusive: bool
) -> str:
    """The range as people write it: "in (0, 1]", "≥ 0", "> 1"."""
    if low is not None and high is not None:
        left, right = "[" if low_inclusive else "(", "]" if high_inclusive else ")"
        return f"in {left}{low:g}, {high:g}{right}"
    if low is not None:
        return f"{'≥' if low_inclusive else '>'} {low:g}"
    if high is not None:
        return f"{'≤' if high_inclusive else '<'} {high:g}"
    return "of any size"


def _inside(
    value: float,
    low: float | None,
    high: float | None,
    low_inclusive: bool,
    high_inclusive: bool,
) -> bool:
    above = low is None or (value >= low if low_inclusive else value > low)
    below = high is None or (value <= high if high_inclusive else value < high)
    return above and below


def require_number(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    finite: bool = True,
    meaning: str | None = None,
    example: str,
) -> float:
    """Return ``value`` as a float if it is a number in the range; otherwise raise naming ``name``.

    ``TypeError`` for a non-number (``bool`` and strings included), ``ValueError`` for NaN, for
    an infinity when ``finite``, and for a value outside ``low``..``high`` (each bound inclusive
    unless said otherwise). ``example`` is a correct setting, e.g. ``"rho=0.05"``.
    """
    interval = _interval(low, high, low_inclusive, high_inclusive)
    if not is_number(value):
        raise TypeError(
            f"{name} must be a number {interval}{_explained(meaning)}, got {value!r} of type "
            f"{type(value).__name__}; e.g. {example}."
        )
    number = float(value)
    if (
        math.isnan(number)
        or (finite and math.isinf(number))
        or not _inside(number, low, high, low_inclusive, high_inclusive)
    ):
        if interval.startswith("in "):
            requirement = interval
        else:
            requirement = f"a finite number {interval}" if finite else interval
        raise ValueError(
            f"{name} must be {requirement}{_explained(meaning)}, got {name}={value!r}; "
            f"e.g. {example}."
        )
    return number


def require_choice(value: Any, name: str, choices: Sequence[Any]) -> Any:
    """Return ``value`` if it is one of ``choices``; otherwise raise ``ValueError`` listing them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}.")
    return value


def require_fresh_optimizer(inner: Any, wrapper: type, example: str) -> None:
    """Raise unless ``inner`` is a fresh, unscaled, non-accumulating Keras optimizer.

    ``wrapper`` is the wrapping class (an ``inner`` of that very class is refused: wrap once);
    ``example`` is a correct call of it. A wrapper builds ``inner`` on the model's variables
    itself, counts its real steps, and cannot skip a step that a loss scaler would drop.
    """
    import keras

    what = wrapper.__name__
    if isinstance(inner, wrapper):
        raise TypeError(
            f"inner is already a {what}: wrap the plain optimizer once instead, e.g. {example}."
        )
    if not isinstance(inner, keras.optimizers.Optimizer):
        raise TypeError(
            f"inner must be a Keras optimizer instance such as keras.optimizers.Adam(1e-3), "
            f"got {inner!r} of type {type(inner).__name__}; e.g. {example}."
        )
    if inner.built:
        raise ValueError(
            f"inner={inner.name!r} is already built (it has trained before); pass a fresh "
            f"optimizer, e.g. {example}."
        )
    if inner.gradient_accumulation_steps:
        raise ValueError(
            f"inner has gradient_accumulation_steps={inner.gradient_accumulation_steps}: "
            f"{what} would see micro-batches, not real steps, and accumulation would be "
            "counted twice. Leave it unset; for accumulation use "
            "course_lib.SoftBatch(inner, steps=...)."
        )
    if inner.loss_scale_factor is not None or isinstance(
        inner, keras.optimizers.LossScaleOptimizer
    ):
        raise ValueError(
            f"inner scales the loss (loss_scale_factor or LossScaleOptimizer), which {what} "
            "does not support: a skipped non-finite step would still be counted. Use an "
            "unscaled inner optimizer."
        )
