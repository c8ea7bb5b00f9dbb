"""Toy losses with exact gradients, and their gradient flow solved in NumPy (notebooks 01, 04–07).

The course's central picture is the gradient flow dp/dt = -∇L(p): an optimizer is a numerical
solver for it. On a quadratic the flow has a closed form, so every solver can be measured against
the truth; Rosenbrock's curved valley shows what happens when it has none, and
:class:`SharpFlatLandscape` has a sharp and a flat minimum (notebook 07). :func:`gradient_descent`
(Euler) and :func:`runge_kutta_step` (any explicit tableau) are the NumPy references the Keras
training steps are compared with.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


def _as_points(p: np.ndarray | list[float], name: str = "p") -> np.ndarray:
    """Return ``p`` as a float64 array whose last axis has length 2."""
    array = np.asarray(p, dtype=np.float64)
    if array.ndim == 0 or array.shape[-1] != 2:
        raise ValueError(
            f"{name} must have a last axis of length 2 (a point in the plane), got shape "
            f"{array.shape}."
        )
    return array


@dataclass(frozen=True)
class Quadratic:
    """L(p) = ½ pᵀAp for a symmetric positive-definite 2×2 matrix A.

    Its gradient flow is linear, dp/dt = -Ap, with the exact solution p(t) = exp(-tA) p0.
    """

    A: np.ndarray

    def __post_init__(self) -> None:
        A = np.asarray(self.A, dtype=np.float64)
        if A.shape != (2, 2):
            raise ValueError(f"A must be a 2×2 matrix, got shape {A.shape}.")
        if not np.allclose(A, A.T):
            raise ValueError("A must be symmetric; use (A + A.T) / 2.")
        if np.linalg.eigvalsh(A).min() <= 0:
            raise ValueError("A must be positive definite (all eigenvalues > 0).")
        object.__setattr__(self, "A", A)

    @classmethod
    def diagonal(cls, a1: float = 2.0, a2: float = 4.0) -> Quadratic:
        """The course's standard bowl L = (a1·x² + a2·y²)/2, by default x² + 2y²."""
        return cls(np.diag([a1, a2]))

    def value(self, p: np.ndarray | list[float]) -> np.ndarray:
        p = _as_points(p)
        return 0.5 * np.einsum("...i,ij,...j->...", p, self.A, p)

    def gradient(self, p: np.ndarray | list[float]) -> np.ndarray:
        p = _as_points(p)
        return p @ self.A.T

    def exact_flow(self, p0: np.ndarray | list[float], times: np.ndarray) -> np.ndarray:
        """Points exp(-tA) p0 of the exact gradient flow, one row per time in ``times``."""
        p0 = _as_points(p0, "p0")
        eigenvalues, vectors = np.linalg.eigh(self.A)
        times = np.asarray(times, dtype=np.float64)
        decay = np.exp(-np.outer(times, eigenvalues))  # (T, 2)
        return (decay * (p0 @ vectors)) @ vectors.T

    @property
    def minimum(self) -> np.ndarray:
        return np.zeros(2)


@dataclass(frozen=True)
class Rosenbrock:
    """L(x, y) = (a - x)² + b (y - x²)²: a curved, narrow valley with its minimum at (a, a²)."""

    a: float = 1.0
    b: float = 100.0

    def value(self, p: np.ndarray | list[float]) -> np.ndarray:
        p = _as_points(p)
        x, y = p[..., 0], p[..., 1]
        return (self.a - x) ** 2 + self.b * (y - x**2) ** 2

    def gradient(self, p: np.ndarray | list[float]) -> np.ndarray:
        p = _as_points(p)
        x, y = p[..., 0], p[..., 1]
        dx = -2.0 * (self.a - x) - 4.0 * self.b * x * (y - x**2)
        dy = 2.0 * self.b * (y - x**2)
        return np.stack([dx, dy], axis=-1)

    @property
    def minimum(self) -> np.ndarray:
        return np.array([self.a, self.a**2])


def gradient_descent(
    landscape: Quadratic | Rosenbrock,
    p0: np.ndarray | list[float],
    learning_rate: float,
    steps: int,
) -> np.ndarray:
    """The Euler method for the gradient flow: p ← p - h ∇L(p). Returns all ``steps + 1`` points."""
    if not np.isfinite(learning_rate) or learning_rate <= 0:
        raise ValueError(f"learning_rate={learning_rate!r} must be a positive finite number.")
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps={steps!r} must be a non-negative integer.")
    points = [_as_points(p0, "p0")]
    for _ in range(steps):
        points.append(points[-1] - learning_rate * landscape.gradient(points[-1]))
    return np.array(points)


