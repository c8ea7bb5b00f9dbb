"""The overfitting study's figures: training and validation curves, and the forest plot.

Both draw from plain numbers (a study's records, or the curves and readings tables of the result
file), so notebook 06 draws the live study and the full one with the same code. One colour per
method, the course's (:data:`course_lib.plots.METHOD_COLOURS`), the same in every figure.
"""

from __future__ import annotations

from course_lib.plots import method_colour
from course_lib.studies.overfitting import (
    RK23,
    RK23_FIXED,
    RK45,
    RK45_FIXED,
    SGD_AT_RK23,
    SGD_AT_RK45,
)
from course_lib.studies.statistics import resolves_direction

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.transforms import offset_copy

#: How each kind of row is drawn. The colour is the method's, the course's one colour per method
#: (:func:`course_lib.plots.method_colour`: SGD gradient descent's blue, RK23 Bogacki–Shampine's
#: red, RK45 Dormand–Prince's brown); the kind of row is told by the line style: adaptive
#: solid, fixed step dashed, SGD replaying an adaptive run's steps dotted, in that run's colour.
LINE_STYLES: dict[str, Any] = {
    RK23: "-",
    RK45: "-",
    RK23_FIXED: (0, (4, 4)),
    RK45_FIXED: (4, (4, 4)),  # RK23's dashes in RK45's gaps, where the two coincide
    SGD_AT_RK23: (0, (1, 3)),
    SGD_AT_RK45: (2, (1, 3)),
}
#: The order lines are drawn in, so that coinciding ones stay visible: SGD's band under all,
#: then the solid adaptive lines, the dashed fixed-step ones over them (the solid line shows in
#: their gaps) and the dotted replays last.
_DRAW_ORDER = ("SGD", RK23, RK45, RK23_FIXED, RK45_FIXED, SGD_AT_RK23, SGD_AT_RK45)


def method_color(method: str) -> str:
    """The course's colour for a row of the study ("SGD at RK23's steps" takes RK23's)."""
    try:
        return method_colour(method)
    except ValueError:
        return "grey"


def plot_curves(
    curves: Mapping[str, Any],
    ax_loss: Any,
    ax_accuracy: Any | None = None,
    title: str = "",
    ax_validation: Any | None = None,
) -> None:
    """Training (faint) and validation (strong) loss per method on log axes; validation
    accuracy on ``ax_accuracy``. With ``ax_validation``, validation loss goes there instead, on
    its own axis, and ``ax_loss`` holds the training loss alone: a long run's training loss
    spans many decades and would flatten validation. ``curves`` is
    :func:`course_lib.studies.regimes.curves`."""
    epochs = curves["epochs"]
    drawn = [m for m, entry in curves["methods"].items() if entry["train_loss"]]
    drawn.sort(key=lambda m: _DRAW_ORDER.index(m) if m in _DRAW_ORDER else len(_DRAW_ORDER))
    apart = ax_validation is not None
    # Training loss first, thin and faint, then validation on top; SGD, the reference, is a
    # wide pale band underneath, so a method that matches it shows as its own line in the band.
    for method in drawn:
        train = curves["methods"][method]["train_loss"]
        ax_loss.plot(epochs, train, **_style(method, faint=not apart))
    for method in drawn:
        entry = curves["methods"][method]
        (ax_validation if apart else ax_loss).plot(
            epochs, entry["val_loss"], label=method, **_style(method)
        )
        if ax_accuracy is not None:
            ax_accuracy.plot(epochs, entry["val_accuracy"], label=method, **_style(method))
    for ax in (ax_loss, ax_validation) if apart else (ax_loss,):
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_ticks(ax.xaxis, ax.yaxis)
        ax.set_xlabel("epoch", fontsize=9)
        ax.tick_params(labelsize=9)
    if apart:
        ax_loss.set_ylabel("training loss", fontsize=9)
        ax_validation.set_ylabel("validation loss", fontsize=9)
        ax_validation.set_title("validation loss", fontsize=10)
    else:
        ax_loss.set_ylabel("loss (strong: validation,\nfaint: training)", fontsize=9)
    ax_loss.set_title(title, fontsize=10)
    if ax_accuracy is not None:
        ax_accuracy.set_xscale("log")
        _plain_ticks(ax_accuracy.xaxis)
        ax_accuracy.set_xlabel("epoch", fontsize=9)
        ax_accuracy.set_ylabel("validation accuracy", fontsize=9)
        ax_accuracy.tick_params(labelsize=9)


