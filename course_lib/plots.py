"""Plot optimizer trajectories over a 2-D loss (used from notebook 01 on), in the course's colours.

A method keeps one colour in every figure of the course, from notebook 01 to the appendices, so a
learner who has seen gradient descent in blue recognises it anywhere: :data:`METHOD_COLOURS` is
that table, :func:`method_colour` reads it for a method's name or a label that names one (the
e2e figure audit holds every notebook's figures to it). References (a flow computed with a much
smaller step, a closed form) are drawn thin, black and on top.
"""

from __future__ import annotations

from course_lib import html_player
from course_lib.landscapes import Quadratic, Rosenbrock

import io
import re
from collections.abc import Mapping, Sequence

import matplotlib.colors
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


# ---- motion ------------------------------------------------------------------------------------

#: Resolution of an animation (dots per inch): sharp on a screen, small in the notebook file.
ANIMATION_DPI = 80


class Animation:
    """A figure whose lines grow step by step, shown as a self-contained HTML player.

    Made by :func:`animate`. In a notebook its HTML shows (``_repr_html_``): it plays in
    JupyterLab once the cell has run and on the website with no kernel; a viewer without
    JavaScript shows the last frame.
    """

    def __init__(self, player: html_player.Player, labels: list[str]) -> None:
        self.player = player
        self.labels = labels

    @property
    def frame_count(self) -> int:
        return self.player.frame_count

    def _repr_html_(self) -> str:
        return self.player.html()

    def __repr__(self) -> str:
        return f"<Animation of {', '.join(self.labels)}: {self.frame_count} frames>"


def _dashes(line: plt.Line2D, pixels_per_point: float) -> tuple[float, ...]:
    """The line's dash pattern in pixels, from matplotlib's own patterns (scaled by width)."""
    style = line.get_linestyle()
    names = {"--": "dashed", ":": "dotted", "-.": "dashdot"}
    if style not in names:
        return ()
    pattern = plt.rcParams[f"lines.{names[style]}_pattern"]
    scale = line.get_linewidth() if plt.rcParams["lines.scale_dashes"] else 1.0
    return tuple(round(d * scale * pixels_per_point, 1) for d in pattern)


def _colour(value: object) -> str:
    if isinstance(value, str) and value.lower() == "none":
        return "none"
    return matplotlib.colors.to_hex(value)


def _lay_out(figure: plt.Figure, dpi: float) -> None:
    """Draw the figure at ``dpi`` until its layout settles, then keep the axes where they are.

    A layout engine moves the axes at each draw until it settles (constrained layout with an
    equal-aspect panel and a legend outside takes a few draws); the lines are measured in pixels
    once, so the background must be saved with the axes where they were measured.
    """
    figure.set_dpi(dpi)
    boxes = None
    for _ in range(10):
        figure.canvas.draw()
        previous, boxes = boxes, [ax.bbox.bounds for ax in figure.axes]
        if previous is not None and np.allclose(previous, boxes, atol=0.01):
            break
    figure.set_layout_engine("none")


def _track(line: plt.Line2D, frames: Sequence[int], mode: str, height: float, dpi: float):
    """The player's view of one matplotlib line: pixel points, style, clip box."""
    ax, points_per_pixel = line.axes, dpi / 72.0
    data = np.column_stack([line.get_xdata(orig=False), line.get_ydata(orig=False)])
    pixels = ax.transData.transform(data.astype(float))
    x0, y0, width, box_height = ax.bbox.bounds
    marker = line.get_marker()
    marker = None if marker in (None, "None", "", " ", "none") else str(marker)
    return html_player.Track(
        points=[(float(x), float(height - y)) for x, y in pixels],
        frames=[int(f) for f in frames],
        colour=_colour(line.get_color()),
        line_width=line.get_linewidth() * points_per_pixel if line.get_linestyle() != "None" else 0,
        dashes=_dashes(line, points_per_pixel),
        marker=marker,
        marker_size=line.get_markersize() * points_per_pixel,
        marker_face=_colour(line.get_markerfacecolor()),
        alpha=1.0 if line.get_alpha() is None else float(line.get_alpha()),
        mode=mode,
        clip=(x0, height - y0 - box_height, width, box_height),
        label=line.get_label(),
    )


def _is_reference(line: plt.Line2D) -> bool:
    return methods_named_in(line.get_label())[:1] == ["reference"]


def _moving_lines(figure: plt.Figure) -> list[plt.Line2D]:
    """By default: every labelled line of two points or more; references stand still."""
    return [
        line
        for ax in figure.axes
        for line in ax.get_lines()
        if line.get_visible() and not line.get_label().startswith("_") and len(line.get_xdata()) > 1
    ]


def animate(
    figure: plt.Figure,
    *,
    lines: Sequence[plt.Line2D] | None = None,
    frames_of: Mapping[plt.Line2D, Sequence[int]] | None = None,
    current: Sequence[plt.Line2D] = (),
    frame_ms: int = 150,
    frame_labels: Sequence[str] | None = None,
    caption: str = "step",
) -> Animation:
    """Turn a figure the lesson has drawn into an animation of its lines, step by step.

    Draw the figure as for a still picture (``plot_trajectories``, a step-size panel…), then
    animate it: point ``i`` of a moving line appears at frame ``i`` (or at ``frames_of[line][i]``)
    and stays; a line in ``current`` shows only the points of the frame being played (the trial
    point of the step being taken); a reference (a label naming "reference" or a flow) is drawn
    whole from the first frame, on top. ``lines`` chooses the moving lines (default: every
    labelled line of two points or more). Everything else (contours, markers of single points,
    unlabelled lines, the legend) is the still background. The figure is closed: the animation
    replaces it in the notebook.
    """
    moving = list(_moving_lines(figure) if lines is None else lines)
    moving += [line for line in current if line not in moving]
    if not moving:
        raise ValueError("the figure has no line to animate: pass lines=[...] or label them.")
    frames_of = dict(frames_of or {})
    for line in frames_of:
        if len(frames_of[line]) != len(line.get_xdata()):
            raise ValueError(
                f"frames_of[{line.get_label()!r}] has {len(frames_of[line])} frames for "
                f"{len(line.get_xdata())} points: give one frame per point."
            )
    original_dpi = figure.dpi
    try:
        _lay_out(figure, ANIMATION_DPI)
        width, height = (int(round(v)) for v in figure.canvas.get_width_height())
        figure.canvas.draw()  # lay out first: the axes' boxes are final from here on
        tracks = []
        for line in moving:
            mode = "current" if line in current else "still" if _is_reference(line) else "grow"
            frames = frames_of.get(line, range(len(line.get_xdata())))
            tracks.append(_track(line, frames, mode, height, ANIMATION_DPI))
        # References on top of everything else, as in the still figures.
        tracks.sort(key=lambda track: track.mode == "still")
        for line in moving:
            line.set_visible(False)
        background = io.BytesIO()
        figure.savefig(background, format="png", dpi=ANIMATION_DPI, metadata={"Software": None})
    finally:
        for line in moving:
            line.set_visible(True)
        figure.set_dpi(original_dpi)
        plt.close(figure)
    timed = [track for track in tracks if track.mode != "still"] or tracks
    frame_count = max(max(track.frames, default=0) for track in timed) + 1
    player = html_player.Player(
        background_png=background.getvalue(),
        width=width,
        height=height,
        tracks=tracks,
        frame_count=frame_count,
        frame_ms=frame_ms,
        caption=caption,
        frame_labels=list(frame_labels or []),
    )
    return Animation(player, [line.get_label() for line in moving])
