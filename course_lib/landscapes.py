"""Toy losses with exact gradients, and their gradient flow solved in NumPy (notebooks 01, 04–07).

The course's central picture is the gradient flow dp/dt = -∇L(p): an optimizer is a numerical
solver for it. On a quadratic the flow has a closed form, so every solver can be measured against
the truth; Rosenbrock's curved valley shows what happens when it has none, and
:class:`SharpFlatLandscape` has a sharp and a flat minimum (notebook 07). :func:`gradient_descent`
(Euler) and :func:`runge_kutta_step` (any explicit tableau) are the NumPy references the Keras
training steps are compared with; :func:`adaptive_path` runs an embedded pair with notebook 05's
step-size controller and keeps every try.
"""

from __future__ import annotations

from collections.abc import Callable
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


@dataclass(frozen=True)
class AdaptivePath:
    """An adaptive run of the gradient flow: its accepted points and every try on the way.

    ``points`` holds the start and each accepted step's end (``steps + 1`` rows);
    ``step_sizes`` the accepted step sizes; ``tries`` every try in order as
    ``(step, h, end point, accepted)``, ``step`` counting accepted steps from 0, so that a
    rejected try's end point shows where the step would have gone.
    """

    points: np.ndarray
    step_sizes: np.ndarray
    tries: list[tuple[int, float, np.ndarray, bool]]

    @property
    def rejections(self) -> np.ndarray:
        """How many tries each accepted step rejected before it."""
        counts = np.zeros(len(self.step_sizes), dtype=int)
        for step, _, _, accepted in self.tries:
            counts[step] += not accepted
        return counts


def adaptive_path(
    gradient: Callable[[np.ndarray], np.ndarray],
    p0: np.ndarray | list[float],
    tableau: Any,
    first_step: float,
    steps: int,
    rtol: float = 1e-3,
    atol: float = 1e-6,
) -> AdaptivePath:
    """``steps`` accepted steps of an embedded pair with the controller of notebook 05 §6.

    SciPy's controller, as :class:`course_lib.adaptive.AdaptiveStepSize` runs it inside the
    training step: err is the root mean square of the estimate over ``atol + rtol·max(|p|,
    |p_new|)``; a try with err < 1 is accepted and the next step size is multiplied by
    ``min(10, 0.9·err^(−1/(q̂+1)))`` (at most 1 right after a rejection); otherwise the step is
    retried with ``max(0.2, 0.9·err^(−1/(q̂+1)))`` times the size. One function throughout, so
    stage 1 is taken once per step. The NumPy reference behind notebook 05's animation of a run.
    """
    if not getattr(tableau, "is_adaptive", False):
        raise ValueError(
            f"{getattr(tableau, 'name', tableau)!r} has no embedded error estimate: use an "
            "embedded pair such as get_tableau('bogacki_shampine') or 'dormand_prince'."
        )
    if not np.isfinite(first_step) or first_step <= 0:
        raise ValueError(f"first_step={first_step!r} must be a positive finite number.")
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps={steps!r} must be a non-negative integer.")
    a = np.asarray(tableau.a, dtype=np.float64)
    b = np.asarray(tableau.b, dtype=np.float64)
    error_weights = np.asarray(tableau.error_weights, dtype=np.float64)
    exponent = -1.0 / (tableau.embedded_order + 1)
    points, sizes, tries = [_as_points(p0, "p0")], [], []
    h = float(first_step)
    while len(sizes) < steps:
        p, g1, rejected = points[-1], np.asarray(gradient(points[-1]), dtype=np.float64), False
        while True:
            with np.errstate(over="ignore", invalid="ignore"):  # an overflow is a rejected try
                g = [g1]
                for i in range(1, len(b)):
                    g.append(gradient(p - h * sum((a[i, j] * g[j] for j in range(i)), 0.0 * p)))
                p_new = p - h * sum(w * g_i for w, g_i in zip(b, g, strict=True))
                error = -h * sum(w * g_i for w, g_i in zip(error_weights, g, strict=True))
                scale = atol + rtol * np.maximum(np.abs(p), np.abs(p_new))
                norm = float(np.sqrt(np.mean((error / scale) ** 2)))
            tries.append((len(sizes), h, p_new, norm < 1.0))
            if norm < 1.0:
                factor = 10.0 if norm == 0.0 else min(10.0, 0.9 * norm**exponent)
                points.append(p_new)
                sizes.append(h)
                h *= min(1.0, factor) if rejected else factor
                break
            h *= max(0.2, 0.9 * norm**exponent) if np.isfinite(norm) else 0.2  # SciPy's too
            rejected = True
    return AdaptivePath(np.array(points), np.array(sizes), tries)


