"""A self-contained HTML player for a figure whose lines grow step by step (``plots.animate``).

An optimizer is motion, and a learner reading the website has no kernel: the animation must
play from the page alone, with no request leaving the machine. So the player is one block of
HTML: the still part of the figure (contours, axes, labels, legend) as an embedded PNG, the
moving lines as SVG drawn over it in the same pixel coordinates, and a few lines of JavaScript
that show frame k (a play/pause button and a frame slider). Without JavaScript (a notebook that
JupyterLab does not trust yet, a viewer that strips scripts) the SVG shows the last frame: a
still picture of the whole run, never an empty one.

Everything written is a function of the figure's data, rounded to a tenth of a pixel, so the
same cell gives the same bytes on every run and strict nbval can compare the output. The
element ids derive from a hash of that content, so two players on one page never collide.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from dataclasses import dataclass, field

#: Marker shapes the player draws, as SVG path data for a marker of size 1 centred at 0.
_MARKER_PATHS: dict[str, str] = {
    "o": "M 0.5 0 A 0.5 0.5 0 1 1 -0.5 0 A 0.5 0.5 0 1 1 0.5 0 Z",
    "s": "M -0.5 -0.5 H 0.5 V 0.5 H -0.5 Z",
    "D": "M 0 -0.6 L 0.6 0 L 0 0.6 L -0.6 0 Z",
    "^": "M 0 -0.55 L 0.5 0.4 L -0.5 0.4 Z",
    "x": "M -0.5 -0.5 L 0.5 0.5 M -0.5 0.5 L 0.5 -0.5",
    "+": "M -0.5 0 H 0.5 M 0 -0.5 V 0.5",
    "P": "M -0.5 -0.167 H -0.167 V -0.5 H 0.167 V -0.167 H 0.5 V 0.167 H 0.167 V 0.5 H -0.167 "
    "V 0.167 H -0.5 Z",
    "*": "M 0 -0.55 L 0.13 -0.17 L 0.52 -0.17 L 0.2 0.07 L 0.32 0.45 L 0 0.22 L -0.32 0.45 "
    "L -0.2 0.07 L -0.52 -0.17 L -0.13 -0.17 Z",
}
#: Markers drawn as strokes only (they have no inside to fill).
_STROKED_MARKERS = {"x", "+"}


def supported_markers() -> tuple[str, ...]:
    """The matplotlib marker codes the player can draw."""
    return tuple(_MARKER_PATHS)


@dataclass(frozen=True)
class Track:
    """One moving line: its points in pixels and the frame at which each point appears.

    ``mode`` is ``"grow"`` (a point stays once it has appeared: a trajectory), ``"current"``
    (a point shows only in its own frame: the trial point of the step being taken) or
    ``"still"`` (every point from the first frame: a reference curve drawn on top).
    """

    points: list[tuple[float, float]]
    frames: list[int]
    colour: str
    line_width: float  # pixels; 0 draws no line
    dashes: tuple[float, ...] = ()
    marker: str | None = None
    marker_size: float = 0.0  # pixels
    marker_face: str = "none"
    alpha: float = 1.0
    mode: str = "grow"
    clip: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # x, y, width, height
    label: str = ""

    def __post_init__(self) -> None:
        if len(self.points) != len(self.frames):
            raise ValueError(
                f"track {self.label!r}: {len(self.points)} points but {len(self.frames)} frames"
            )
        if self.mode not in ("grow", "current", "still"):
            raise ValueError(f"mode={self.mode!r} must be 'grow', 'current' or 'still'.")
        if self.marker is not None and self.marker not in _MARKER_PATHS:
            raise ValueError(
                f"marker {self.marker!r} of {self.label!r} cannot be drawn by the player; use one "
                f"of {', '.join(_MARKER_PATHS)}."
            )


@dataclass(frozen=True)
class Player:
    """Everything one animation shows; :meth:`html` writes it."""

    background_png: bytes
    width: int
    height: int
    tracks: list[Track]
    frame_count: int
    frame_ms: int = 150
    caption: str = "step"
    frame_labels: list[str] = field(default_factory=list)

    def element_id(self) -> str:
        """A short id derived from the content: stable across runs, distinct between players."""
        digest = hashlib.sha1(self.background_png)
        digest.update(json.dumps([_track_data(t) for t in self.tracks]).encode())
        return "course-player-" + digest.hexdigest()[:12]

    def html(self) -> str:
        identifier = self.element_id()
        labels = self.frame_labels or [f"{self.caption} {k}" for k in range(self.frame_count)]
        if len(labels) != self.frame_count:
            raise ValueError(f"{len(labels)} frame labels for {self.frame_count} frames")
        image = base64.b64encode(self.background_png).decode("ascii")
        svg = "".join(_track_svg(identifier, index, t) for index, t in enumerate(self.tracks))
        data = json.dumps(
            {
                "frames": self.frame_count,
                "ms": self.frame_ms,
                "labels": labels,
                "tracks": [_track_data(t) for t in self.tracks],
            },
            separators=(",", ":"),
        )
        last = html.escape(labels[-1])
        return _TEMPLATE.format(
            id=identifier,
            width=self.width,
            height=self.height,
            image=image,
            svg=svg,
            data=data,
            last_frame=self.frame_count - 1,
            last_label=last,
        )


def _rounded(value: float) -> float:
    return round(float(value), 1)


def _track_data(track: Track) -> dict:
    """What the script needs to redraw a track: its points, their frames, its mode."""
    return {
        "points": [[_rounded(x), _rounded(y)] for x, y in track.points],
        "frames": [int(f) for f in track.frames],
        "mode": track.mode,
        "line": track.line_width > 0,
        "marker": track.marker is not None,
    }


def _track_svg(identifier: str, index: int, track: Track) -> str:
    """The track in its last frame: a clip rectangle, a polyline and one marker per point."""
    clip_id = f"{identifier}-clip-{index}"
    x, y, width, height = (_rounded(v) for v in track.clip)
    parts = [
        f'<clipPath id="{clip_id}"><rect x="{x}" y="{y}" width="{width}" height="{height}"/>'
        "</clipPath>",
        f'<g clip-path="url(#{clip_id})" opacity="{track.alpha:g}" '
        f'data-track="{index}"><title>{html.escape(track.label)}</title>',
    ]
    last = max(track.frames, default=0)
    hidden_at_end = [track.mode == "current" and frame != last for frame in track.frames]
    shown = [p for p, hidden in zip(track.points, hidden_at_end, strict=True) if not hidden]
    if track.line_width > 0:
        points = " ".join(f"{_rounded(px)},{_rounded(py)}" for px, py in shown)
        dashes = " ".join(f"{d:g}" for d in track.dashes)
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{track.colour}" '
            f'stroke-width="{track.line_width:g}" stroke-linejoin="round"'
            + (f' stroke-dasharray="{dashes}"' if dashes else "")
            + "/>"
        )
    if track.marker is not None:
        path, size = _MARKER_PATHS[track.marker], track.marker_size
        stroked = track.marker in _STROKED_MARKERS
        fill = "none" if stroked else track.marker_face
        stroke_width = 1.5 / size if size else 1.0
        for number, ((px, py), hidden) in enumerate(zip(track.points, hidden_at_end, strict=True)):
            parts.append(
                f'<path data-point="{number}" d="{path}" fill="{fill}" stroke="{track.colour}" '
                f'stroke-width="{stroke_width:.3g}" '
                f'transform="translate({_rounded(px)} {_rounded(py)}) scale({size:g})"'
                + (' display="none"' if hidden else "")
                + "/>"
            )
    parts.append("</g>")
    return "".join(parts)


# The page's script finds its player by id, so several players (and re-runs of a cell) coexist.
# Frame k shows, per track: "grow" the points of frames <= k, "current" those of frame k,
# "still" all of them. Play runs to the end and stops; play again restarts from frame 0.
_TEMPLATE = """<div class="course-player" id="{id}" style="max-width:{width}px">
<div style="position:relative;width:100%">
<img alt="the still part of the figure" style="display:block;width:100%;height:auto"
 src="data:image/png;base64,{image}"/>