def _style(method: str, faint: bool = False) -> dict[str, Any]:
    """Colour by method, line style by kind of row (:data:`LINE_STYLES`); ``faint`` for the
    training loss."""
    color = method_color(method)
    if method == "SGD":
        return {"color": color, "lw": 4.0, "alpha": 0.12 if faint else 0.3, "zorder": 1}
    style = {"color": color, "ls": LINE_STYLES.get(method, "-"), "lw": 1.4, "zorder": 2}
    if faint:
        style |= {"lw": 0.9, "alpha": 0.45}
    return style


def _plain_ticks(*axes: Any) -> None:
    """Log axes ticked at 1, 2, 5 × 10ᵏ and labelled 0.2, 1, 50 rather than 10⁰ and crowded
    minor labels."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    for axis in axes:
        low, high = axis.get_view_interval()
        few_decades = 0 < low and high / low < 30
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if few_decades else (1.0,)))
        axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axis.set_minor_formatter(NullFormatter())


def _legend_style(method: str) -> dict[str, Any]:
    """A method's line style for the legend: its dashes from their start (the offset that
    keeps coinciding lines apart in a plot would show a short handle as another pattern)."""
    style = _style(method)
    if isinstance(style.get("ls"), tuple):
        style["ls"] = (0, style["ls"][1])
    return style


def curve_legend(figure: Any, methods: Sequence[str]) -> None:
    """One legend for every panel, below them (outside the axes under constrained layout).

    Only the methods the figure draws a line for are listed (a diverged or skipped method has
    none), and the key names only the colours of those methods.
    """
    drawn = {line.get_label() for ax in figure.get_axes() for line in ax.get_lines()}
    shown = [m for m in methods if m in drawn]
    handles = [plt.Line2D([], [], label=m, **_legend_style(m)) for m in shown]
    where = "outside lower center" if figure.get_layout_engine() is not None else "lower center"
    figure.legend(
        handles=handles,
        loc=where,
        ncol=max(1, min(len(shown), 4)),
        fontsize=9,
        title=style_note(shown),
    ).get_title().set_fontsize(9)


def style_note(methods: Sequence[str]) -> str:
    """The legend's key: the colours of the methods shown, and what each line style says."""
    colours = [("SGD", "SGD blue"), ("RK23", "RK23 red"), ("RK45", "RK45 brown")]
    named = [words for name, words in colours if any(name in m for m in methods)]
    styles = ["solid adaptive", "dashed fixed step", "dotted SGD at the adaptive run's steps"]
    kept = [
        style
        for style, needs in zip(styles, ("adaptive", "fixed", "steps"), strict=True)
        if any(needs in m for m in methods)
    ]
    band = "; SGD: the wide pale band" if any(m == "SGD" for m in methods) else ""
    return f"colour: the method ({', '.join(named)}){band}\nline: {', '.join(kept)}"


#: The forest plot's two figures: per reading point, its panels (metric, title, where harm
#: lies). The first is the verdict's: matched training loss.
FOREST_PANELS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "matched": (
        ("val_loss", "validation loss", "harm →"),
        ("val_accuracy", "validation accuracy", "← harm"),
    ),
    "end": (
        ("train_loss", "training loss", "← trained further"),
        ("val_loss", "validation loss", "harm →"),
        ("val_accuracy", "validation accuracy", "← harm"),
    ),
}
#: What each figure's title says it shows.
FOREST_TITLES = {
    "matched": "at matched training loss: the verdicts' and the harness check's readings "
    "(Holm's family) and the step-size rows (descriptive)",
    "end": "at the end of training (equal epochs): descriptive, uncorrected",
}
#: Where the forest plot's axes end, in units of δ: beyond, a point is drawn at the edge.
FOREST_LIMIT = 6.0
#: The width of a forest figure, in inches: a notebook shows it at about 10 inches, so its
#: 9-point text stays 9 points.
FOREST_WIDTH = 10.0


