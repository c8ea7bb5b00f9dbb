"""Plot optimizer trajectories over a 2-D loss (used from notebook 01 on), in the course's colours.

A method keeps one colour in every figure of the course, from notebook 01 to the appendices, so a
learner who has seen gradient descent in blue recognises it anywhere: :data:`METHOD_COLOURS` is
that table, :func:`method_colour` reads it for a method's name or a label that names one (the
e2e figure audit holds every notebook's figures to it). References (a flow computed with a much
smaller step, a closed form) are drawn thin, black and on top.
"""

from __future__ import annotations

from course_lib.landscapes import Quadratic, Rosenbrock

import re
from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np

#: One colour per method across the course. Euler's method, gradient descent and SGD are one
#: method (one step rule), so they share blue.
METHOD_COLOURS: dict[str, str] = {
    "reference": "black",
    "gradient descent": "tab:blue",
    "momentum": "tab:purple",
    "nesterov": "tab:pink",
    "adam": "tab:gray",
    "heun": "tab:orange",
    "midpoint": "tab:olive",
    "ralston": "tab:cyan",
    "kutta3": "slateblue",
    "rk4": "tab:green",
    "bogacki_shampine": "tab:red",
    "dormand_prince": "tab:brown",
    "sam": "teal",
    "lookahead": "darkgoldenrod",
}

#: How labels name each method (lower case, whole words), most specific first: "momentum SGD"
#: is momentum, "reference (Heun, h/10)" a reference.
_NAMES_IN_LABELS: tuple[tuple[str, str], ...] = (
    ("reference", r"reference|exact|flow"),
    ("lookahead", r"lookahead"),
    ("sam", r"sam|asam"),
    ("nesterov", r"nesterov"),
    ("momentum", r"momentum|heavy[ -]ball"),
    ("adam", r"adam"),
    ("dormand_prince", r"dormand[ _–-]prince|rk45|dopri5?"),
    ("bogacki_shampine", r"bogacki[ _–-]shampine|rk23"),
    ("rk4", r"rk4|classic(al)? runge[ –-]kutta"),
    ("kutta3", r"kutta ?3|kutta's third"),
    ("ralston", r"ralston"),
    ("midpoint", r"midpoint"),
    ("heun", r"heun"),
    ("gradient descent", r"gradient descent|sgd|gd|euler"),
)


def methods_named_in(label: str) -> list[str]:
    """Every method of :data:`METHOD_COLOURS` that ``label`` names, most specific first."""
    text = label.lower()
    return [
        method
        for method, pattern in _NAMES_IN_LABELS
        if re.search(rf"(?<![\w])(?:{pattern})(?![\w])", text)
    ]


def method_colour(name_or_label: str) -> str:
    """The course's colour for a method, given its name or a label that names it.

    Raises ValueError for a label that names no method of :data:`METHOD_COLOURS`: pick the
    colour yourself, or add the method to the table (one colour, kept across the course).
    """
    if name_or_label in METHOD_COLOURS:
        return METHOD_COLOURS[name_or_label]
    named = methods_named_in(name_or_label)
    if not named:
        raise ValueError(
            f"{name_or_label!r} names none of the course's methods ({', '.join(METHOD_COLOURS)}); "
            "pass a colour yourself or add the method to course_lib.plots.METHOD_COLOURS."
        )
    return METHOD_COLOURS[named[0]]


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

    ``trajectories`` maps a label to an array of points of shape (steps + 1, 2). Each takes its
    method's colour (:func:`method_colour`) where its label names a method. A reference (a
    label naming "reference" or a flow) is drawn as a thin black line without markers, on top of
    the iterates, so that neither hides the other.
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
        named = methods_named_in(label)
        if named[:1] == ["reference"]:
            style = {"lw": 1, "color": "black", "zorder": 3}
        else:
            style = {"marker": "o", "ms": 3, "lw": 1}
            if named:
                style["color"] = METHOD_COLOURS[named[0]]
        ax.plot(points[:, 0], points[:, 1], label=label, **style)
    (x_min, x_max, y_min, y_max), (x_star, y_star) = bounds, landscape.minimum
    if x_min <= x_star <= x_max and y_min <= y_star <= y_max:
        # Outside a zoomed frame the star would be invisible but still listed in the legend.
        ax.plot(x_star, y_star, marker="*", color="black", ms=10, ls="none", label="minimum")
    ax.set_xlim(bounds[0], bounds[1])
    ax.set_ylim(bounds[2], bounds[3])
    ax.set_aspect("equal")  # an elongated bowl must look elongated
    ax.set_xlabel("$p_1$")
    ax.set_ylabel("$p_2$")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=9)
    return ax
