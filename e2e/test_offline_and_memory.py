"""The course runs offline, and no notebook's kernel passes Binder's 1 GB guaranteed memory.

Each notebook's kernel, started by JupyterLab in e2e/conftest.py's browser pass, had Python's
networking blocked except for loopback (e2e/guard_files/sitecustomize.py): a notebook that tries
to download is caught even if it swallows the error. Its peak resident memory (VmHWM) is read
with benchmarks/notebooks.py's ``peak_rss_gb`` and held to that benchmark's budget.
"""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from browser_pass import budget
from course_map import INDEX, lessons_on_disk
from offline_guard import prepare_guard

NOTEBOOK_NAMES = [INDEX.name, *lessons_on_disk()]


def test_the_guard_blocks_the_internet_and_keeps_loopback(tmp_path):
    """Without this, 'no download attempts' could just mean the guard is not loaded."""
    guard = prepare_guard(tmp_path)
    probe = """
import socket, urllib.request
server = socket.create_server(("127.0.0.1", 0))
socket.create_connection(server.getsockname(), timeout=5).close()
try:
    urllib.request.urlopen("https://storage.googleapis.com/tensorflow/mnist.npz", timeout=5)
except OSError as error:
    print("refused:", error)
"""
    env = {"PATH": "/usr/bin:/bin", **guard.env}
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "refused: <urlopen error network disabled" in done.stdout
    assert guard.network_attempts() and "storage.googleapis.com" in guard.network_attempts()[0]
    import _socket

    assert socket.socket.connect is _socket.socket.connect, "the guard leaked into this process"


@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_the_kernel_never_reaches_the_network(browser_runs, name):
    run = browser_runs(name)
    assert not run.network_attempts, f"{name}: tried to go online: {run.network_attempts}"


@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_peak_memory_within_the_binder_budget(browser_runs, name):
    run = browser_runs(name)
    assert 0.05 < run.peak_rss_gb, f"{name}: implausible peak {run.peak_rss_gb:.3f} GB"
    assert run.peak_rss_gb < budget.MEMORY_BUDGET_GB, (
        f"{name}: the kernel peaked at {run.peak_rss_gb:.2f} GB, over the "
        f"{budget.MEMORY_BUDGET_GB:.1f} GB budget (benchmarks/notebooks.py)"
    )