def _in_delta(value: float) -> str:
    """A value in units of δ, as the edge of the forest plot labels it, in at most four
    characters where it can: "+6.5" (one decimal under 10, so 6.5 is not read as 6), "+16",
    "-148", "+1e+70"."""
    if abs(value) < 10:
        return f"{value:+.1f}"
    return f"{value:+.0f}" if abs(value) < 1000 else f"{value:+.0e}"


#: How far beyond the edge a clipped end's triangle sits, in points, so that a mean just
#: inside the edge keeps its dot clear of it.
EDGE_OFFSET = 5.0


def _edge(
    ax: Any, side: float, y: float, color: str, size: float, filled: bool, outward: float = 0.0
) -> None:
    """A triangle at the edge of the frame on ``side`` (±1), pointing out, ``outward`` points
    beyond it."""
    ax.plot(
        side * FOREST_LIMIT,
        y,
        marker=">" if side > 0 else "<",
        ms=size,
        color=color,
        markerfacecolor=color if filled else "white",
        zorder=4 if size > 5 else 3,
        transform=offset_copy(ax.transData, fig=ax.figure, x=side * outward, units="points"),
    )


def _off_scale(ax: Any, value: float, y: float, color: str, filled: bool) -> None:
    """A mean beyond ±FOREST_LIMIT: a large triangle at the edge, pointing out, and the value."""
    side = 1.0 if value > 0 else -1.0
    _edge(ax, side, y, color, 7, filled)
    ax.text(
        side * (FOREST_LIMIT + 0.6),
        y,
        _in_delta(value),
        fontsize=9,
        ha="left" if side > 0 else "right",
        va="center",
        color=color,
    )


def _forest_row(ax: Any, r: Mapping[str, Any], y: float) -> None:
    """One reading: its interval and mean in units of δ, clipped at the edges, every clipped end
    marked. A reading of Holm's family has a dot (filled: a direction resolved after the
    correction); a descriptive one a vertical tick."""
    color = method_color(r["comparison"].method)
    mean, half = r["mean"] / r["delta"], r["half_width"] / r["delta"]
    family = r.get("role") == "Holm's family"
    if r["pairs"] == 1:  # no interval: a cross at the one difference (at the edge if beyond)
        side = float(np.sign(mean))
        at = mean if abs(mean) <= FOREST_LIMIT else side * FOREST_LIMIT
        ax.plot(at, y, "x", ms=6, mew=1.6, color=color, zorder=3)
        if abs(mean) > FOREST_LIMIT:  # its value inside the frame, next to the cross
            value = f"{mean:+.2f}" if abs(mean) < 10 else _in_delta(mean)  # +6.04, not +6.0
            ha = "right" if side > 0 else "left"
            x = side * (FOREST_LIMIT - 0.5)
            ax.text(x, y, f"×{value}", fontsize=9, ha=ha, va="center", color=color)
        return
    low, high = mean - half, mean + half
    ax.plot(np.clip([low, high], -FOREST_LIMIT, FOREST_LIMIT), [y, y], color=color, lw=1.4)
    filled = family and resolves_direction(r["corrected"])
    for end in (low, high):  # every clipped end of the interval: a small triangle
        if abs(end) > FOREST_LIMIT:
            beside_dot = abs(mean) <= FOREST_LIMIT  # else the mean's large triangle covers it
            _edge(ax, float(np.sign(end)), y, color, 5, True, EDGE_OFFSET if beside_dot else 0.0)
    if abs(mean) > FOREST_LIMIT:  # covers the small triangle of the same side
        _off_scale(ax, mean, y, color, filled=filled)
    elif family:
        ax.plot(
            mean, y, "o", ms=5, color=color, markerfacecolor=color if filled else "white", zorder=3
        )
    else:
        ax.plot(mean, y, "|", ms=9, mew=2.0, color=color, zorder=3)


