"""`make lab` serves the index notebook: started as a learner would, checked over the HTTP API."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def test_make_lab_serves_the_index_notebook(tmp_path):
    port, token = _free_port(), secrets.token_hex(16)
    lab_args = f"--no-browser --ip=127.0.0.1 --port={port} --IdentityProvider.token={token}"
    if os.geteuid() == 0:  # CI runs as root; JupyterLab refuses root unless told it is meant
        lab_args += " --allow-root"
    server = subprocess.Popen(
        ["make", "--no-print-directory", "lab", f"LAB_ARGS={lab_args}"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path)},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline, status = time.monotonic() + 90, None
        while time.monotonic() < deadline and status is None:
            assert server.poll() is None, "make lab exited before serving"
            try:
                status = _get_json(f"{base}/api/status?token={token}")
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
        assert status is not None, "JupyterLab did not answer within 90 s"
        index = _get_json(f"{base}/api/contents/notebooks/00_index.ipynb?token={token}")
        assert index["type"] == "notebook"
        assert index["content"]["cells"][0]["source"].startswith("# 00 · ")
        kernels = _get_json(f"{base}/api/kernelspecs?token={token}")
        assert "python3" in kernels["kernelspecs"]
        # The browser lands on the index notebook (the server's default URL).
        with urllib.request.urlopen(f"{base}/?token={token}", timeout=5) as page:
            assert page.status == 200
            assert page.url.split("?")[0].endswith("/lab/tree/notebooks/00_index.ipynb")
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
