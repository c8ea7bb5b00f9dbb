"""Self-checks for the notebooks' exercises, after Kaggle's learntools contract.

Each exercise is an :class:`Exercise` with three calls a learner makes in a notebook:
``check(answer)``, ``hint()`` and ``solution()``. ``check`` has exactly three outcomes:

* **correct**: the answer behaves like the library's solution;
* **incorrect**: it does not, and the message says why (what was expected, what came back);
* **not attempted**: the answer is ``None``, still raises ``NotImplementedError``, or is the
  untouched starter code.

``check`` never raises inside the notebook: an exception from the learner's code becomes an
"incorrect" result that names the exception.

Where a lesson has the learner write a mechanism that later cells build on (a skeleton with
blanks, checked right after), ``use(answer)`` checks it and returns what those cells should
run: the learner's version once it passes, the library's until then, saying which. So Run All
works whether or not the blanks are filled. The cell with ``solution()`` after it is stored with
its output collapsed (``jupyter.outputs_hidden`` for JupyterLab, the ``hide-output`` tag for the
website), one click away. The per-notebook modules (``nb02``, ``nb03``...)
define the exercises; ``tests/test_checks_*.py`` assert that each check passes on the library
solution *and* fails on known-wrong answers.
"""

from __future__ import annotations

import inspect
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Status = Literal["correct", "incorrect", "not attempted"]

_ICONS: dict[str, str] = {"correct": "✅", "incorrect": "❌", "not attempted": "✏️"}


class Incorrect(Exception):
    """Raised by a checker function to say why an answer is wrong."""


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one ``check()``: a status and a message for the learner."""

    status: Status
    message: str

    @property
    def correct(self) -> bool:
        return self.status == "correct"

    def __bool__(self) -> bool:
        return self.correct

    def __str__(self) -> str:
        return f"{_ICONS[self.status]} {self.status.capitalize()}: {self.message}"

    def __repr__(self) -> str:
        return str(self)


class Exercise:
    """One exercise: a checker, a hint and the library's solution.

    Parameters
    ----------
    title:
        What the learner is asked to do, in a few words.
    checker:
        ``checker(answer)`` returns a short success message, or raises :class:`Incorrect`
        with the reason. Any other exception from the learner's code is reported as incorrect.
    hint:
        A nudge that does not give the answer away.
    solution:
        The object in ``course_lib`` that solves the exercise; ``solution()`` prints its source.
    fallback:
        What ``use`` hands to later cells while the learner's answer does not pass: by default
        the solution itself. Give another object where the printed solution is not a drop-in
        (for instance a notebook-shaped function whose drop-in is a library class).
    """

    def __init__(
        self,
        title: str,
        checker: Callable[[Any], str],
        hint: str,
        solution: Any,
        *,
        fallback: Any = None,
    ) -> None:
        self.title = title
        self._checker = checker
        self._hint = hint
        self._solution = solution
        self._fallback = solution if fallback is None else fallback

    def check(self, answer: Any = None) -> CheckResult:
        """Check ``answer``; never raises."""
        if answer is None:
            return CheckResult("not attempted", f"{self.title}: fill in your answer, then re-run.")
        try:
            message = self._checker(answer)
        except NotImplementedError:
            return CheckResult(
                "not attempted",
                f"{self.title}: replace `raise NotImplementedError` with your code.",
            )
        except Incorrect as why:
            return CheckResult("incorrect", str(why))
        except Exception as error:  # the learner's code failed: say where, do not re-raise
            frame = traceback.extract_tb(error.__traceback__)[-1]
            return CheckResult(
                "incorrect",
                f"your code raised {type(error).__name__}: {error} (line {frame.lineno} "
                f"in {frame.name}).",
            )
        return CheckResult("correct", message)

    def use(self, answer: Any = None) -> Any:
        """Check ``answer`` and return what later cells should use; print the check and the choice.

        The learner's ``answer`` once it passes; until then the library's version, so that the
        rest of the notebook runs either way. Never raises.
        """
        result = self.check(answer)
        print(result)
        if result.correct:
            print("Later cells use your version.")
            return answer
        library = _qualified_name(self._fallback)
        print(f"Later cells use the library's {library} until yours passes.")
        return self._fallback

    def hint(self) -> None:
        """Print the hint."""
        print(f"Hint: {self._hint}")

    def solution(self) -> None:
        """Print the source of the library's solution."""
        print(f"Solution: {_qualified_name(self._solution)}\n")
        print(inspect.getsource(self._solution))

    def __repr__(self) -> str:
        return f"Exercise({self.title!r}): call .check(answer), .hint() or .solution()"


def _qualified_name(value: Any) -> str:
    """``module.QualifiedName`` of a class or function, for messages."""
    name = getattr(value, "__qualname__", None) or type(value).__qualname__
    module = getattr(value, "__module__", None) or "course_lib"
    return f"{module}.{name}"


def expect_close(name: str, got: Any, expected: Any, atol: float = 1e-6) -> float:
    """Raise :class:`Incorrect` unless ``got`` equals ``expected`` within ``atol``.

    Returns the largest absolute difference, so a checker can report it.
    """
    import numpy as np

    got_array = np.asarray(got, dtype=np.float64)
    expected_array = np.asarray(expected, dtype=np.float64)
    if got_array.shape != expected_array.shape:
        raise Incorrect(f"{name} has shape {got_array.shape}, expected {expected_array.shape}.")
    if not np.all(np.isfinite(got_array)):
        raise Incorrect(f"{name} contains NaN or infinity.")
    difference = float(np.max(np.abs(got_array - expected_array), initial=0.0))
    if difference > atol:
        raise Incorrect(
            f"{name} differs from the expected value by up to {difference:.3g} "
            f"(tolerance {atol:g})."
        )
    return difference


__all__ = ["CheckResult", "Exercise", "Incorrect", "expect_close"]
