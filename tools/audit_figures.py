"""Run notebooks as the e2e tests do (offline, every figure audited) and print what the audit finds.

Usage: ``python tools/audit_figures.py notebooks/NN_topic.ipynb [...]``

The browser pass of ``make e2e`` holds every figure to e2e/guard_files/figure_audit.py (labels,
titles, nothing hidden, equal aspect for landscapes, the course's method colours, text of 9 pt
or more). This runs the same audit without a browser, on a copy of each notebook (the stored
file is not touched), so that a figure can be fixed before the e2e run. Exits 1 when a figure
has a problem.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "e2e"))

from offline_guard import environment, prepare_guard  # noqa: E402


def audit(path: Path, work_dir: Path) -> list[str]:
    """The problems of each figure that ``path`` draws, as printable lines."""
    guard = prepare_guard(work_dir)
    notebook = nbformat.read(path, as_version=4)
    with environment(guard.env):
        NotebookClient(
            notebook,
            timeout=600,
            kernel_name="python3",
            resources={"metadata": {"path": str(ROOT / "notebooks")}},
        ).execute()
    lines = []
    for record in guard.figure_records():
        if "audit_error" in record:
            lines.append(f"audit error: {record['audit_error']}")
        for problem in record.get("problems", []):
            lines.append(f"cell {record['first_line']!r}: {problem}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path)
    found = False
    for path in parser.parse_args().paths:
        with tempfile.TemporaryDirectory() as work_dir:
            problems = audit(path.resolve(), Path(work_dir))
        print(f"{path.name}: {len(problems)} problem(s)")
        for line in problems:
            print(f"  {line}")
        found = found or bool(problems)
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
