"""Claims that cannot drift: a sentence of the course checked against the numbers it rests on.

A notebook's prose states numbers and comparisons ("Heun's error shrinks four times faster",
"7 of 10 runs diverge"). Those sentences are only true for the outputs beside them, and a re-run
with another library version, another seed or a changed study can quietly make them false.
So every such sentence rests on a :func:`claim` in a code cell next to it (usually the one
before; where the prose announces what the next cell checks, the one after)::

    claim("Heun's error falls about 4× when h halves", 3.5 < ratio < 4.5, ratio=ratio)

prints ``✔ Heun's error falls about 4× when h halves  [ratio = 3.98]`` when the comparison holds,
and raises :class:`ClaimError` with the numbers when it does not. The printed line is part of
the stored output, so strict nbval fails the notebook on the day a re-run stops supporting its
text, and the error names the sentence to rewrite.

Tolerances belong in the comparison, written where the reader sees them: round-off for a
bit-level claim, the spread over seeds for a statistical one. Never widen one to make it pass.

The evidence is part of the stored output, so it must print the same on every run. Show the
measured value, not the bound it is compared with. A round-off-level difference (say 3e-7 in
float32) has trailing digits that depend on the CPU's SIMD kernels: pass it through
:func:`roundoff`, which keeps one significant digit (``max_dw=roundoff(dw)`` prints
``max_dw = 3e-07``), and write the bound in the comparison (``dw < 1e-6``). Exact zeros and
numbers far from round-off print as they are.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

__all__ = ["ClaimError", "claim", "format_number", "roundoff"]

#: What the printed line starts with: the claim held on this run.
HOLDS = "✔"
#: What the error message starts with.
FAILS = "✘"


class ClaimError(AssertionError):
    """A sentence of the course is no longer supported by the numbers this run produced."""


def format_number(value: Any) -> str:
    """A short, stable rendering of one number the claim rests on.

    Integers and booleans print as they are; floats with four significant digits (enough to
    read, few enough that float32 noise below the fourth digit doesn't make stored outputs
    flicker); strings are taken as already formatted; NumPy scalars and 0-d arrays as numbers.
    """
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool | str):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        value = float(value)
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}"
    raise TypeError(
        f"claim numbers must be numbers or preformatted strings, got {type(value).__name__} "
        f"({value!r}); pass float(x), int(x) or f'{{x:.2f}}' instead."
    )


def roundoff(value: Any) -> str:
    """A round-off-level difference as evidence: ``"0"`` when exact, else one significant digit.

    Enough to see its size (``6e-08`` is float32 round-off, ``3e-03`` is not), few enough digits
    that a re-run prints the same: the trailing digits of float32 round-off depend on the CPU.
    """
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"roundoff needs a number, got {type(value).__name__} ({value!r}).")
    value = float(value)
    if value == 0.0:
        return "0"
    return f"{value:.0e}" if math.isfinite(value) else str(value)


def _as_bool(holds: Any, sentence: str) -> bool:
    """``holds`` as a Python bool; refuse values that only look true (a number, an array)."""
    if isinstance(holds, np.ndarray) and holds.ndim == 0 and holds.dtype == bool:
        holds = holds.item()
    if isinstance(holds, bool | np.bool_):
        return bool(holds)
    raise TypeError(
        f"claim {sentence!r}: holds must be the result of a comparison (True or False), got "
        f"{type(holds).__name__} {holds!r}. Write the comparison itself, e.g. "
        "abs(x - 4) < 0.5; for arrays reduce first with np.all(...) or np.any(...)."
    )


def claim(sentence: str, holds: Any, **evidence: Any) -> None:
    """Print ``✔ sentence  [name = value, ...]`` if ``holds``; raise :class:`ClaimError` if not.

    ``sentence`` is the statement the prose makes (say it as the prose does); ``holds`` is the
    comparison that makes it true, written out in the call; ``evidence`` are the numbers it
    rests on, printed either way so a reader sees why it holds or why it stopped holding.
    """
    if not isinstance(sentence, str) or not sentence.strip():
        raise TypeError("claim needs the sentence it checks as a non-empty string first.")
    rendered = ", ".join(f"{name} = {format_number(value)}" for name, value in evidence.items())
    suffix = f"  [{rendered}]" if rendered else ""
    if _as_bool(holds, sentence):
        print(f"{HOLDS} {sentence}{suffix}")
        return
    raise ClaimError(
        f"{FAILS} no longer holds: {sentence}{suffix}. This run's numbers do not support the "
        "sentence next to this cell. If you changed a cell above (a seed, a step size), undo it "
        "or read the numbers to see what your change did; if you changed nothing, report it. "
        "Course authors: re-check the prose (or the change that moved the numbers), never the "
        "tolerance alone."
    )
