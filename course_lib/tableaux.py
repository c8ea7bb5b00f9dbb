"""Butcher tableaux as data: the coefficients of explicit Runge–Kutta methods (notebooks 04, 05).

An explicit Runge–Kutta method for the gradient flow dp/dt = -∇L(p) is fully described by its
Butcher tableau (c, A, b): stage i evaluates the gradient g_i at p + h·Σ_j a_ij·k_j with
k_j = -g_j, and the step is p ← p + h·Σ_i b_i·k_i. Notebook 04 uses Heun's tableau, notebook 05
all of them. Keeping the coefficients as validated data (rather than code per method) lets one
training step (:mod:`course_lib.runge_kutta`) run every method, and lets tests compare the
coefficients with SciPy's ``RK23`` / ``RK45``.

An *embedded* pair adds a second weight vector b̂ of a lower order: the difference between the
two results estimates the local error, which the adaptive step-size controller
(:mod:`course_lib.adaptive`) uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction as F
from typing import Any

import numpy as np

__all__ = [
    "TABLEAUX",
    "ButcherTableau",
    "InvalidTableauError",
    "get_tableau",
    "real_stability_limit",
    "stability_function",
]

#: Tolerance for the consistency checks (Σb = 1, row sums of A = c, order conditions).
_TOLERANCE = 1e-10

#: The order conditions checked for a claimed order (up to 4; higher orders are trusted).
#: Each entry: (order, description, function of (b, c, A) returning the left side, right side).
_ORDER_CONDITIONS = (
    (1, "Σ b_i = 1", lambda b, c, a: b.sum(), 1.0),
    (2, "Σ b_i c_i = 1/2", lambda b, c, a: b @ c, 1 / 2),
    (3, "Σ b_i c_i² = 1/3", lambda b, c, a: b @ c**2, 1 / 3),
    (3, "Σ b_i a_ij c_j = 1/6", lambda b, c, a: b @ a @ c, 1 / 6),
    (4, "Σ b_i c_i³ = 1/4", lambda b, c, a: b @ c**3, 1 / 4),
    (4, "Σ b_i c_i a_ij c_j = 1/8", lambda b, c, a: (b * c) @ a @ c, 1 / 8),
    (4, "Σ b_i a_ij c_j² = 1/12", lambda b, c, a: b @ a @ c**2, 1 / 12),
    (4, "Σ b_i a_ij a_jk c_k = 1/24", lambda b, c, a: b @ a @ a @ c, 1 / 24),
)


class InvalidTableauError(ValueError):
    """A Butcher tableau that is inconsistent, not explicit, or badly shaped."""


def _as_tuple(values: Any, name: str) -> tuple[float, ...]:
    """Return ``values`` as a tuple of finite Python floats, or raise naming ``name``."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InvalidTableauError(
            f"{name} must be a sequence of numbers, got {values!r} ({error})."
        ) from None
    if array.ndim != 1:
        raise InvalidTableauError(
            f"{name} must be one-dimensional (one number per stage), got shape {array.shape}."
        )
    if not np.all(np.isfinite(array)):
        raise InvalidTableauError(f"{name} must contain finite numbers only, got {values!r}.")
    return tuple(float(v) for v in array)


