"""plots.animate: a figure's lines played step by step in a self-contained HTML player."""

from __future__ import annotations

from course_lib.landscapes import Quadratic, gradient_descent
from course_lib.plots import animate, plot_trajectories

import io
import json
import re

import matplotlib.pyplot as plt
import numpy as np
import pytest

BOWL = Quadratic.diagonal()
START = [-5.0, -2.0]


def _figure(steps: int = 12):
    figure, ax = plt.subplots(figsize=(5, 3))
    paths = {
        "gradient descent": gradient_descent(BOWL, START, 0.1, steps),
        "reference flow": BOWL.exact_flow(START, np.linspace(0.0, 0.1 * steps, 80)),
    }
    plot_trajectories(BOWL, paths, ax=ax, title="bowl")
    return figure, ax


def _markers(html: str, track: int) -> list[bool]:
    """Whether each marker of a track shows in the stored (last) frame."""
    group = re.search(rf'<g [^>]*data-track="{track}">(.*?)</g>', html, re.S).group(1)
    return ['display="none"' not in m for m in re.findall(r"<path data-point[^>]*>", group)]


def test_a_trajectory_grows_one_point_per_frame_and_a_reference_stands_still():
    figure, _ = _figure(steps=12)
    animation = animate(figure)
    tracks = animation.player.tracks
    assert animation.frame_count == 13  # the start and twelve steps
    assert [t.mode for t in tracks] == ["grow", "still"]  # the reference last: on top
    assert tracks[0].frames == list(range(13)) and tracks[0].colour == "#1f77b4"
    assert not plt.fignum_exists(figure.number), "the animation replaces the figure"


def test_the_player_is_the_same_bytes_every_time_and_plays_without_the_network():
    first, second = (animate(_figure()[0])._repr_html_() for _ in range(2))
    assert first == second
    assert "http" not in first.replace("http://www.w3.org", "")  # nothing to fetch
    assert 'data-role="play"' in first and 'data-role="frame"' in first
    assert len(first) < 200_000


def test_without_a_script_the_last_frame_shows_and_a_current_point_only_in_its_frame():
    figure, ax = _figure(steps=4)
    path = gradient_descent(BOWL, START, 0.1, 4)
    (trial,) = ax.plot(*path[1:].T, "o", mfc="none", label="trial point")
    animation = animate(figure, lines=[ax.lines[0]], current=[trial])
    html = animation._repr_html_()
    assert _markers(html, 0) == [True] * 5  # every step of the trajectory
    assert _markers(html, 1) == [False, False, False, True]  # the trial point of the last step


def test_the_lines_sit_on_the_background_where_a_layout_engine_moves_the_axes():
    # Constrained layout with an equal-aspect panel and a legend outside moves the axes at each
    # of its first draws: the lines are measured where the saved background has its axes.
    figure, ax = plt.subplots(figsize=(8, 5.4), constrained_layout=True)
    ax.set_facecolor("#ff0000")  # the axes' area, to find in the background's pixels
    ax.spines[:].set_visible(False)
    for number in range(4):
        ax.plot([-1.5, 1.5], [-0.9, 0.9 - number / 10], label=f"a line with a long label, {number}")
    ax.set(xlim=(-1.5, 1.5), ylim=(-0.9, 0.9), aspect="equal", xlabel="x", ylabel="y", title="t")
    figure.legend(loc="outside lower center", ncol=3, fontsize=9)
    player = animate(figure).player
    pixels = plt.imread(io.BytesIO(player.background_png))[..., :3]
    rows, columns = np.nonzero(np.all(np.isclose(pixels, [1.0, 0.0, 0.0], atol=0.02), axis=-1))
    red = (columns.min(), rows.min(), np.ptp(columns) + 1, np.ptp(rows) + 1)  # x, y, w, h
    assert np.allclose(player.tracks[0].clip, red, atol=1.0), (player.tracks[0].clip, red)


def test_a_marker_passed_as_a_line_stays_from_the_first_frame_drawn_over_the_trajectory():
    # A minimum the trajectory ends on, kept visible over it (matplotlib's filled plus, "P").
    figure, ax = _figure(steps=4)
    (minimum,) = ax.plot(0.0, 0.0, "kP", ms=10, label="flat minimum")
    animation = animate(figure, lines=[ax.lines[0], minimum], frames_of={minimum: [0]})
    tracks = [track.label for track in animation.player.tracks]
    assert tracks.index("flat minimum") > tracks.index("gradient descent")  # drawn after it
    html = animation._repr_html_()
    group = re.search(r"<title>flat minimum</title>(.*?)</g>", html, re.S).group(1)
    (marker,) = re.findall(r"<path data-point[^>]*>", group)
    assert 'display="none"' not in marker and 'fill="#000000"' in marker  # shown, filled
    data = json.loads(re.search(r'data-role="data">(.*?)</script>', html).group(1))
    assert data["tracks"][tracks.index("flat minimum")]["frames"] == [0]  # from the first frame


def test_frames_of_places_points_in_other_frames():
    figure, ax = _figure(steps=4)
    (rejected,) = ax.plot([-1.0, -2.0], [0.5, 0.5], "x", label="rejected try")
    animation = animate(figure, lines=[ax.lines[0], rejected], frames_of={rejected: [2, 2]})
    assert animation.player.tracks[1].frames == [2, 2] and animation.frame_count == 5


def test_bad_input_names_the_problem():
    figure, ax = _figure(steps=4)
    with pytest.raises(ValueError, match="one frame per point"):
        animate(figure, frames_of={ax.lines[0]: [0, 1]})
    figure, ax = plt.subplots()
    ax.plot([0.0], [0.0], "o")
    with pytest.raises(ValueError, match="no line to animate"):
        animate(figure)
    figure, ax = plt.subplots()
    ax.plot([0.0, 1.0], [0.0, 1.0], marker="h", label="hexagons")
    with pytest.raises(ValueError, match="cannot be drawn by the player"):
        animate(figure)
    plt.close("all")
