"""Result files: the numbers of a long run, written once by its script, read by docs and notebooks.

A benchmark or a full study runs for minutes; a notebook cannot repeat it and must not paste its
numbers by hand. So the script writes a small JSON file under ``docs/results/`` and every reader
takes the numbers from there:

* ``docs/*.md`` hold each table between two markers, ``<!-- result: NAME TABLE -->`` and
  ``<!-- /result -->``; :func:`update_docs` rewrites those blocks from the files, and
  ``tests/test_docs.py`` fails when a committed table and its file disagree;
* a notebook calls :func:`load_result` and makes its claims against the rows.

A table stores raw values (numbers or text) with one format per column, so the docs show rounded
numbers and a notebook compares the unrounded ones.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "RESULTS_DIR",
    "BenchmarkRun",
    "Result",
    "Table",
    "load_average",
    "load_result",
    "machine",
    "markdown_table",
    "render_markdown",
    "update_docs",
    "write_result",
]

ROOT = Path(__file__).resolve().parents[2]
DOCS_DIR = ROOT / "docs"
RESULTS_DIR = DOCS_DIR / "results"

_BLOCK = re.compile(
    r"(<!-- result: (?P<name>[a-z0-9_]+) (?P<table>[a-z0-9_]+) -->\n)"
    r"(?P<body>.*?)(<!-- /result -->)",
    re.DOTALL,
)


@dataclass(frozen=True)
class Table:
    """Columns as ``(header, format spec)`` pairs and rows of raw values.

    The format spec is applied to numbers (``".3f"``, ``",.0f"``, ``".2f×"``: text after the
    spec is a unit); an empty spec prints the value as it is. ``None`` prints as an empty cell.
    """

    columns: Sequence[tuple[str, str]]
    rows: Sequence[Sequence[Any]]

    def __post_init__(self) -> None:
        width = len(self.columns)
        for index, row in enumerate(self.rows):
            if len(row) != width:
                raise ValueError(
                    f"row {index} has {len(row)} values but the table has {width} columns "
                    f"({[header for header, _ in self.columns]})."
                )

    @property
    def headers(self) -> list[str]:
        return [header for header, _ in self.columns]

    def records(self) -> list[dict[str, Any]]:
        """The rows as ``{header: raw value}`` dictionaries (what a notebook claims against)."""
        return [dict(zip(self.headers, row, strict=True)) for row in self.rows]

    def column(self, header: str) -> list[Any]:
        """One column's raw values, top to bottom."""
        if header not in self.headers:
            raise KeyError(f"no column {header!r}; the columns are {self.headers}.")
        index = self.headers.index(header)
        return [row[index] for row in self.rows]

    def to_json(self) -> dict[str, Any]:
        return {"columns": [list(c) for c in self.columns], "rows": [list(r) for r in self.rows]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Table:
        return cls([tuple(c) for c in data["columns"]], [list(r) for r in data["rows"]])


@dataclass(frozen=True)
class Result:
    """One result file: where it came from, its tables, and any single values."""

    name: str
    script: str
    command: str
    machine: str
    measured_on: str
    tables: Mapping[str, Table]
    values: Mapping[str, Any]

    def table(self, name: str) -> Table:
        if name not in self.tables:
            raise KeyError(
                f"result {self.name!r} has no table {name!r}; it has {list(self.tables)}."
            )
        return self.tables[name]


def machine() -> str:
    """The CPU, its thread count and the versions that matter, as a result file records them."""
    model = platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            names = [line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line]
        model = names[0] if names else model
    except OSError:
        pass
    versions = []
    for package in ("tensorflow-cpu", "tensorflow", "keras", "jax"):
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(
        [f"{model}", f"{os.cpu_count()} CPU threads", f"Python {platform.python_version()}"]
        + versions
    )


def load_average() -> float | None:
    """The 1-minute load average (None where the OS has none): how busy the cores were.

    Timings on a shared machine depend on it, so benchmarks record it before and after a run.
    """
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def _format_cell(value: Any, spec: str) -> str:
    if value is None:
        return ""
    if not spec or isinstance(value, str | bool):
        return str(value)
    match = re.fullmatch(r"([^a-zA-Z%]*[a-zA-Z%]?)(.*)", spec)
    number_spec, unit = (match.group(1), match.group(2)) if match else (spec, "")
    return f"{value:{number_spec}}{unit}"


def _escape_pipes(text: str) -> str:
    """A cell's text with its pipes escaped: "|mean|" would otherwise split the cell."""
    return text.replace("|", "\\|")


def markdown_table(table: Table) -> str:
    """The table as GitHub markdown, each number in its column's format."""
    headers = (_escape_pipes(h) for h in table.headers)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(table.columns)]
    for row in table.rows:
        cells = (_format_cell(v, spec) for v, (_, spec) in zip(row, table.columns, strict=True))
        lines.append("| " + " | ".join(_escape_pipes(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def write_result(
    name: str,
    *,
    script: str,
    command: str,
    machine: str,
    tables: Mapping[str, Table],
    values: Mapping[str, Any] | None = None,
    directory: Path = RESULTS_DIR,
) -> Path:
    """Write ``directory/NAME.json`` (sorted keys, so a re-run's diff shows only what moved)."""
    if not re.fullmatch(r"[a-z0-9_]+", name):
        raise ValueError(f"name={name!r}: use lower-case letters, digits and underscores.")
    data = {
        "name": name,
        "script": script,
        "command": command,
        "machine": machine,
        "measured_on": date.today().isoformat(),
        "tables": {key: table.to_json() for key, table in tables.items()},
        "values": dict(values or {}),
    }
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    return path


class BenchmarkRun:
    """One run of a benchmark script, from its start to its result file and docs tables.

    Every result file must say how long its run took and how busy the cores were (other
    processes on a shared machine inflate timings, not memory): starting the clock and reading
    the load average here, at the start, and again in :meth:`write` keeps the scripts from
    each recording a different subset of that.
    """

    def __init__(
        self,
        name: str,
        script: str,
        command: str | None = None,
        *,
        directory: Path = RESULTS_DIR,
        docs: Iterable[Path] | None = None,
    ) -> None:
        self.name = name
        self.script = script
        self.command = command or " ".join(["python", script, *sys.argv[1:]])
        self.directory = directory
        self.docs = docs
        self._started = time.perf_counter()
        self._load_before = load_average()

    def write(self, tables: Mapping[str, Table], values: Mapping[str, Any] | None = None) -> Path:
        """Write the result file (with wall time and load averages) and render its docs tables.

        What was recorded stays in :attr:`recorded`, for the script's closing summary.
        """
        recorded = {
            **(values or {}),
            "seconds": round(time.perf_counter() - self._started, 1),
            "load_average_before": self._load_before,
            "load_average_after": load_average(),
        }
        self.recorded = recorded
        path = write_result(
            self.name,
            script=self.script,
            command=self.command,
            machine=machine(),
            tables=tables,
            values=recorded,
            directory=self.directory,
        )
        update_docs([self.name], paths=self.docs, directory=self.directory)
        return path


def load_result(name: str, directory: Path = RESULTS_DIR) -> Result:
    """Read ``directory/NAME.json``; a missing file names the script that writes it."""
    path = directory / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(
            f"no result file {path.name} in {directory}: run the benchmark that writes it "
            f"(benchmarks/*.py, see docs/benchmarks.md) from a checkout of the course."
        )
    data = json.loads(path.read_text())
    return Result(
        name=data["name"],
        script=data["script"],
        command=data["command"],
        machine=data["machine"],
        measured_on=data["measured_on"],
        tables={key: Table.from_json(value) for key, value in data["tables"].items()},
        values=data.get("values", {}),
    )


def render_markdown(
    text: str, directory: Path = RESULTS_DIR, names: Iterable[str] | None = None
) -> str:
    """``text`` with every marked block (of ``names``, or all) rendered from its result file."""
    only = None if names is None else set(names)

    def replace(match: re.Match) -> str:
        if only is not None and match["name"] not in only:
            return match.group(0)
        table = load_result(match["name"], directory).table(match["table"])
        return match.group(1) + markdown_table(table) + match.group(5)

    return _BLOCK.sub(replace, text)


def marked_blocks(text: str) -> Iterable[tuple[str, str, str]]:
    """``(name, table, body)`` of each marked block in ``text``."""
    for match in _BLOCK.finditer(text):
        yield match["name"], match["table"], match["body"]


def update_docs(
    names: Iterable[str] | None = None,
    paths: Iterable[Path] | None = None,
    directory: Path = RESULTS_DIR,
) -> list[Path]:
    """Rewrite the marked tables of ``docs/*.md`` from the result files; return what changed.

    A benchmark passes its own result's name, so that it never needs the other files.
    """
    changed = []
    for path in sorted(DOCS_DIR.glob("*.md")) if paths is None else paths:
        text = path.read_text()
        rendered = render_markdown(text, directory, names)
        if rendered != text:
            path.write_text(rendered)
            changed.append(path)
    return changed