@dataclass(frozen=True)
class SharpFlatLandscape:
    """A valley with a sharp minimum at one end and a flat one at the other (notebook 07).

    L(x, y) = b·(x² − 1)² + t·x + ½·c(x)·y²,  c(x) = c_flat + (c_sharp − c_flat)·σ((x_c − x)/w)

    with σ the logistic function. Along the valley floor (y = 0) it is a double well with minima
    near x = −1 and x = +1, separated by a low pass of height about b; the tilt t makes the left
    one slightly *deeper*. Across the valley the curvature c(x) falls from ``sharp_curvature`` on
    the left to ``flat_curvature`` on the right (around ``narrowing_at``, over a few
    ``narrowing_width``), so the left minimum lies in a narrow ravine and the right one in a wide
    valley. The Hessian's largest eigenvalue, the usual measure of sharpness, is about c(x) at
    each minimum: plain gradient descent that starts in the left half settles in the sharp
    minimum, and SAM, which penalises the worst loss within a radius, prefers the flat one.

    There is no local maximum: the critical points are the two minima and the saddle (the pass)
    between them, so the worst point of L within a disc always lies on the disc's edge.
    """

    barrier: float = 0.1
    tilt: float = 0.02
    sharp_curvature: float = 40.0
    flat_curvature: float = 1.0
    narrowing_at: float = 0.0
    narrowing_width: float = 0.3

    def __post_init__(self) -> None:
        for name in ("barrier", "flat_curvature", "narrowing_width"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name}={value!r} must be a positive finite number.")
        if not self.sharp_curvature > self.flat_curvature:
            raise ValueError(
                f"sharp_curvature={self.sharp_curvature!r} must exceed "
                f"flat_curvature={self.flat_curvature!r}: the left minimum is the sharp one."
            )
        # Two minima need three real roots of f'(x) = 4b·x(x² − 1) + t: |t| < 8b/(3√3).
        if not abs(self.tilt) < 8 * self.barrier / (3 * np.sqrt(3)):
            raise ValueError(
                f"tilt={self.tilt!r} is too large for barrier={self.barrier!r}: the floor keeps "
                f"two minima only while |tilt| < {8 * self.barrier / (3 * np.sqrt(3)):.3g}."
            )

    # ------------------------------------------------------------------ the pieces
    def _floor(self, x: Any) -> Any:
        """f(x) = b·(x² − 1)² + t·x, the loss along the valley floor y = 0."""
        return self.barrier * (x**2 - 1) ** 2 + self.tilt * x

    def _narrowing(self, x: Any, sigmoid: Callable[[Any], Any]) -> Any:
        """σ((x_c − x)/w): 1 on the sharp side, 0 on the flat side."""
        return sigmoid((self.narrowing_at - x) / self.narrowing_width)

    def curvature_across(self, x: Any) -> np.ndarray:
        """c(x), the curvature of the valley across its floor at position x."""
        s = self._narrowing(np.asarray(x, dtype=np.float64), _logistic)
        return self.flat_curvature + (self.sharp_curvature - self.flat_curvature) * s

    # ------------------------------------------------------------------ NumPy
    def value(self, p: Any) -> np.ndarray:
        p = _as_points(p)
        x, y = p[..., 0], p[..., 1]
        return self._floor(x) + 0.5 * self.curvature_across(x) * y**2

    def gradient(self, p: Any) -> np.ndarray:
        p = _as_points(p)
        x, y = p[..., 0], p[..., 1]
        s = self._narrowing(x, _logistic)
        slope = -(self.sharp_curvature - self.flat_curvature) * s * (1 - s) / self.narrowing_width
        dx = 4 * self.barrier * x * (x**2 - 1) + self.tilt + 0.5 * slope * y**2
        return np.stack([dx, self.curvature_across(x) * y], axis=-1)

    def hessian(self, p: Any) -> np.ndarray:
        """The 2×2 Hessian at each point (shape ``p.shape + (2,)``)."""
        p = _as_points(p)
        x, y = p[..., 0], p[..., 1]
        s = self._narrowing(x, _logistic)
        span = self.sharp_curvature - self.flat_curvature
        slope = -span * s * (1 - s) / self.narrowing_width
        bend = span * s * (1 - s) * (1 - 2 * s) / self.narrowing_width**2
        xx = 4 * self.barrier * (3 * x**2 - 1) + 0.5 * bend * y**2
        xy = slope * y
        yy = self.curvature_across(x)
        return np.stack([np.stack([xx, xy], -1), np.stack([xy, yy], -1)], -2)

    def sharpness(self, p: Any) -> np.ndarray:
        """The Hessian's largest eigenvalue at each point: how sharp the loss is there."""
        return np.linalg.eigvalsh(self.hessian(p))[..., -1]

    # ------------------------------------------------------------------ Keras
    def keras_loss(self, y_true: Any, y_pred: Any) -> Any:
        """The same loss for a model whose output is p (``y_true`` is ignored)."""
        from keras import ops

        x, y = y_pred[..., 0], y_pred[..., 1]
        across = self.flat_curvature + (
            self.sharp_curvature - self.flat_curvature
        ) * self._narrowing(x, ops.sigmoid)
        return self._floor(x) + 0.5 * across * y**2

    # ------------------------------------------------------------------ minima and basins
    def _floor_minima(self) -> np.ndarray:
        """The two minima of f, the roots of 4b·x³ − 4b·x + t = 0 other than the middle one."""
        roots = np.sort(np.roots([4 * self.barrier, 0.0, -4 * self.barrier, self.tilt]).real)
        return roots[[0, 2]]

    @property
    def minimum(self) -> np.ndarray:
        """The sharp minimum (x ≈ −1, y = 0), the slightly deeper one."""
        return np.array([self._floor_minima()[0], 0.0])

    @property
    def flat_minimum(self) -> np.ndarray:
        """The flat minimum (x ≈ +1, y = 0)."""
        return np.array([self._floor_minima()[1], 0.0])

    def basin(self, points: Any, tolerance: float = 1e-3) -> np.ndarray:
        """``"sharp"`` or ``"flat"`` for each point: which minimum its gradient flow reaches.

        The flow dp/dt = −∇L(p) is followed with small Euler steps (h = 0.25/c_sharp, well
        inside gradient descent's stability limit 2/c_sharp) until each point is within
        ``tolerance`` of a minimum. A point that reaches neither (on the dividing line itself,
        or far outside the plotted region) raises ``ValueError``.
        """
        q = _as_points(points).copy()
        minima = np.stack([self.minimum, self.flat_minimum])
        step = 0.25 / self.sharp_curvature
        for _ in range(200_000):
            distance = np.linalg.norm(q[..., None, :] - minima, axis=-1)
            if np.all(distance.min(axis=-1) < tolerance):
                return np.where(distance.argmin(axis=-1) == 0, "sharp", "flat")
            q = q - step * self.gradient(q)
        stuck = _as_points(points)[distance.min(axis=-1) >= tolerance]
        raise ValueError(
            f"the gradient flow from {stuck.reshape(-1, 2)[:3].tolist()} reaches neither "
            "minimum: the point lies on the boundary between the basins or far outside them."
        )


def _logistic(u: Any) -> np.ndarray:
    """σ(u) = 1/(1 + e^(−u)), without overflow for large |u|."""
    u = np.asarray(u, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -u))
