"""Explorers: a figure with sliders that the learner moves in the live notebook (01, 05).

A learner on Binder has a kernel, so a figure can answer a question as it is asked: what does
gradient descent do at this step size, and at that one? :func:`explore` takes a function that
draws the figure for given values (NumPy only, so that it redraws as fast as a slider moves)
and controls (ipywidgets sliders, drop-downs), and shows both: every change redraws the figure
as a PNG in place.

Readers of the website and of a notebook that has not run have no kernel, so the same output
also carries the figure at the controls' first values as a plain PNG. JupyterLab shows the live
widget while a kernel runs it; ``tools/execute_notebooks.py`` does not store widget views (they
refer to models of a kernel that is gone), so the stored notebook and the website show the
still image, and the lesson's text says what moving the slider does.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from typing import Any

import matplotlib.pyplot as plt

#: Resolution of an explorer's figure (dots per inch): quick to redraw, sharp on a screen.
EXPLORER_DPI = 80
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def figure_png(figure: plt.Figure) -> bytes:
    """The figure as PNG bytes (no metadata that varies between runs); the figure is closed."""
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", dpi=EXPLORER_DPI, metadata={"Software": None})
    finally:
        plt.close(figure)
    return buffer.getvalue()


class Explorer:
    """Controls above a figure that :attr:`draw` redraws whenever a control changes."""

    def __init__(self, draw: Callable[..., plt.Figure], controls: dict[str, Any]) -> None:
        import ipywidgets  # the live notebook's dependency only: the library imports without it

        if not controls:
            raise ValueError("explore() needs at least one control, e.g. h=FloatSlider(...).")
        not_widgets = [name for name, c in controls.items() if not hasattr(c, "observe")]
        if not_widgets:
            raise TypeError(
                f"controls {not_widgets} are not ipywidgets: pass e.g. "
                "h=ipywidgets.FloatSlider(value=0.1, min=0.01, max=0.6, step=0.01)."
            )
        self.draw = draw
        self.controls = controls
        self.redraws = 0
        self.image = ipywidgets.Image(value=self._png(), format="png")
        self.still_png = self.image.value
        for control in controls.values():
            control.observe(self._redraw, names="value")
        self.widget = ipywidgets.VBox([*controls.values(), self.image])

    def values(self) -> dict[str, Any]:
        return {name: control.value for name, control in self.controls.items()}

    def _png(self) -> bytes:
        figure = self.draw(**self.values())
        if not isinstance(figure, plt.Figure):
            raise TypeError(
                f"draw(...) returned {type(figure).__name__}: return the matplotlib Figure it "
                "drew (fig, ax = plt.subplots(...); ...; return fig)."
            )
        return figure_png(figure)

    def _redraw(self, _change: dict) -> None:
        self.image.value = self._png()
        self.redraws += 1

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, Any]:
        names = ", ".join(self.controls)
        bundle = {
            "text/plain": f"Explorer ({names}): move the controls to redraw the figure.",
            "image/png": base64.b64encode(self.still_png).decode("ascii"),
        }
        # The view Jupyter's widget manager renders: the widget's model, in the protocol
        # version ipywidgets 8 speaks (what the widget's own display would send).
        bundle[WIDGET_VIEW] = {
            "version_major": 2,
            "version_minor": 0,
            "model_id": self.widget.model_id,
        }
        return bundle


def explore(draw: Callable[..., plt.Figure], **controls: Any) -> Explorer:
    """A figure the learner redraws by moving controls: ``explore(draw, h=FloatSlider(...))``.

    ``draw(**values)`` draws the figure for the controls' current values and returns it; keep
    it in NumPy so that it follows the slider. Display the result (last line of a cell).
    """
    return Explorer(draw, controls)
