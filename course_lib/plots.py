"""Plot optimizer trajectories over a 2-D loss (used from notebook 01 on)."""

from __future__ import annotations

from course_lib.landscapes import Quadratic, Rosenbrock

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np


def plot_trajectories(
    landscape: Quadratic | Rosenbrock,
    trajectories: Mapping[str, np.ndarray],
    *,
    bounds: tuple[float, float, float, float] = (-6.0, 6.0, -3.0, 3.0),
    ax: plt.Axes | None = None,
    title: str = "Optimizer trajectories",
    levels: int = 20,
    log_levels: bool = False,
) -> plt.Axes:
    """Draw the loss contours and one line with markers per trajectory.

    ``trajectories`` maps a label to an array of points of shape (steps + 1, 2); a label that
    contains "exact" is drawn as a smooth line without markers.
    """
    if len(bounds) != 4 or bounds[0] >= bounds[1] or bounds[2] >= bounds[3]:
        raise ValueError(f"bounds={bounds!r} must be (x_min, x_max, y_min, y_max) with min < max.")
    for label, points in trajectories.items():
        shape = np.shape(points)
        if len(shape) != 2 or shape[1] != 2:
            raise ValueError(f"trajectory {label!r} must have shape (steps + 1, 2), got {shape}.")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    xs = np.linspace(bounds[0], bounds[1], 200)
    ys = np.linspace(bounds[2], bounds[3], 200)
    grid = np.stack(np.meshgrid(xs, ys), axis=-1)
    values = landscape.value(grid)
    if log_levels:
        values = np.log10(values + 1e-12)
    ax.contour(xs, ys, values, levels=levels, cmap="Greys", linewidths=0.6)
    for label, points in trajectories.items():
        points = np.asarray(points)
        style = {"lw": 2} if "exact" in label else {"marker": "o", "ms": 3, "lw": 1}
        ax.plot(points[:, 0], points[:, 1], label=label, **style)
    (x_min, x_max, y_min, y_max), (x_star, y_star) = bounds, landscape.minimum
    if x_min <= x_star <= x_max and y_min <= y_star <= y_max:
        # Outside a zoomed frame the star would be invisible but still listed in the legend.
        ax.plot(x_star, y_star, marker="*", color="black", ms=10, ls="none", label="minimum")
    ax.set_xlim(bounds[0], bounds[1])
    ax.set_ylim(bounds[2], bounds[3])
    ax.set_xlabel("$p_1$")
    ax.set_ylabel("$p_2$")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    return ax
