"""Re-run notebooks in place and store them with clean metadata (``make notebooks``).

Usage: ``python tools/execute_notebooks.py [notebooks/NN_topic.ipynb ...]`` (default: all).

Each notebook runs top to bottom in a fresh kernel from this environment, in ``notebooks/``,
exactly as nbval will re-run it. Execution counts and outputs are kept (nbval compares them);
everything that changes from machine to machine without meaning is dropped: timing metadata,
widget state, the Python patch version. A notebook whose outputs show an absolute path of this
machine, or that raises where it does not say it expects to, is reported and the run fails.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def clean_metadata(notebook: nbformat.NotebookNode) -> None:
    """Keep only the metadata that means something to a reader or to nbval."""
    notebook.metadata = nbformat.from_dict(
        {"kernelspec": KERNELSPEC, "language_info": {"name": "python"}}
    )
    for cell in notebook.cells:
        # Tags (nbval, the website's hide-output) and JupyterLab's collapsed state (a solution's
        # output stored folded, one click away).
        kept = {key: cell.metadata[key] for key in ("tags", "jupyter") if key in cell.metadata}
        cell.metadata = nbformat.from_dict(kept)
        cell.pop("id", None)
    notebook.nbformat, notebook.nbformat_minor = 4, 4


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def drop_widget_views(notebook: nbformat.NotebookNode) -> None:
    """Keep no widget view in the stored outputs: it names a model of a kernel that is gone.

    An explorer's output also carries its figure as a PNG (course_lib.explorers), which then
    shows in JupyterLab before the cell runs and on the website; nbval ignores widget views
    when it compares, so the stored output still matches a re-run.
    """
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            output.get("data", {}).pop(WIDGET_VIEW, None)


def stored_text(notebook: nbformat.NotebookNode) -> str:
    """The notebook as the repository stores it: clean metadata, no widget view, one trailing
    newline (as editors and nbformat-based scripts leave it, so that diffs do not churn)."""
    clean_metadata(notebook)
    drop_widget_views(notebook)
    return nbformat.writes(notebook).rstrip("\n") + "\n"


def machine_paths() -> list[str]:
    """Absolute paths that must never appear in a stored output."""
    return sorted({str(ROOT), str(Path.home()), sys.prefix}, key=len, reverse=True)


def execute(path: Path, timeout: int) -> float:
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
        record_timing=False,
    )
    started = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - started
    text = stored_text(notebook)
    leaked = [p for p in machine_paths() if p in text and p != "/"]
    if leaked:
        raise SystemExit(
            f"{path.name}: outputs contain machine paths {leaked}; print relative ones."
        )
    path.write_text(text, encoding="utf-8")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks to run (default: all)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell")
    args = parser.parse_args()
    paths = args.paths or sorted(NOTEBOOKS.glob("*.ipynb"))
    for path in paths:
        if path.suffix != ".ipynb" or not path.exists():
            raise SystemExit(f"{path}: not an existing .ipynb file.")
        seconds = execute(path.resolve(), args.timeout)
        print(f"{path.name}: executed in {seconds:.1f} s")


if __name__ == "__main__":
    main()