@dataclass(frozen=True)
class ButcherTableau:
    """The coefficients (c, A, b) of an explicit Runge–Kutta method, checked on creation.

    Parameters
    ----------
    name:
        A short label used in logs, configs and figures.
    c:
        Stage times, one per stage (c_1 = 0 for an explicit method).
    a:
        The full s×s matrix A as rows; it must be strictly lower triangular (explicit method:
        stage i only uses the stages before it).
    b:
        Weights of the stage slopes in the step; they sum to 1.
    order:
        The order of the method given by ``b`` (its global error is O(h^order)).
    b_hat:
        Optional weights of an embedded method of another order, for error estimation.
    embedded_order:
        The order of ``b_hat``; given exactly when ``b_hat`` is.

    Raises
    ------
    InvalidTableauError
        With the problem and the fix, when a check fails: shapes, finiteness, explicitness,
        Σb = 1, row sums of A equal c, and the order conditions up to order 4 for the claimed
        ``order`` (and ``embedded_order``).
    """

    name: str
    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    order: int
    b_hat: tuple[float, ...] | None = None
    embedded_order: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidTableauError(f"name must be a non-empty string, got {self.name!r}.")
        c = _as_tuple(self.c, "c")
        b = _as_tuple(self.b, "b")
        stages = len(c)
        if stages == 0:
            raise InvalidTableauError("c must have at least one entry (one stage).")
        if len(b) != stages:
            raise InvalidTableauError(
                f"b has {len(b)} entries but c has {stages}: give one weight per stage."
            )
        try:
            rows = [tuple(row) for row in self.a]
        except TypeError:
            raise InvalidTableauError(
                f"a must be a sequence of rows (an s×s matrix), got {self.a!r}."
            ) from None
        if len(rows) != stages or any(len(row) != stages for row in rows):
            raise InvalidTableauError(
                f"a must be a full {stages}×{stages} matrix (one row and column per stage, "
                f"zeros on and above the diagonal), got rows of lengths "
                f"{[len(row) for row in rows]}."
            )
        a = tuple(_as_tuple(row, f"a[{i}]") for i, row in enumerate(rows))
        matrix = np.array(a)
        upper = np.triu(matrix)
        if np.any(upper != 0.0):
            i, j = (int(k) for k in np.argwhere(upper != 0.0)[0])
            raise InvalidTableauError(
                f"tableau {self.name!r} is not explicit: a[{i}][{j}] = {float(matrix[i, j]):g} "
                "is on or above the diagonal. Explicit Runge–Kutta methods need A strictly lower "
                "triangular (stage i may use only stages j < i); implicit methods are not "
                "supported."
            )
        row_sums = matrix.sum(axis=1)
        if not np.allclose(row_sums, c, rtol=0.0, atol=_TOLERANCE):
            raise InvalidTableauError(
                f"tableau {self.name!r} is inconsistent: the row sums of A {row_sums.tolist()} "
                f"must equal c {list(c)}; set c_i = Σ_j a_ij."
            )
        for label, value in (("order", self.order), ("embedded_order", self.embedded_order)):
            if value is None and label == "embedded_order":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidTableauError(f"{label} must be an integer ≥ 1, got {value!r}.")
        if (self.b_hat is None) != (self.embedded_order is None):
            raise InvalidTableauError(
                "b_hat and embedded_order go together: give both (an embedded pair for error "
                "estimation) or neither."
            )
        b_hat = None
        if self.b_hat is not None:
            b_hat = _as_tuple(self.b_hat, "b_hat")
            if len(b_hat) != stages:
                raise InvalidTableauError(
                    f"b_hat has {len(b_hat)} entries but c has {stages}: one weight per stage."
                )
            if b_hat == b:
                raise InvalidTableauError(
                    "b_hat equals b: the error estimate b − b_hat would always be zero."
                )
        c_array = np.array(c)
        self._check_order(np.array(b), c_array, matrix, self.order, "b", "order")
        if b_hat is not None:
            self._check_order(
                np.array(b_hat), c_array, matrix, self.embedded_order, "b_hat", "embedded_order"
            )
        object.__setattr__(self, "c", c)
        object.__setattr__(self, "a", a)
        object.__setattr__(self, "b", b)
        object.__setattr__(self, "b_hat", b_hat)

    def _check_order(
        self, weights: np.ndarray, c: np.ndarray, a: np.ndarray, order: int, name: str, label: str
    ) -> None:
        """Raise unless ``weights`` satisfy the order conditions up to min(order, 4)."""
        for condition_order, text, left, right in _ORDER_CONDITIONS:
            if condition_order > order:
                break
            value = float(left(weights, c, a))
            if not math.isclose(value, right, rel_tol=0.0, abs_tol=_TOLERANCE):
                raise InvalidTableauError(
                    f"tableau {self.name!r}: {name} fails the order-{condition_order} condition "
                    f"{text} (got {value!r}); fix the coefficients or lower {label} "
                    f"(now {order})."
                )

    @property
    def stages(self) -> int:
        """The number of stages s (gradient evaluations per step, at most)."""
        return len(self.c)

    @property
    def is_adaptive(self) -> bool:
        """Whether the tableau has an embedded pair (b_hat), so it can control its step size."""
        return self.b_hat is not None

    @property
    def error_weights(self) -> tuple[float, ...]:
        """The weights b − b̂, whose combination of stage slopes estimates the local error."""
        if self.b_hat is None:
            raise ValueError(f"tableau {self.name!r} has no embedded pair (b_hat is None).")
        return tuple(x - y for x, y in zip(self.b, self.b_hat, strict=True))

    def stages_needed(self, adaptive: bool = False) -> int:
        """How many stages a step must evaluate: up to the last one with a non-zero weight.

        Bogacki–Shampine's fourth stage has b_4 = 0 (it is the "first same as last" slope that
        a solver reuses at the next step); without error control it need not be computed.
        """
        weights = [self.b] + ([self.b_hat] if adaptive and self.b_hat is not None else [])
        last = 0
        for vector in weights:
            for i, value in enumerate(vector):
                if value != 0.0:
                    last = max(last, i + 1)
        return last

    def to_config(self) -> dict[str, Any]:
        """A JSON-friendly dict; :meth:`from_config` rebuilds the same tableau."""
        return {
            "name": self.name,
            "c": list(self.c),
            "a": [list(row) for row in self.a],
            "b": list(self.b),
            "order": self.order,
            "b_hat": None if self.b_hat is None else list(self.b_hat),
            "embedded_order": self.embedded_order,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ButcherTableau:
        """Rebuild a tableau from :meth:`to_config`'s dict."""
        return cls(
            name=config["name"],
            c=tuple(config["c"]),
            a=tuple(tuple(row) for row in config["a"]),
            b=tuple(config["b"]),
            order=config["order"],
            b_hat=None if config.get("b_hat") is None else tuple(config["b_hat"]),
            embedded_order=config.get("embedded_order"),
        )


def _tableau(
    name: str,
    c: list,
    lower_rows: list[list],
    b: list,
    order: int,
    b_hat: list | None = None,
    embedded_order: int | None = None,
) -> ButcherTableau:
    """Build a tableau from exact fractions, writing only the rows below the diagonal."""
    stages = len(c)
    rows = []
    for i in range(stages):
        known = lower_rows[i - 1] if i > 0 else []
        rows.append(tuple(float(v) for v in known) + (0.0,) * (stages - len(known)))
    return ButcherTableau(
        name=name,
        c=tuple(float(v) for v in c),
        a=tuple(rows),
        b=tuple(float(v) for v in b),
        order=order,
        b_hat=None if b_hat is None else tuple(float(v) for v in b_hat),
        embedded_order=embedded_order,
    )


#: The course's named tableaux. Bogacki–Shampine and Dormand–Prince include their last ("first
#: same as last") stage, evaluated at the new point, so that b_hat can use it; their
#: coefficients equal SciPy's ``RK23`` and ``RK45`` (tests/test_tableaux.py).
TABLEAUX: dict[str, ButcherTableau] = {
    "euler": _tableau("euler", [0], [], [1], order=1),
    "midpoint": _tableau("midpoint", [0, F(1, 2)], [[F(1, 2)]], [0, 1], order=2),
    "heun": _tableau("heun", [0, 1], [[1]], [F(1, 2), F(1, 2)], order=2),
    "ralston": _tableau("ralston", [0, F(2, 3)], [[F(2, 3)]], [F(1, 4), F(3, 4)], order=2),
    "kutta3": _tableau(
        "kutta3", [0, F(1, 2), 1], [[F(1, 2)], [-1, 2]], [F(1, 6), F(2, 3), F(1, 6)], order=3
    ),
    "rk4": _tableau(
        "rk4",
        [0, F(1, 2), F(1, 2), 1],
        [[F(1, 2)], [0, F(1, 2)], [0, 0, 1]],
        [F(1, 6), F(1, 3), F(1, 3), F(1, 6)],
        order=4,
    ),
    "bogacki_shampine": _tableau(
        "bogacki_shampine",
        [0, F(1, 2), F(3, 4), 1],
        [[F(1, 2)], [0, F(3, 4)], [F(2, 9), F(1, 3), F(4, 9)]],
        [F(2, 9), F(1, 3), F(4, 9), 0],
        order=3,
        b_hat=[F(7, 24), F(1, 4), F(1, 3), F(1, 8)],
        embedded_order=2,
    ),
    "dormand_prince": _tableau(
        "dormand_prince",
        [0, F(1, 5), F(3, 10), F(4, 5), F(8, 9), 1, 1],
        [
            [F(1, 5)],
            [F(3, 40), F(9, 40)],
            [F(44, 45), F(-56, 15), F(32, 9)],
            [F(19372, 6561), F(-25360, 2187), F(64448, 6561), F(-212, 729)],
            [F(9017, 3168), F(-355, 33), F(46732, 5247), F(49, 176), F(-5103, 18656)],
            [F(35, 384), 0, F(500, 1113), F(125, 192), F(-2187, 6784), F(11, 84)],
        ],
        [F(35, 384), 0, F(500, 1113), F(125, 192), F(-2187, 6784), F(11, 84), 0],
        order=5,
        b_hat=[
            F(5179, 57600),
            0,
            F(7571, 16695),
            F(393, 640),
            F(-92097, 339200),
            F(187, 2100),
            F(1, 40),
        ],
        embedded_order=4,
    ),
}


def get_tableau(name_or_tableau: str | ButcherTableau | dict[str, Any]) -> ButcherTableau:
    """Return the named tableau (case-insensitive), or the tableau itself if given one.

    A dict from :meth:`ButcherTableau.to_config` is accepted too (that is how saved models
    store custom tableaux). An unknown name raises ``ValueError`` listing the valid names.
    """
    if isinstance(name_or_tableau, ButcherTableau):
        return name_or_tableau
    if isinstance(name_or_tableau, dict):
        return ButcherTableau.from_config(name_or_tableau)
    if isinstance(name_or_tableau, str):
        key = name_or_tableau.strip().lower().replace("-", "_").replace(" ", "_")
        if key in TABLEAUX:
            return TABLEAUX[key]
        raise ValueError(
            f"tableau={name_or_tableau!r} is not a known Butcher tableau. Valid names: "
            f"{', '.join(sorted(TABLEAUX))}; or pass a ButcherTableau."
        )
    raise TypeError(
        f"tableau must be a name (str) or a ButcherTableau, got {type(name_or_tableau).__name__} "
        f"{name_or_tableau!r}."
    )


def stability_function(
    tableau: str | ButcherTableau, z: np.ndarray | complex | float
) -> np.ndarray:
    """R(z) = 1 + z·bᵀ(I − zA)⁻¹·1: the factor one step multiplies p by on dp/dt = λp, z = hλ.

    For the gradient flow on L = ½ λ p², λ is minus a Hessian eigenvalue, so gradient descent
    with learning rate h on an eigen-direction with curvature μ multiplies it by R(−hμ). For an
    explicit method R is a polynomial of degree ≤ s; it is evaluated here as
    1 + Σ_k z^k·bᵀA^(k−1)·1, which is exact because A is nilpotent.
    """
    tableau = get_tableau(tableau)
    z = np.asarray(z, dtype=np.complex128 if np.iscomplexobj(z) else np.float64)
    return np.polynomial.polynomial.polyval(z, _stability_coefficients(tableau))


def _stability_coefficients(tableau: ButcherTableau) -> np.ndarray:
    """Coefficients of R(z) in increasing powers: [1, bᵀ1, bᵀA1, bᵀA²1, ...]."""
    a = np.array(tableau.a)
    b = np.array(tableau.b)
    coefficients = [1.0]
    vector = np.ones(tableau.stages)
    for _ in range(tableau.stages):
        coefficients.append(float(b @ vector))
        vector = a @ vector
    return np.array(coefficients)


def real_stability_limit(tableau: str | ButcherTableau) -> float:
    """The largest x such that |R(−y)| ≤ 1 for every y in [0, x].

    That is the largest stable learning rate times the largest Hessian eigenvalue: gradient
    descent (Euler) gives 2, Heun 2, RK4 ≈ 2.785, Dormand–Prince ≈ 3.31. Computed from the real
    roots of R(−x)² − 1, so it is exact up to root-finding round-off.
    """
    tableau = get_tableau(tableau)
    coefficients = _stability_coefficients(tableau)
    # R(-x): flip the sign of odd powers.
    flipped = coefficients * (-1.0) ** np.arange(len(coefficients))
    poly = np.polynomial.Polynomial(flipped)
    candidates = sorted(
        float(root.real)
        for root in ((poly - 1) * (poly + 1)).roots()
        if abs(root.imag) < 1e-9 and root.real > 1e-12
    )
    for index, root in enumerate(candidates):
        following = candidates[index + 1] if index + 1 < len(candidates) else root + 1.0
        probe = root + 1e-3 * (following - root) if following > root else root + 1e-6
        if abs(poly(probe)) > 1.0:
            return root
    raise ValueError(f"tableau {tableau.name!r}: |R(-x)| never exceeds 1 on the real axis.")
