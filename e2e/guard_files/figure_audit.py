"""IPython start-up file: record every figure a notebook shows that lacks axis labels or a title.

e2e/offline_guard.py copies this file into a temporary IPython profile's ``startup`` folder.
Whatever shows a figure in a notebook (``plt.show()``, the inline backend's end-of-cell flush,
``display(fig)``, ``savefig``) renders it through ``FigureCanvasBase.print_figure``, so the audit
wraps that one method and inspects the figure just before it is drawn, while it still exists.
Each rendered figure becomes one JSON line in the file named by ``E2E_FIGURE_LOG``, with its
problems (an empty list when it is fine), so a test can also tell that the audit ran at all.

The rules, per visible axes (colorbars and axes drawn with ``axis("off")`` excepted): an x label
and a y label (its own, a shared neighbour's, or the figure's ``supxlabel``/``supylabel``), and a
title (its own or the figure's ``suptitle``); the panel shows something (a line, a collection, an
image or a patch); every plotted line has a point inside the axes' limits, and no line is hidden
under a later one that draws the same points solid and at least as wide (give one of two
coinciding lines a dashed style or markers, and say in the text that they coincide). Nor is a
labelled line or marker set covered almost entirely by whatever is drawn after it: the figure is
rendered with the line painted in two colours in turn, and the pixels that change are the part
of it a reader can see. A panel with contours (a landscape) has equal aspect; no text is smaller
than 9 pt; a line whose label names one of the course's methods has that method's colour
(``course_lib.plots.METHOD_COLOURS``, one colour per method across the course).
"""

import json
import os

import matplotlib.backend_bases
import matplotlib.colors
import matplotlib.text
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg

#: Smallest font size a reader can take in, in points.
SMALLEST_TEXT_PT = 9
#: Below this fraction of its own pixels left visible, a line counts as hidden.
VISIBLE_AT_LEAST = 0.25
#: Resolution of the audit's own renders (dots per inch): enough to see a 1-pt line.
AUDIT_DPI = 72


def _text(artist):
    return artist.get_text().strip() if artist is not None else ""


def _shared_label(ax, which):
    group = ax.get_shared_x_axes() if which == "x" else ax.get_shared_y_axes()
    getter = "get_xlabel" if which == "x" else "get_ylabel"
    return any(getattr(other, getter)().strip() for other in group.get_siblings(ax))


def _line_data(line):
    x, y = line.get_xdata(orig=False), line.get_ydata(orig=False)
    try:
        return np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    except (TypeError, ValueError):  # dates or categories: not checked
        return None


def _inside_limits(ax, data):
    x, y = data
    (x0, x1), (y0, y1) = sorted(ax.get_xlim()), sorted(ax.get_ylim())
    inside = (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1) & np.isfinite(x) & np.isfinite(y)
    return bool(inside.any())


def _covers(upper, lower, upper_data, lower_data):
    """Whether ``upper`` draws exactly over ``lower``, hiding it."""
    if lower.get_marker() not in (None, "None", "", " ") or upper.get_linestyle() != "-":
        return False
    if lower.get_linestyle() not in ("-", "None") or upper.get_linewidth() < lower.get_linewidth():
        return False
    (ux, uy), (lx, ly) = upper_data, lower_data
    return (
        ux.shape == lx.shape
        and np.allclose(ux, lx, equal_nan=True)
        and np.allclose(uy, ly, rtol=1e-3, atol=0, equal_nan=True)
    )


def line_problems(ax, number):
    """Lines that cannot be seen: outside the limits, or drawn over by a later line."""
    return [problem for problem, _ in _line_problems(ax, number)]


def _line_problems(ax, number):
    """(problem, line) pairs, so that the pixel check can skip a line already reported."""
    problems = []
    lines = [(line, _line_data(line)) for line in ax.get_lines() if line.get_visible()]
    lines = [(line, data) for line, data in lines if data is not None and data[0].size]
    order = sorted(range(len(lines)), key=lambda i: (lines[i][0].get_zorder(), i))
    for rank, i in enumerate(order):
        line, data = lines[i]
        name = line.get_label() if not line.get_label().startswith("_") else f"line {i + 1}"
        if not _inside_limits(ax, data):
            problems.append((f"axes {number}: {name!r} has no point inside the axes' limits", line))
        for j in order[rank + 1 :]:
            if _covers(lines[j][0], line, lines[j][1], data):
                upper = lines[j][0].get_label()
                problems.append((f"axes {number}: {name!r} is hidden under {upper!r}", line))
                break
    return problems