def forest_plot(
    readings: Sequence[Mapping[str, Any]], regime_names: Mapping[str, str], point: str = "matched"
) -> Any:
    """Paired differences in units of δ at ``point`` ("matched" or "end"), one row per regime
    and comparison, one panel per metric (:data:`FOREST_PANELS`).

    ``readings`` are the study's readings (:func:`course_lib.studies.regimes.regime_readings`
    after :func:`~course_lib.studies.regimes.correct`, or read back from the result file). Each
    bar is the uncorrected 95 % interval divided by the reading's δ, so the grey band ±1 is ±δ in
    every panel. A reading of Holm's family has a dot, filled when it resolves a direction after
    the correction, hollow when it does not; a descriptive reading has a vertical tick; a cross
    is a reading with a single pair (no interval; beyond the edge it sits on the edge, its
    value after a × inside the frame). A mean beyond ±:data:`FOREST_LIMIT` is drawn
    at the edge as a large triangle pointing out, with its value in units of δ; an interval end
    beyond it as a small triangle. Comparisons without a single pair have no row: a note under
    the panels names them.
    """
    panels = FOREST_PANELS[point]
    here = [r for r in readings if r["point"] == point]
    keys = list(dict.fromkeys((r["regime"], r["comparison"]) for r in here))
    paired = {(r["regime"], r["comparison"]) for r in here if r["pairs"] > 0}
    labels = [k for k in keys if k in paired]
    empty = [k for k in keys if k not in paired]
    figure, axes = plt.subplots(
        1,
        len(panels),
        figsize=(FOREST_WIDTH, 0.24 * len(labels) + 2.6),
        sharey=True,
        layout="constrained",
    )
    positions = {label: len(labels) - 1 - i for i, label in enumerate(labels)}
    for ax, (metric, title, harm) in zip(axes, panels, strict=True):
        ax.axvspan(-1, 1, color="0.88", zorder=0)
        ax.axvline(0, color="0.4", lw=0.8, zorder=1)
        for r in here:
            key = (r["regime"], r["comparison"])
            if r["metric"] == metric and key in positions:
                _forest_row(ax, r, positions[key])
        ax.set_xlim(-FOREST_LIMIT - 4.5, FOREST_LIMIT + 4.5)  # room for the edge labels
        ax.set_xticks([-FOREST_LIMIT, -3, 0, 3, FOREST_LIMIT])
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(f"difference / δ\n({harm})", fontsize=9)
        ax.tick_params(labelsize=9)
    figure.suptitle(FOREST_TITLES[point], fontsize=10)
    axes[0].set_yticks(list(positions.values()))
    axes[0].set_yticklabels(
        [f"{regime_names.get(regime, regime)}: {c.short}" for regime, c in positions], fontsize=9
    )
    axes[0].set_ylim(-0.7, len(labels) - 0.3)
    axes[0].set_ylabel("regime: comparison", fontsize=9)
    for index in range(1, len(labels)):  # a thin line between regimes
        if labels[index][0] != labels[index - 1][0]:
            for ax in axes:
                ax.axhline(len(labels) - index - 0.5, color="0.6", lw=0.6)
    if empty:  # a figure-level label: constrained layout makes room for it
        figure.supxlabel(_empty_note(empty, keys, regime_names), fontsize=9)
    return figure


def _empty_note(
    empty: Sequence[tuple[str, Any]], keys: Sequence[tuple[str, Any]], names: Mapping[str, str]
) -> str:
    """Which comparisons have no row: by regime, "all N comparisons" or their names, in lines
    of at most 110 characters that never break a name."""
    pieces = ["Not drawn, no pairs (a run of every pair diverged):"]
    regimes = list(dict.fromkeys(r for r, _ in empty))
    for number, regime in enumerate(regimes):
        mine = [c for r, c in empty if r == regime]
        total = sum(r == regime for r, _ in keys)
        what = [f"all {total} comparisons"] if len(mine) == total else [c.short for c in mine]
        what[0] = f"{names.get(regime, regime)}: {what[0]}"
        ends = [","] * (len(what) - 1) + ["." if number == len(regimes) - 1 else ";"]
        pieces += [w + end for w, end in zip(what, ends, strict=True)]
    lines = [pieces[0]]
    for piece in pieces[1:]:
        if len(lines[-1]) + 1 + len(piece) > 110:
            lines.append(piece)
        else:
            lines[-1] += " " + piece
    return "\n".join(lines)