<svg viewBox="0 0 {width} {height}" preserveAspectRatio="none"
 style="position:absolute;left:0;top:0;width:100%;height:100%">{svg}</svg>
</div>
<div style="display:flex;align-items:center;gap:0.6em;font:14px sans-serif;margin-top:4px">
<button type="button" data-role="play" disabled>▶ play</button>
<input type="range" data-role="frame" min="0" max="{last_frame}" value="{last_frame}"
 step="1" style="flex:1" aria-label="frame" disabled/>
<span data-role="label">{last_label}</span>
</div>
<script type="application/json" data-role="data">{data}</script>
<script>
(function () {{
  const root = document.getElementById("{id}");
  if (!root || root.dataset.ready) return;
  root.dataset.ready = "1";
  const data = JSON.parse(root.querySelector('[data-role="data"]').textContent);
  const button = root.querySelector('[data-role="play"]');
  const slider = root.querySelector('[data-role="frame"]');
  const label = root.querySelector('[data-role="label"]');
  const groups = root.querySelectorAll("g[data-track]");
  let timer = null;
  function show(k) {{
    data.tracks.forEach(function (track, index) {{
      const group = groups[index];
      const keep = track.frames.map(function (f) {{
        return track.mode === "still" || (track.mode === "grow" ? f <= k : f === k);
      }});
      if (track.line) {{
        const line = group.querySelector("polyline");
        line.setAttribute("points", track.points.filter(function (p, i) {{ return keep[i]; }})
          .map(function (p) {{ return p[0] + "," + p[1]; }}).join(" "));
      }}
      if (track.marker) {{
        group.querySelectorAll("path[data-point]").forEach(function (marker) {{
          marker.style.display = keep[Number(marker.dataset.point)] ? "inline" : "none";
        }});
      }}
    }});
    slider.value = String(k);
    label.textContent = data.labels[k];
    root.dataset.frame = String(k);
  }}
  function stop() {{
    if (timer !== null) clearInterval(timer);
    timer = null;
    button.textContent = "▶ play";
  }}
  button.addEventListener("click", function () {{
    if (timer !== null) {{ stop(); return; }}
    let k = Number(slider.value) >= data.frames - 1 ? 0 : Number(slider.value);
    show(k);
    button.textContent = "❚❚ pause";
    timer = setInterval(function () {{
      k += 1;
      if (k >= data.frames) {{ stop(); return; }}
      show(k);
    }}, data.ms);
  }});
  slider.addEventListener("input", function () {{ stop(); show(Number(slider.value)); }});
  button.disabled = false;
  slider.disabled = false;
  show(data.frames - 1);
}})();
</script>
</div>"""
