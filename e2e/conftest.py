"""One learner's pass through the course, shared by every end-to-end test (``make e2e``).

A session starts JupyterLab (e2e/lab_server.py) and Chromium once. The first test that asks for
a notebook runs it in the browser (e2e/browser_pass.py) and keeps the record; the other tests
read that record, so each notebook runs once however many properties are checked.

Nothing here imports TensorFlow; the notebooks' kernels do, in their own processes. Screenshots
go to ``test-artifacts/e2e/`` (ignored by git).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from browser_pass import BrowserRun, run_in_browser
from course_map import NOTEBOOKS, ROOT
from jupyterlab_page import CHROMIUM_ARGS, VIEWPORT
from lab_server import running_lab
from offline_guard import Guard, prepare_guard

ARTIFACTS = ROOT / "test-artifacts" / "e2e"
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def guard(tmp_path_factory) -> Guard:
    return prepare_guard(tmp_path_factory.mktemp("guard"))


@pytest.fixture(scope="session")
def lab(tmp_path_factory, guard):
    """JupyterLab serving a copy of notebooks/, its kernels offline and figure-audited.

    A copy, with autosave off, so that running cells never rewrites a tracked notebook.
    """
    course = tmp_path_factory.mktemp("course")
    shutil.copytree(NOTEBOOKS, course / "notebooks", ignore=shutil.ignore_patterns(".ipynb_*"))
    with running_lab(course, tmp_path_factory.mktemp("lab-state"), env=guard.env) as server:
        yield server


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    """Debian's Chromium, headless, with a fresh profile; Playwright never downloads one."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `bash e2e/ensure_chromium.sh` (make e2e does).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=VIEWPORT,
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture(scope="session")
def browser_runs(browser, lab, guard, artifacts):
    """``browser_runs(name)``: the notebook's :class:`BrowserRun`, run on first request."""
    results: dict[str, BrowserRun] = {}

    def get(name: str) -> BrowserRun:
        if name not in results:
            results[name] = run_in_browser(browser, lab, guard, name, artifacts)
        return results[name]

    yield get
    if results:
        summary = [
            "| notebook | Run All s | peak RSS GB | figures audited | network attempts |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        summary += [
            f"| {n} | {r.seconds:.1f} | {r.peak_rss_gb:.2f} | {len(r.figures)} "
            f"| {len(r.network_attempts)} |"
            for n, r in results.items()
        ]
        (artifacts / "summary.md").write_text("\n".join(summary) + "\n", encoding="utf-8")