def runge_kutta_step(
    gradient: Callable[[np.ndarray], np.ndarray],
    p: np.ndarray,
    tableau: Any,
    learning_rate: float,
) -> np.ndarray:
    """One explicit Runge–Kutta step of size ``learning_rate`` for the flow dp/dt = -∇L(p).

    ``tableau`` is anything with Butcher coefficients ``a`` (s×s, strictly lower triangular)
    and ``b`` (length s), such as a :class:`course_lib.tableaux.ButcherTableau`. Stage i takes the
    gradient at p - h Σ_j a_ij g_j; the step is p - h Σ_i b_i g_i.
    """
    a = np.asarray(tableau.a, dtype=np.float64)
    b = np.asarray(tableau.b, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    gradients: list[np.ndarray] = []
    for i in range(len(b)):
        trial = p - learning_rate * sum(
            (a[i, j] * gradients[j] for j in range(i)), np.zeros_like(p)
        )
        gradients.append(np.asarray(gradient(trial), dtype=np.float64))
    return p - learning_rate * sum(b_i * g_i for b_i, g_i in zip(b, gradients, strict=True))


def runge_kutta_path(
    gradient: Callable[[np.ndarray], np.ndarray],
    p0: np.ndarray | Sequence[float],
    tableau: Any,
    learning_rate: float,
    steps: int,
) -> np.ndarray:
    """All ``steps + 1`` points of :func:`runge_kutta_step` from ``p0`` (one row per point)."""
    if not np.isfinite(learning_rate) or learning_rate <= 0:
        raise ValueError(
            f"learning_rate={learning_rate!r} must be a positive finite number (the step size h)."
        )
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"steps={steps!r} must be a non-negative integer.")
    points = [np.asarray(p0, dtype=np.float64)]
    for _ in range(steps):
        points.append(runge_kutta_step(gradient, points[-1], tableau, learning_rate))
    return np.array(points)


@dataclass(frozen=True)
class SharpFlatLandscape:
    """L(x, y) = 1 − d_s·exp(−(x − x_s)²/2σ_s²) − d_f·exp(−(x − x_f)²/2σ_f²) + c·y²/2.

    Along x: a sharp well at ``x_s`` (width σ_s) and a flat one at ``x_f`` (width σ_f); along y
    a plain valley. The defaults make the sharp well the slightly deeper one.
    """

    sharp_at: float = -1.0
    sharp_width: float = 0.2
    sharp_depth: float = 1.0
    flat_at: float = 1.0
    flat_width: float = 0.8
    flat_depth: float = 0.9
    valley: float = 1.0

    def __post_init__(self) -> None:
        for name in ("sharp_width", "sharp_depth", "flat_width", "flat_depth", "valley"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be > 0.")

    def _wells(self, x: Any, exp: Callable[[Any], Any]) -> tuple[Any, Any]:
        sharp = self.sharp_depth * exp(-((x - self.sharp_at) ** 2) / (2 * self.sharp_width**2))
        flat = self.flat_depth * exp(-((x - self.flat_at) ** 2) / (2 * self.flat_width**2))
        return sharp, flat

    def value(self, p: Any) -> np.ndarray:
        p = np.asarray(p, dtype=np.float64)
        x, y = p[..., 0], p[..., 1]
        sharp, flat = self._wells(x, np.exp)
        return 1.0 - sharp - flat + 0.5 * self.valley * y**2

    def gradient(self, p: Any) -> np.ndarray:
        p = np.asarray(p, dtype=np.float64)
        x, y = p[..., 0], p[..., 1]
        sharp, flat = self._wells(x, np.exp)
        dx = sharp * (x - self.sharp_at) / self.sharp_width**2
        dx = dx + flat * (x - self.flat_at) / self.flat_width**2
        return np.stack([dx, self.valley * y], axis=-1)

    def keras_loss(self, y_true: Any, y_pred: Any) -> Any:
        """The same loss for a model whose output is p (``y_true`` is ignored)."""
        from keras import ops

        x, y = y_pred[..., 0], y_pred[..., 1]
        sharp, flat = self._wells(x, ops.exp)
        return 1.0 - sharp - flat + 0.5 * self.valley * y**2

    @property
    def minimum(self) -> np.ndarray:
        """The sharp minimum (approximately: the flat well's tail shifts it by ~1e-3)."""
        return np.array([self.sharp_at, 0.0])

    @property
    def flat_minimum(self) -> np.ndarray:
        return np.array([self.flat_at, 0.0])
