"""Self-checks for notebook 07 (Lookahead and SAM): SAM's step, adaptive SAM, the sync, the map.

Each check compares the learner's answer with the library on small cases whose answer is known;
``tests/test_checks_nb07.py`` lists the known-wrong answers each one must reject.

The adaptive-SAM exercise is a transfer: the notebook builds SAM's perturbation ρ·g/‖g‖, and the
learner derives ASAM's (Kwon, Kim, Park and Choi, "ASAM: Adaptive Sharpness-Aware Minimization
for Scale-Invariant Learning of Deep Neural Networks", ICML 2021) from its definition.
"""

from __future__ import annotations

from course_lib.checks import Exercise, Incorrect, expect_close
from course_lib.lookahead import lookahead_interpolation
from course_lib.sam import sam_perturbation

from collections.abc import Callable, Sequence
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


def adaptive_perturbation(
    weights: Sequence[Any], gradients: Sequence[Any], rho: float, eta: float = 0.01
) -> list[np.ndarray]:
    """ASAM's step to the worst nearby point: ε = ρ·T²∘g / ‖T∘g‖ with T = |p| + η.

    SAM's neighbourhood is a ball ‖ε‖ ≤ ρ, the same for every weight. ASAM measures it relative
    to each weight's size, ‖ε/T‖ ≤ ρ, so that rescaling a layer (which leaves the network's
    function unchanged) no longer changes the sharpness. Maximising the first-order change g·ε
    over that ellipsoid gives ε = ρ·T²∘g/‖T∘g‖, one norm over all the variables. (The authors'
    code scales only weight matrices and leaves biases at T = 1; here every variable is scaled.)
    """
    scales = [np.abs(np.asarray(p, dtype=np.float64)) + eta for p in weights]
    grads = [np.asarray(g, dtype=np.float64) for g in gradients]
    norm = np.sqrt(sum(float(np.sum((t * g) ** 2)) for t, g in zip(scales, grads, strict=True)))
    return [rho * t**2 * g / (norm + 1e-12) for t, g in zip(scales, grads, strict=True)]


_ADAPTIVE_CASES: tuple[tuple[list[np.ndarray], list[np.ndarray], float, float], ...] = (
    ([np.array([2.0, -0.5])], [np.array([1.0, 3.0])], 0.5, 0.01),
    (
        [np.array([[1.0, -3.0], [0.2, 0.0]]), np.array([4.0])],
        [np.array([[0.5, 0.5], [-1.0, 2.0]]), np.array([-0.25])],
        0.1,
        0.01,
    ),
    ([np.array([0.0, 1.0]), np.array([-2.0])], [np.array([2.0, -1.0]), np.array([1.0])], 1.0, 0.1),
)


def _check_adaptive(function: Callable[..., Any]) -> str:
    for weights, gradients, rho, eta in _ADAPTIVE_CASES:
        got = list(function([w.copy() for w in weights], [g.copy() for g in gradients], rho, eta))
        expected = adaptive_perturbation(weights, gradients, rho, eta)
        if len(got) != len(expected):
            raise Incorrect(f"expected one entry per variable ({len(expected)}), got {len(got)}.")
        got = [_as_array(g) for g in got]
        for index, (g, e) in enumerate(zip(got, expected, strict=True)):
            if g is None or g.shape != e.shape:
                shape = None if g is None else g.shape
                raise Incorrect(f"perturbation {index} has shape {shape}, expected {e.shape}.")
        scales = [np.abs(w) + eta for w in weights]
        reach = np.sqrt(sum(float(np.sum((g / s) ** 2)) for g, s in zip(got, scales, strict=True)))
        if not abs(reach - rho) <= 1e-6 * rho:
            raise Incorrect(
                f"your ε has ‖ε/T‖ = {reach:.4g} with T = |p| + eta (rho={rho}, eta={eta}): "
                "the worst point to first order lies on the edge of the neighbourhood, where "
                "‖ε/T‖ = ρ, over all the variables together."
            )
        for index, (g, e) in enumerate(zip(got, expected, strict=True)):
            expect_close(
                f"the perturbation of variable {index} (rho={rho}, eta={eta})", g, e, atol=1e-9
            )
    return (
        "ρ·T²∘g/‖T∘g‖: the largest first-order rise of the loss over the ellipsoid ‖ε/T‖ ≤ ρ, "
        "whose axes grow with each weight's size."
    )


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
        "ρ is the length of the whole step, measured over all the model's weights at once, not "
        "per layer. Which single number must every gradient be divided by for that? And what "
        "should a variable without a gradient get?"
    ),
    solution=sam_perturbation,
)

adaptive_sam = Exercise(
    title="Adaptive SAM's step to the worst nearby point",
    checker=_check_adaptive,
    hint=(
        "Substitute ε = T∘δ: the constraint ‖ε/T‖ ≤ ρ becomes ‖δ‖ ≤ ρ, a plain ball, and the "
        "first-order rise g·ε becomes (T∘g)·δ. You already know which δ maximises a dot product "
        "over a ball. Then map δ back to ε. The norm runs over all the variables together."
    ),
    solution=adaptive_perturbation,
)

lookahead_sync = Exercise(
    title="Lookahead's synchronisation",
    checker=_check_lookahead_sync,
    hint=(
        "Check your formula at the two ends of α's range: α = 1 must give the inner optimizer's "
        "own weights (the fast ones), and α close to 0 must barely move the slow weights."
    ),
    solution=lookahead_interpolation,
)


def _mechanism_map() -> dict[str, str]:
    """The library's answer: which Keras mechanism carries each optimizer."""
    return dict(MECHANISMS)


mechanism_map = Exercise(
    title="Which mechanism fits which optimizer",
    checker=_check_mechanisms,
    hint=(
        "Ask two questions of each optimizer: how many gradients does one step need (one, or "
        "several on the same batch)? And does it keep state across steps *around another "
        "optimizer*, or only per-variable state of its own? Section 7's table answers by kind."
    ),
    solution=_mechanism_map,
)

__all__ = [
    "MECHANISMS",
    "adaptive_perturbation",
    "adaptive_sam",
    "lookahead_sync",
    "mechanism_map",
    "sam_perturbation_exercise",
]
