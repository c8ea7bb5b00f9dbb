"""Drop machine-specific metadata from notebooks, keeping outputs and execution counts.

Usage: ``python tools/clean_notebooks.py notebooks/NN_topic.ipynb ...`` (e.g. from a pre-commit
hook).
nbval compares stored outputs, so unlike nbstripout this keeps them; it applies the same
cleaning as ``make notebooks`` (tools/execute_notebooks.py) without re-running anything.
Exits 1 when it changed a file, so pre-commit shows the change before it is committed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from execute_notebooks import stored_text  # noqa: E402


def main(paths: list[str]) -> int:
    changed = 0
    for name in paths:
        path = Path(name)
        before = path.read_text(encoding="utf-8")
        after = stored_text(nbformat.reads(before, as_version=4))
        if after != before:
            path.write_text(after, encoding="utf-8")
            print(f"cleaned {path}")
            changed += 1
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
