"""Run kernels offline and audited: the environment that e2e tests give a notebook's kernel.

A :class:`Guard` is a temporary set-up, made by :func:`prepare_guard`, that a test passes to the
processes it starts (nbclient's kernel, or the Jupyter server whose kernels inherit it):

* ``guard_files/`` first on ``PYTHONPATH``: its ``sitecustomize`` refuses every connection and
  name look-up that is not loopback, and logs the attempt (the course promises to run offline);
* a fresh ``IPYTHONDIR`` whose start-up folder holds ``guard_files/figure_audit.py``: every
  figure the notebook shows is checked for axis labels and a title, and problems are logged.

Reading the logs after each notebook tells the test what the notebook tried and showed.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

GUARD_FILES = Path(__file__).resolve().parent / "guard_files"


@dataclass(frozen=True)
class Guard:
    """Where one guarded run writes its logs, and the environment that enables it."""

    env: dict[str, str]
    network_log: Path
    figure_log: Path

    def reset(self) -> None:
        """Empty both logs, before the next notebook."""
        self.network_log.write_text("", encoding="utf-8")
        self.figure_log.write_text("", encoding="utf-8")

    def network_attempts(self) -> list[str]:
        """One line per refused look-up or connection: pid, what, host."""
        return self.network_log.read_text(encoding="utf-8").splitlines()

    def figure_records(self) -> list[dict]:
        """One record per figure shown: its titles and problems (see figure_audit.py)."""
        lines = self.figure_log.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]


def prepare_guard(work_dir: Path) -> Guard:
    """Make the IPython profile and empty logs under ``work_dir``; return the guard."""
    startup = work_dir / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    shutil.copy(GUARD_FILES / "figure_audit.py", startup / "50_figure_audit.py")
    network_log, figure_log = work_dir / "network.log", work_dir / "figures.jsonl"
    python_path = os.pathsep.join(filter(None, [str(GUARD_FILES), os.environ.get("PYTHONPATH")]))
    env = {
        "PYTHONPATH": python_path,
        "IPYTHONDIR": str(work_dir / "ipython"),
        "E2E_NETWORK_LOG": str(network_log),
        "E2E_FIGURE_LOG": str(figure_log),
    }
    guard = Guard(env, network_log, figure_log)
    guard.reset()
    return guard


@contextmanager
def environment(variables: dict[str, str]) -> Iterator[None]:
    """Set ``variables`` in this process's environment (inherited by children), then restore."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
