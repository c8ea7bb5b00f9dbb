"""The overfitting study's figures: training and validation curves, and the forest plot.

Both draw from plain numbers (a study's records, or the curves and readings tables of the result
file), so notebook 06 draws the live study and the full one with the same code. One colour per
method, the same in every figure; SGD is black.
"""

from __future__ import annotations

from course_lib.studies.overfitting import (
    RK23,
    RK23_FIXED,
    RK45,
    RK45_FIXED,
    SGD_AT_RK23,
    SGD_AT_RK45,
)

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

#: One colour per method (the replay of an adaptive method shares its colour, dashed in curves).
METHOD_COLORS: dict[str, str] = {
    "SGD": "black",
    "Heun": "tab:olive",
    "RK4": "tab:brown",
    RK23_FIXED: "tab:cyan",
    RK45_FIXED: "tab:pink",
    RK23: "tab:blue",
    RK45: "tab:red",
    SGD_AT_RK23: "tab:purple",
    SGD_AT_RK45: "tab:orange",
}


def plot_curves(
    curves: Mapping[str, Any], ax_loss: Any, ax_accuracy: Any | None = None, title: str = ""
) -> None:
    """Training (dashed) and validation (solid) loss per method on log axes; validation
    accuracy on ``ax_accuracy``. ``curves`` is :func:`course_lib.studies.regimes.curves`."""
    epochs = curves["epochs"]
    for method, entry in curves["methods"].items():
        if not entry["train_loss"]:
            continue
        # SGD, the reference, is a wide pale band underneath: a method that matches it shows
        # as its own line inside the band instead of hiding it.
        style = _style(method)
        ax_loss.plot(epochs, entry["train_loss"], ls="--", **style)
        ax_loss.plot(epochs, entry["val_loss"], label=method, **style)
        if ax_accuracy is not None:
            ax_accuracy.plot(epochs, entry["val_accuracy"], label=method, **style)
    ax_loss.set_xscale("log")
    ax_loss.set_yscale("log")
    _plain_ticks(ax_loss.xaxis, ax_loss.yaxis)
    ax_loss.set_xlabel("epoch", fontsize=8)
    ax_loss.set_ylabel("loss (solid: validation, dashed: training)", fontsize=8)
    ax_loss.set_title(title, fontsize=9)
    ax_loss.tick_params(labelsize=8)
    if ax_accuracy is not None:
        ax_accuracy.set_xscale("log")
        _plain_ticks(ax_accuracy.xaxis)
        ax_accuracy.set_xlabel("epoch", fontsize=8)
        ax_accuracy.set_ylabel("validation accuracy", fontsize=8)
        ax_accuracy.tick_params(labelsize=8)


#: Markers of the fixed-step twins, placed at alternate points: where the two coincide (a small
#: step, where both follow the flow), each stays visible.
_MARKERS = {RK23_FIXED: ("o", (0, 6)), RK45_FIXED: ("s", (3, 6))}


def _style(method: str) -> dict[str, Any]:
    color = METHOD_COLORS.get(method, "grey")
    if method == "SGD":
        return {"color": color, "lw": 4.0, "alpha": 0.3, "zorder": 1}
    style = {"color": color, "lw": 1.2, "zorder": 2}
    if method in _MARKERS:
        marker, every = _MARKERS[method]
        style |= {"marker": marker, "ms": 3.5, "markevery": every, "markerfacecolor": "none"}
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


def curve_legend(figure: Any, methods: Sequence[str]) -> None:
    """One legend for every panel, below them."""
    handles = [plt.Line2D([], [], label=m, **_style(m)) for m in methods]
    figure.legend(handles=handles, loc="lower center", ncol=min(len(methods), 4), fontsize=8)


#: The panels of the forest plot: (point, metric, axis label).
FOREST_PANELS: tuple[tuple[str, str, str], ...] = (
    ("end", "train_loss", "training loss, end"),
    ("end", "val_loss", "validation loss, end"),
    ("matched", "val_loss", "validation loss, matched"),
    ("end", "val_accuracy", "validation accuracy, end"),
    ("matched", "val_accuracy", "validation accuracy, matched"),
)


def short(comparison: str) -> str:
    """A comparison's name as a forest plot's row label: "RK23 adaptive − SGD at its steps"."""
    method, control = comparison.split(" − ")
    method = method.replace(", adaptive", " adaptive").replace(", fixed step", " fixed")
    if control.startswith("SGD at "):
        control = "SGD at its steps"
    return f"{method} − {control}"


def forest_plot(rows: Sequence[Mapping[str, Any]], regime_names: Mapping[str, str]) -> Any:
    """Paired differences in units of δ, one row per regime and comparison, one panel per reading.

    ``rows`` are the records of the readings tables (with a ``regime`` key added). Each bar is
    the uncorrected 95 % interval divided by the reading's δ, so the grey band ±1 is ±δ in every
    panel; a filled dot means the difference survives Holm's correction (it resolves a
    direction), a hollow one that it does not. Bars beyond the frame are clipped at ±``limit``
    with an arrow.
    """
    labels = list(dict.fromkeys((r["regime"], r["comparison"]) for r in rows))
    figure, axes = plt.subplots(
        1,
        len(FOREST_PANELS),
        figsize=(1.9 * len(FOREST_PANELS) + 3.0, 0.19 * len(labels) + 1.6),
        sharey=True,
        layout="constrained",
    )
    limit = 6.0
    positions = {label: len(labels) - 1 - i for i, label in enumerate(labels)}
    for ax, (point, metric, title) in zip(axes, FOREST_PANELS, strict=True):
        ax.axvspan(-1, 1, color="0.88", zorder=0)
        ax.axvline(0, color="0.4", lw=0.8, zorder=1)
        for r in rows:
            if r["point"] != point or r["metric"] != metric.replace("_", " "):
                continue
            y = positions[r["regime"], r["comparison"]]
            mean, half, delta = r["mean"], r["± 95 %"], r["δ"]
            if mean is None:
                ax.text(0, y, "no pairs", fontsize=7, ha="center", va="center", color="0.3")
                continue
            method = r["comparison"].split(" − ")[0]
            color = METHOD_COLORS.get(method, "grey")
            low, high = ((mean - half) / delta, (mean + half) / delta) if half else (mean, mean)
            ax.plot(np.clip([low, high], -limit, limit), [y, y], color=color, lw=1.4)
            for end, clipped in ((low, low < -limit), (high, high > limit)):
                if clipped:
                    ax.plot(np.sign(end) * limit, y, marker="<" if end < 0 else ">", color=color)
            resolved = not r["corrected"].startswith(("undecided", "within"))
            centre = float(np.clip(mean / delta, -limit, limit))
            ax.plot(
                centre,
                y,
                "o",
                ms=4.5,
                color=color,
                markerfacecolor=color if resolved else "white",
                zorder=3,
            )
        ax.set_xlim(-limit - 0.5, limit + 0.5)
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("difference / δ", fontsize=8)
        ax.tick_params(labelsize=8)
    axes[0].set_yticks(list(positions.values()))
    axes[0].set_yticklabels(
        [f"{regime_names.get(regime, regime)}: {short(c)}" for regime, c in positions], fontsize=8
    )
    axes[0].set_ylim(-0.7, len(labels) - 0.3)
    for index in range(1, len(labels)):  # a thin line between regimes
        if labels[index][0] != labels[index - 1][0]:
            for ax in axes:
                ax.axhline(len(labels) - index - 0.5, color="0.6", lw=0.6)
    return figure
