"""Self-checks for notebook 07 (Lookahead and SAM): the perturbation, the sync, the map.

Each check compares the learner's answer with the library on small cases whose answer is known;
``tests/test_checks_nb07.py`` lists the known-wrong answers each one must reject.
"""

from __future__ import annotations

from course_lib.checks import Exercise, Incorrect, expect_close
from course_lib.lookahead import lookahead_interpolation
from course_lib.sam import sam_perturbation

from collections.abc import Callable
from typing import Any

import numpy as np

#: Which mechanism carries each optimizer (the notebook's closing map).
MECHANISMS: dict[str, str] = {
    "Adam": "update_step",
    "RMSprop": "update_step",
    "Heun": "train_step",
    "SAM": "train_step",
    "SoftBatch": "wrapper",
    "Lookahead": "wrapper",
}

_PERTURBATION_CASES: tuple[tuple[list[Any], float], ...] = (
    ([np.array([3.0, 4.0])], 0.5),
    ([np.array([3.0, 0.0]), np.array([[0.0], [4.0]])], 0.1),
    ([np.array([1.0, -2.0]), None, np.array([2.0])], 2.0),
)


def _as_array(value: Any) -> np.ndarray | None:
    return None if value is None else np.asarray(value, dtype=np.float64)


def _check_perturbation(function: Callable[..., Any]) -> str:
    for gradients, rho in _PERTURBATION_CASES:
        got = list(function(gradients, rho))
        expected = sam_perturbation(gradients, rho)
        if len(got) != len(expected):
            raise Incorrect(f"expected one entry per gradient ({len(expected)}), got {len(got)}.")
        for index, (g, e) in enumerate(zip(got, expected, strict=True)):
            if e is None:
                if g is not None:
                    raise Incorrect(f"gradient {index} is None, so its perturbation must be None.")
                continue
            if g is None:
                raise Incorrect(f"perturbation {index} is None but its gradient is not.")
            expect_close(
                f"the perturbation of gradient {index} (rho={rho})", _as_array(g), e.numpy()
            )
    return "ρ·g/‖g‖ with one norm over all the gradients: the step to the worst nearby point."


def _check_lookahead_sync(function: Callable[..., Any]) -> str:
    rng = np.random.default_rng(6)
    for alpha in (0.5, 0.2, 1.0):
        slow, fast = rng.normal(size=3), rng.normal(size=3)
        got = function(slow.copy(), fast.copy(), alpha)
        expect_close(
            f"the new slow weights (alpha={alpha})",
            _as_array(got),
            lookahead_interpolation(slow, fast, alpha),
            atol=1e-12,
        )
    return "slow + α·(fast − slow): the slow weights move a fraction α towards the fast ones."


def _check_mechanisms(answer: Any) -> str:
    if callable(answer):  # the notebook's starter is a function that returns the map
        answer = answer()
    if not isinstance(answer, dict):
        raise Incorrect(
            f"expected a dict from optimizer name to mechanism, got {type(answer).__name__}."
        )
    missing = sorted(set(MECHANISMS) - set(answer))
    if missing:
        raise Incorrect(f"missing optimizers: {missing}.")
    wrong = [name for name, mechanism in MECHANISMS.items() if answer[name] != mechanism]
    if wrong:
        raise Incorrect(
            f"not right for {wrong}: ask how many gradients one step needs, and whether state "
            "must live across steps."
        )
    return "one gradient → update_step; several → train_step; state across steps → wrapper."


sam_perturbation_exercise = Exercise(
    title="SAM's step to the worst nearby point",
    checker=_check_perturbation,
    hint=(
        "Compute one norm over all the gradients together: the square root of the sum of every "
        "entry squared. Then scale each gradient by rho / (norm + 1e-12); keep None as None."
    ),
    solution=sam_perturbation,
)

lookahead_sync = Exercise(
    title="Lookahead's synchronisation",
    checker=_check_lookahead_sync,
    hint="The slow weights move towards the fast ones by a fraction alpha of the gap.",
    solution=lookahead_interpolation,
)


def _mechanism_map() -> dict[str, str]:
    """The library's answer: which Keras mechanism carries each optimizer."""
    return dict(MECHANISMS)


mechanism_map = Exercise(
    title="Which mechanism fits which optimizer",
    checker=_check_mechanisms,
    hint=(
        "Adam and RMSprop need one gradient per step; Heun and SAM need two on the same batch; "
        "SoftBatch and Lookahead keep state across steps around another optimizer."
    ),
    solution=_mechanism_map,
)

__all__ = ["MECHANISMS", "lookahead_sync", "mechanism_map", "sam_perturbation_exercise"]
