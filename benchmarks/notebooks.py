"""Time and memory budget of every notebook (issue: each < 60 s and < 1.0 GB on a 2-core CPU).

Usage: ``python benchmarks/notebooks.py [notebooks/NN_topic.ipynb ...]``

Each notebook runs top to bottom in a fresh kernel, as a learner's "Run All" would. Wall time
covers the cells only (the kernel's start is the same for every notebook); peak memory is the
kernel process's high-water mark of resident memory (VmHWM), read before the kernel shuts down.
Nothing is written back to the notebooks. Prints a markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
SECONDS_BUDGET = 60.0
MEMORY_BUDGET_GB = 1.0


def peak_rss_gb(pid: int) -> float:
    """The process's peak resident set size in GB, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e9
    raise RuntimeError(f"no VmHWM line for process {pid}")


def measure(path: Path) -> tuple[float, float]:
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    with client.setup_kernel():
        pid = client.km.provisioner.process.pid
        started = time.perf_counter()
        for index, cell in enumerate(notebook.cells):
            client.execute_cell(cell, index)
        seconds = time.perf_counter() - started
        peak = peak_rss_gb(pid)
    return seconds, peak


def machine() -> str:
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            ln.split(":", 1)[1].strip()
            for ln in cpuinfo.read_text().splitlines()
            if ln.startswith("model name")
        ]
        model = names[0] if names else model
    return (
        f"{model}, {os.cpu_count()} cores, {platform.system()}, Python {platform.python_version()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path)
    args = parser.parse_args()
    paths = args.paths or sorted((ROOT / "notebooks").glob("*.ipynb"))
    print(f"Machine: {machine()}\n")
    print("| notebook | wall s | peak RSS GB | within budget |")
    print("| --- | ---: | ---: | :---: |")
    for path in paths:
        seconds, peak = measure(path.resolve())
        ok = seconds < SECONDS_BUDGET and peak < MEMORY_BUDGET_GB
        print(f"| {path.name} | {seconds:.1f} | {peak:.2f} | {'yes' if ok else 'NO'} |", flush=True)
    print(f"\nBudgets: {SECONDS_BUDGET:.0f} s and {MEMORY_BUDGET_GB:.1f} GB per notebook.")


if __name__ == "__main__":
    main()
