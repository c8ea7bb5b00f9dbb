"""One notebook's Run All in JupyterLab, recorded: what e2e/conftest.py's fixtures run.

:func:`run_in_browser` opens the index, follows its link to a lesson, clears and re-runs every
cell from the *Run* menu, and returns a :class:`BrowserRun`: what the page shows (executed cells,
error outputs, rendered images, screenshots) and what the kernel did (the network it tried to
reach and an audit of each figure it drew, from e2e/offline_guard.py, and its peak resident
memory, read from /proc with benchmarks/notebooks.py's own function before the kernel stops).
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
from course_map import INDEX, NOTEBOOKS, ROOT
from jupyterlab_page import (
    CodeCellView,
    move_explorer_sliders,
    open_link_in_notebook,
    read_code_cells,
    run_all_cells,
    screenshot_notebook,
    wait_for_notebook,
)
from lab_server import LabServer
from offline_guard import Guard

OPEN_TIMEOUT_S = 120
RUN_TIMEOUT_S = 240


def _load_budget_benchmark():
    """benchmarks/notebooks.py: its VmHWM reading and its budgets, reused as they are."""
    path = ROOT / "benchmarks" / "notebooks.py"
    spec = importlib.util.spec_from_file_location("notebook_budget_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


budget = _load_budget_benchmark()


@dataclass
class BrowserRun:
    """What one notebook's Run All in the browser showed and cost."""

    cells: list[CodeCellView]
    stored_images: list[int]  # per code cell: image outputs stored in the notebook file
    screenshots: list[Path]
    seconds: float  # from the Run All click until the kernel is idle
    peak_rss_gb: float
    network_attempts: list[str]
    figures: list[dict]  # one audit record per figure rendered by the kernel
    explorers: list[dict]  # per explorer: its figure's address before and after a slider move


def stored_images(name: str) -> list[int]:
    """Per code cell of the notebook file, how many image outputs it stores."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)

    def is_image(output) -> bool:
        return any(kind.startswith("image/") for kind in output.get("data", {}))

    return [
        sum(1 for output in cell.get("outputs", []) if is_image(output))
        for cell in notebook.cells
        if cell.cell_type == "code"
    ]


def _kernel_of(lab: LabServer, name: str) -> str:
    for session in lab.api("sessions"):
        if session["path"].endswith(name):
            return session["kernel"]["id"]
    raise LookupError(f"no kernel session for {name}")


def run_in_browser(
    context, lab: LabServer, guard: Guard, name: str, artifacts: Path, via_index: bool = True
) -> BrowserRun:
    """Open the index, follow its link to ``name``, run all cells, record, shut the kernel down.

    ``via_index=False`` opens ``name`` directly (the self-test's notebook is not in the index).
    """
    guard.reset()
    page = context.new_page()
    first = INDEX.name if via_index else name
    step = f"opening {first}"
    try:
        page.goto(lab.url(f"lab/tree/notebooks/{first}?reset"))
        wait_for_notebook(page, first, OPEN_TIMEOUT_S)
        if name != first:
            step = f"following the index's link to {name}"
            open_link_in_notebook(page, name)
            wait_for_notebook(page, name, OPEN_TIMEOUT_S)
            # The index's kernel is not needed any more: free its memory, as on Binder.
            lab.api(f"kernels/{_kernel_of(lab, INDEX.name)}", method="DELETE")
        kernel_pid = lab.kernel_pid(_kernel_of(lab, name))
        step = f"Run All Cells in {name}"
        started = time.perf_counter()
        run_all_cells(page, RUN_TIMEOUT_S)
        seconds = time.perf_counter() - started
        peak = budget.peak_rss_gb(kernel_pid)
        step = f"reading and photographing {name}"
        cells = read_code_cells(page)
        step = f"moving the explorers' sliders in {name}"
        explorers = move_explorer_sliders(page)
        screenshots = screenshot_notebook(page, artifacts / Path(name).stem)
    except Exception as error:
        failure = artifacts / f"{Path(name).stem}-FAILED.png"
        page.screenshot(path=str(failure))
        raise AssertionError(f"{step}: {error} (page at failure: {failure})") from error
    finally:
        lab.shut_down_all_kernels()
        page.close()
    return BrowserRun(
        cells=cells,
        stored_images=stored_images(name) if via_index else [],
        screenshots=screenshots,
        seconds=seconds,
        peak_rss_gb=peak,
        network_attempts=guard.network_attempts(),
        figures=guard.figure_records(),
        explorers=explorers,
    )
