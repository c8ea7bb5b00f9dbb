"""Two-dimensional toy losses with exact gradients (notebooks 01, 04, 05 and 06).

The course's central picture is the gradient flow dp/dt = -∇L(p): an optimizer is a numerical
solver for it. On a quadratic the flow has a closed form, so every solver can be measured against
the truth; Rosenbrock's curved valley shows what happens when it has none.
"""

from __future__ import annotations

from dataclasses import dataclass

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
