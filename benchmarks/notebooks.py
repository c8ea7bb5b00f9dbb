"""Time and memory budget of every notebook: each under 60 s and 1.0 GB on a 2-core CPU.

Usage: ``python benchmarks/notebooks.py [notebooks/NN_topic.ipynb ...]``

Each notebook runs top to bottom in a fresh kernel, as a learner's "Run All" would. Wall time
covers the cells only (the kernel's start is the same for every notebook); peak memory is the
kernel process's high-water mark of resident memory (VmHWM), read before the kernel shuts down.
Nothing is written back to the notebooks. Prints a markdown table and writes it to
``docs/results/notebooks.json`` (and its table in docs/benchmarks.md); naming notebooks
re-measures only their rows.
"""

from __future__ import annotations

import course_lib  # noqa: F401  (quiets TensorFlow in this process and its kernels)
from course_lib.studies.results import (
    BenchmarkRun,
    Table,
    load_result,
    machine,
    markdown_table,
)

import argparse
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
SECONDS_BUDGET = 60.0
MEMORY_BUDGET_GB = 1.0
COLUMNS = [("notebook", ""), ("wall s", ".1f"), ("peak RSS GB", ".2f"), ("within budget", "")]


def peak_rss_gb(pid: int) -> float:
    """The process's peak resident set size in GB, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e9
    raise RuntimeError(f"no VmHWM line for process {pid}")


def measure(path: Path) -> tuple[float, float]:
    """Run every cell of ``path`` in a fresh kernel: (seconds, peak GB)."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        # The kernel forwards C-level output to the notebook through a watcher thread; when
        # TensorFlow writes at shutdown, after the kernel's event loop has closed, that thread
        # prints an "Event loop is closed" traceback. Measuring needs no C-level output.
        extra_arguments=["--IPKernelApp.capture_fd_output=False"],
    )
    with client.setup_kernel():
        pid = client.km.provisioner.process.pid
        started = time.perf_counter()
        for index, cell in enumerate(notebook.cells):
            client.execute_cell(cell, index)
        seconds = time.perf_counter() - started
        peak = peak_rss_gb(pid)
    return seconds, peak


def _earlier_rows(keep: set[str]) -> list[list]:
    """Rows of the last result for notebooks that this run does not re-measure."""
    try:
        rows = load_result("notebooks").table("budget").rows
    except FileNotFoundError:
        return []
    return [list(row) for row in rows if row[0] in keep]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path)
    args = parser.parse_args()
    every = sorted((ROOT / "notebooks").glob("*.ipynb"))
    paths = [p.resolve() for p in args.paths] or every
    run = BenchmarkRun(
        "notebooks",
        "benchmarks/notebooks.py",
        "python benchmarks/notebooks.py " + " ".join(p.name for p in args.paths),
    )
    print(f"Machine: {machine()}\n")
    measured = {}
    for path in paths:
        seconds, peak = measure(path)
        within = "yes" if seconds < SECONDS_BUDGET and peak < MEMORY_BUDGET_GB else "NO"
        measured[path.name] = [path.name, round(seconds, 2), round(peak, 3), within]
        print(f"{path.name}: {seconds:.1f} s, {peak:.2f} GB, within budget: {within}", flush=True)
    kept = {p.name for p in every} - set(measured)
    rows = sorted(_earlier_rows(kept) + list(measured.values()))
    table = Table(COLUMNS, rows)
    print("\n" + markdown_table(table))
    print(f"Budgets: {SECONDS_BUDGET:.0f} s and {MEMORY_BUDGET_GB:.1f} GB per notebook.")
    run.write(
        {"budget": table},
        {"seconds_budget": SECONDS_BUDGET, "memory_budget_gb": MEMORY_BUDGET_GB},
    )


if __name__ == "__main__":
    main()