# ---- what a reader sees: pixels ----------------------------------------------------------------

_PAINT = ("color", "markerfacecolor", "markeredgecolor", "alpha", "zorder", "antialiased")


def _render(figure):
    """The figure drawn by Agg at the audit's resolution, as an RGB array of floats."""
    original_canvas, original_dpi = figure.canvas, figure.dpi
    try:
        figure.set_dpi(AUDIT_DPI)
        canvas = FigureCanvasAgg(figure)
        canvas.draw()
        return np.asarray(canvas.buffer_rgba())[..., :3].astype(float) / 255.0
    finally:
        figure.set_dpi(original_dpi)
        figure.set_canvas(original_canvas)


def _painted(figure, line, colour, on_top):
    """Render with ``line`` (and its markers) painted opaque in ``colour``, in place or on top."""
    saved = {key: getattr(line, f"get_{key}")() for key in _PAINT}
    try:
        line.set(color=colour, markerfacecolor=colour, markeredgecolor=colour, alpha=1.0)
        line.set_antialiased(False)
        if on_top:
            line.set_zorder(1e9)
        return _render(figure)
    finally:
        line.set(**saved)


def visible_fraction(figure, line):
    """Which share of the pixels ``line`` paints a reader can still see (None: it paints none).

    A pixel counts as seen where repainting the line from red to blue changes it by more than
    60 % of what it changes with nothing on top: under an artist more than 40 % opaque, a line
    is not seen.
    """
    in_place = np.abs(_painted(figure, line, "red", False) - _painted(figure, line, "blue", False))
    on_top = np.abs(_painted(figure, line, "red", True) - _painted(figure, line, "blue", True))
    footprint = on_top.sum(axis=-1) > 0.5
    if not footprint.any():
        return None
    seen = in_place.sum(axis=-1) > 0.6 * on_top.sum(axis=-1)
    return float((seen & footprint).sum() / footprint.sum())


def _overlapping_only(figure, ax):
    """Hide the axes that do not overlap ``ax`` (nothing they draw can cover its lines).

    A many-panel figure then renders one panel's neighbourhood instead of every panel, four
    times per labelled line. The layout is computed first and frozen, so that a layout engine
    does not lay the remaining axes out again. Returns the axes hidden, to show again.
    """
    figure.draw_without_rendering()
    box = ax.get_position()
    hidden = []
    for other in figure.axes:
        if other is ax or not other.get_visible():
            continue
        if other.get_position().overlaps(box):
            continue
        other.set_visible(False)
        hidden.append(other)
    return hidden


def covered_problems(figure, number, ax, already_reported):
    """Labelled lines that later artists cover almost entirely."""
    lines = [
        line
        for line in ax.get_lines()
        if line.get_visible() and not line.get_label().startswith("_") and line not in already_reported
    ]
    if not lines:
        return []
    engine = figure.get_layout_engine()
    hidden = _overlapping_only(figure, ax)
    figure.set_layout_engine("none")
    try:
        return _covered_lines(figure, number, lines)
    finally:
        for other in hidden:
            other.set_visible(True)
        figure.set_layout_engine(engine)


def _covered_lines(figure, number, lines):
    problems = []
    for line in lines:
        label = line.get_label()
        fraction = visible_fraction(figure, line)
        if fraction is not None and fraction < VISIBLE_AT_LEAST:
            problems.append(
                f"axes {number}: {label!r} is almost hidden by what is drawn after it "
                f"({fraction:.0%} of it visible)"
            )
    return problems


# ---- the course's conventions ------------------------------------------------------------------


def _method_colours():
    """course_lib's table of method colours, or None outside the course's environment."""
    try:
        from course_lib.plots import METHOD_COLOURS, methods_named_in
    except ImportError:
        return None
    return METHOD_COLOURS, methods_named_in


