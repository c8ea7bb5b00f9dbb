"""Print pins from pyproject.toml for shell scripts (the Makefile and binder/postBuild).

Usage: ``python tools/pins.py no-deps`` prints the requirements that are installed with
``pip install --no-deps`` (``[tool.course_lib] no-deps``), one per line. Keeping them in
pyproject.toml keeps every pin in one file.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
TABLES = {"no-deps": ("tool", "course_lib", "no-deps")}


def pins(name: str) -> list[str]:
    if name not in TABLES:
        raise SystemExit(f"unknown pin list {name!r}; choose one of {sorted(TABLES)}")
    table = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    for key in TABLES[name]:
        table = table[key]
    return list(table)


if __name__ == "__main__":
    print("\n".join(pins(sys.argv[1] if len(sys.argv) > 1 else "")))
