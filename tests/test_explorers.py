"""explorers.explore: controls that redraw a figure live, and a still PNG for the website."""

from __future__ import annotations

from course_lib.explorers import WIDGET_VIEW, explore
from course_lib.landscapes import Quadratic, gradient_descent

import ipywidgets
import matplotlib.pyplot as plt
import numpy as np
import pytest

BOWL = Quadratic.diagonal()


def _draw(h):
    figure, ax = plt.subplots(figsize=(3, 2))
    path = gradient_descent(BOWL, [-5.0, -2.0], h, 10)
    ax.plot(*path.T, label=f"h = {h}")
    ax.set(xlim=(-6, 6), ylim=(-3, 3), title="bowl", xlabel="x", ylabel="y")
    return figure


def test_moving_a_control_redraws_the_figure():
    slider = ipywidgets.FloatSlider(value=0.1, min=0.05, max=0.6, step=0.05)
    explorer = explore(_draw, h=slider)
    still = explorer.image.value
    slider.value = 0.45
    assert explorer.redraws == 1 and explorer.image.value != still
    assert explorer.still_png == still  # what readers without a kernel see: the first values
    assert not plt.get_fignums(), "every drawn figure is closed"


def test_the_output_carries_a_still_png_beside_the_live_widget():
    explorer = explore(_draw, h=ipywidgets.FloatSlider(value=0.1, min=0.05, max=0.6))
    bundle = explorer._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "image/png", WIDGET_VIEW}
    assert bundle["text/plain"] == "Explorer (h): move the controls to redraw the figure."
    assert np.frombuffer(explorer.still_png[:8], dtype=np.uint8).tolist()[1:4] == [80, 78, 71]


def test_bad_input_names_the_fix():
    with pytest.raises(ValueError, match="at least one control"):
        explore(_draw)
    with pytest.raises(TypeError, match="are not ipywidgets"):
        explore(_draw, h=0.1)
    with pytest.raises(TypeError, match="return the matplotlib Figure"):
        explore(lambda h: None, h=ipywidgets.FloatSlider(value=0.1))