def colour_problems(ax, number):
    """Lines whose label names one method but that are drawn in another method's colour."""
    table = _method_colours()
    if table is None:
        return []
    colours, methods_named_in = table
    problems = []
    for line in ax.get_lines():
        label = line.get_label()
        named = [] if label.startswith("_") else methods_named_in(label)
        if not (len(named) == 1 or named[:1] == ["reference"]):
            continue  # names no method, or several ("SGD replaying RK23's steps"): not judged
        expected = matplotlib.colors.to_rgb(colours[named[0]])
        if not np.allclose(matplotlib.colors.to_rgb(line.get_color()), expected, atol=0.01):
            problems.append(
                f"axes {number}: {label!r} is a {named[0]} line: draw it in "
                f"{colours[named[0]]!r}, the course's colour for it"
            )
    return problems


def aspect_problems(ax, number):
    """A landscape (a panel with contours) must keep equal aspect, or a bowl looks round."""
    has_contours = any(type(c).__name__ in ("QuadContourSet", "ContourSet") for c in ax.collections)
    if has_contours and ax.get_aspect() != 1.0:
        return [f"axes {number} draws contours without equal aspect (ax.set_aspect('equal'))"]
    return []


def small_text_problems(figure):
    """Visible text smaller than :data:`SMALLEST_TEXT_PT`."""
    small = sorted(
        {
            text.get_text().strip()[:30]
            for text in figure.findobj(matplotlib.text.Text)
            if text.get_visible() and text.get_text().strip() and text.get_size() < SMALLEST_TEXT_PT
        }
    )
    return [f"text under {SMALLEST_TEXT_PT} pt: {', '.join(map(repr, small))}"] if small else []


def _shows_something(ax):
    return bool(ax.get_lines() or ax.collections or ax.images or ax.patches or ax.tables)


def figure_problems(figure):
    """What the figure lacks, as short sentences (empty when it is fine)."""
    problems = []
    suptitle = _text(getattr(figure, "_suptitle", None))
    supxlabel = _text(getattr(figure, "_supxlabel", None))
    supylabel = _text(getattr(figure, "_supylabel", None))
    for number, ax in enumerate(figure.axes, start=1):
        if not ax.get_visible() or ax.get_label() == "<colorbar>" or not ax.axison:
            continue
        title = any(ax.get_title(loc=loc).strip() for loc in ("left", "center", "right"))
        if not (title or suptitle):
            problems.append(f"axes {number} has no title")
        if not (supxlabel or _shared_label(ax, "x")):
            problems.append(f"axes {number} has no x label")
        if not (supylabel or _shared_label(ax, "y")):
            problems.append(f"axes {number} has no y label")
        if not _shows_something(ax):
            problems.append(f"axes {number} shows nothing")
        reported = _line_problems(ax, number)
        problems.extend(problem for problem, _ in reported)
        problems.extend(covered_problems(figure, number, ax, {line for _, line in reported}))
        problems.extend(colour_problems(ax, number))
        problems.extend(aspect_problems(ax, number))
    problems.extend(small_text_problems(figure))
    return problems


_print_figure = matplotlib.backend_bases.FigureCanvasBase.print_figure
_running_cell = {"first_line": None}


def _remember_cell(info):
    """pre_run_cell hook: which cell is running, for the record of its figures.

    (Its first line, not ``execution_count``: IPython has already moved that on by now.)
    """
    lines = (info.raw_cell or "").strip().splitlines()
    _running_cell["first_line"] = lines[0] if lines else ""


def _audited_print_figure(self, *args, **kwargs):
    try:
        problems = figure_problems(self.figure)
        log = os.environ.get("E2E_FIGURE_LOG")
        if log:
            record = {
                **_running_cell,
                "titles": [ax.get_title() for ax in self.figure.axes],
                "problems": problems,
            }
            with open(log, "a", encoding="utf-8") as file:
                file.write(json.dumps(record) + "\n")
    except Exception as error:  # the audit must never break the learner's figure
        log = os.environ.get("E2E_FIGURE_LOG")
        if log:
            with open(log, "a", encoding="utf-8") as file:
                file.write(json.dumps({"audit_error": repr(error)}) + "\n")
    return _print_figure(self, *args, **kwargs)


matplotlib.backend_bases.FigureCanvasBase.print_figure = _audited_print_figure
try:
    from IPython import get_ipython

    get_ipython().events.register("pre_run_cell", _remember_cell)
except (ImportError, AttributeError):  # not in IPython (e.g. loaded by a unit test)
    pass
