"""Drive JupyterLab's page as a learner does, and read back what the page shows (e2e tests).

Actions go through the UI: links clicked in the rendered index, the *Edit* and *Run* menus.
Reading uses ``window.jupyterapp`` (the server runs with ``expose_app_in_browser``): the notebook
model the page renders gives each output's type exactly, which the DOM alone does not (an error
and a stderr stream render alike). Images are read from the DOM, since rendering is the point.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import Page

#: Chromium's switches for a headless, quiet browser that never reaches the internet itself.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 900}

_CURRENT = "window.jupyterapp && window.jupyterapp.shell.currentWidget"

_NOTEBOOK_READY = f"""(name) => {{
  const w = {_CURRENT};
  if (!w || !w.context || !w.context.isReady || !w.context.path.endsWith(name)) return false;
  const kernel = w.sessionContext.session && w.sessionContext.session.kernel;
  return !!kernel && kernel.status === 'idle' && w.content.widgets.length > 0;
}}"""

_RUN_FINISHED = f"""() => {{
  const w = {_CURRENT};
  const kernel = w.sessionContext.session && w.sessionContext.session.kernel;
  if (!kernel || kernel.status !== 'idle') return false;
  const prompts = [...w.node.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]
    .map(p => p.textContent);
  if (prompts.some(p => p.includes('*'))) return false;
  const cells = [...Array(w.content.model.cells.length).keys()]
    .map(i => w.content.model.cells.get(i)).filter(c => c.type === 'code');
  const outputs = c => [...Array(c.outputs.length).keys()].map(j => c.outputs.get(j));
  const executed = cells.every(
    c => c.executionCount !== null || c.sharedModel.source.trim() === '');
  const failed = cells.some(c => outputs(c).some(o => o.type === 'error'));
  return executed || failed;
}}"""

_READ_CELLS = f"""() => {{
  const w = {_CURRENT};
  const result = [];
  w.content.widgets.forEach((cell, index) => {{
    const model = cell.model;
    if (model.type !== 'code') return;
    const outputs = [...Array(model.outputs.length).keys()].map(j => model.outputs.get(j));
    const images = [...cell.node.querySelectorAll('.jp-OutputArea-output img')];
    const timing = model.getMetadata('execution') || {{}};
    result.push({{
      index: index,
      source: model.sharedModel.source,
      execution_count: model.executionCount,
      tags: model.getMetadata('tags') || [],
      output_types: outputs.map(o => o.type),
      errors: outputs.filter(o => o.type === 'error')
        .map(o => o.toJSON().ename + ': ' + o.toJSON().evalue),
      stream_lines: outputs.filter(o => o.type === 'stream')
        .map(o => String(o.toJSON().text).split('\\n').filter(s => s.trim()).length)
        .reduce((a, b) => a + b, 0),
      images_rendered: images.filter(i => i.complete && i.naturalWidth > 0
        && i.getBoundingClientRect().width > 0).length,
      started: timing['iopub.execute_input'] || null,
      finished: timing['shell.execute_reply'] || null,
    }});
  }});
  return result;
}}"""

_SCROLLER = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer"


@dataclass
class CodeCellView:
    """One code cell as the page shows it after Run All."""

    index: int
    source: str
    execution_count: int | None
    tags: list[str]
    output_types: list[str]
    errors: list[str]
    stream_lines: int
    images_rendered: int
    started: str | None = None
    finished: str | None = None
    seconds: float | None = field(default=None)

    @property
    def first_line(self) -> str:
        return self.source.strip().splitlines()[0] if self.source.strip() else ""


def wait_for_notebook(page: Page, name: str, timeout_s: float) -> None:
    """Wait until notebook ``name`` is the current tab, loaded, with an idle kernel."""
    page.wait_for_function(_NOTEBOOK_READY, arg=name, timeout=timeout_s * 1000)


def open_link_in_notebook(page: Page, target: str) -> None:
    """Click the first rendered markdown link in the current notebook that points to ``target``."""
    link = page.locator(
        f'.jp-NotebookPanel:not(.lm-mod-hidden) .jp-MarkdownCell a[href*="/{target}?"]'
    ).first
    link.click()


def choose_menu(page: Page, menu: str, item: str) -> None:
    """Open a menu of the menu bar and click one of its items, by their visible names."""
    page.get_by_role("menuitem", name=menu, exact=True).click()
    page.get_by_role("menuitem", name=item, exact=True).click()


def run_all_cells(page: Page, timeout_s: float) -> None:
    """Clear every output, run every cell from the *Run* menu, wait until the kernel is done."""
    choose_menu(page, "Edit", "Clear Outputs of All Cells")
    choose_menu(page, "Run", "Run All Cells")
    page.wait_for_function(_RUN_FINISHED, timeout=timeout_s * 1000, polling=500)


def read_code_cells(page: Page) -> list[CodeCellView]:
    """What each code cell of the current notebook shows."""
    views = [CodeCellView(**raw) for raw in page.evaluate(_READ_CELLS)]
    for view in views:
        if view.started and view.finished:
            view.seconds = _seconds_between(view.started, view.finished)
    return views


def _seconds_between(start: str, end: str) -> float:
    from datetime import datetime

    def parse(stamp: str) -> datetime:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))

    return (parse(end) - parse(start)).total_seconds()


def screenshot_notebook(page: Page, path_stem: Path, max_height: int = 12000) -> list[Path]:
    """Screenshot the whole current notebook: the viewport grows to show it in one image, or
    the notebook is scrolled through in as many images as needed. Returns the files written."""
    scroller = page.locator(_SCROLLER).first
    total = scroller.evaluate("e => e.scrollHeight")
    chrome = VIEWPORT["height"] - scroller.evaluate("e => e.clientHeight")
    height = min(total + chrome, max_height)
    page.set_viewport_size({"width": VIEWPORT["width"], "height": height})
    # JupyterLab lays the panel out again after the resize: wait for the taller scroll area.
    page.wait_for_function(
        "([selector, wanted]) => document.querySelector(selector).clientHeight >= wanted",
        arg=[_SCROLLER, height - chrome - 5],
        timeout=10_000,
    )
    visible = scroller.evaluate("e => e.clientHeight")
    shots = max(1, math.ceil(total / max(visible, 1)))
    paths = []
    for number in range(shots):
        scroller.evaluate("(e, top) => { e.scrollTop = top; }", number * visible)
        page.wait_for_timeout(300)
        suffix = "" if shots == 1 else f"-{number + 1}"
        path = path_stem.with_name(f"{path_stem.name}{suffix}.png")
        page.screenshot(path=str(path))
        paths.append(path)
    page.set_viewport_size(VIEWPORT)
    return paths


_EXPLORER = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output .widget-vbox"

# What an image shows, not where: a view may render the same picture under a new blob address.
_IMAGE_DIGEST = """async (image) => {
  const bytes = await (await fetch(image.src)).arrayBuffer();
  const digest = await crypto.subtle.digest('SHA-256', bytes);
  return [...new Uint8Array(digest)].map(b => b.toString(16).padStart(2, '0')).join('');
}"""


def move_explorer_sliders(page: Page, timeout_s: float = 15.0) -> list[dict]:
    """Move the first slider of each explorer (course_lib.explorers) and see its figure redraw.

    Returns one record per explorer: a digest of the figure's image before and after three
    presses of the right arrow key on the slider's handle, as a learner would move it (the
    "after" is read until it differs or ``timeout_s`` has passed).
    """
    records = []
    explorers = page.locator(_EXPLORER).filter(has=page.locator(".widget-image"))
    for number in range(explorers.count()):
        explorer = explorers.nth(number)
        explorer.scroll_into_view_if_needed()
        image = explorer.locator(".widget-image").first
        before = image.evaluate(_IMAGE_DIGEST)
        explorer.locator(".noUi-handle").first.focus()
        for _ in range(3):
            page.keyboard.press("ArrowRight")
        after, deadline = before, time.monotonic() + timeout_s
        while after == before and time.monotonic() < deadline:
            page.wait_for_timeout(250)
            after = image.evaluate(_IMAGE_DIGEST)
        records.append({"before": before, "after": after})
    return records
