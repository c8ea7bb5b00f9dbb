"""Start JupyterLab as a learner's machine would, on a private port, and always stop it.

Used by e2e/test_browser.py. The server runs from this project's environment with a random
token on a free 127.0.0.1 port, with its own runtime, workspace and user-settings folders, so a
test run neither reads nor changes the maintainer's Jupyter set-up. The user settings make the
browser checks possible and keep the run offline:

* notebook ``windowingMode: none``: every cell is in the page, not only the visible ones;
  ``recordTiming``: each cell's start and end, to find the long cells;
* ``autosave: false``: running cells in the browser never rewrites a notebook on disk;
* no news feed, no update check, no extension manager: nothing asks the internet.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

#: User settings written for the test server (plugin id -> settings).
LAB_SETTINGS: dict[str, dict[str, object]] = {
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none", "recordTiming": True},
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/apputils-extension/notification": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    "@jupyterlab/extensionmanager-extension/plugin": {"enabled": False},
}

START_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class LabServer:
    """A running JupyterLab: where it listens, its token, and its process."""

    base_url: str
    token: str
    process: subprocess.Popen

    def url(self, path: str) -> str:
        """``path`` on this server, with the token that logs the browser in."""
        separator = "&" if "?" in path else "?"
        return f"{self.base_url}/{path.lstrip('/')}{separator}token={self.token}"

    def api(self, path: str, method: str = "GET", body: object = None) -> object:
        """Call the server's REST API and return the decoded JSON (None when empty)."""
        request = urllib.request.Request(
            self.url(f"api/{path.lstrip('/')}"),
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def kernel_pid(self, kernel_id: str) -> int:
        """The process id of one of this server's kernels (its connection file names the id)."""
        import psutil

        for child in psutil.Process(self.process.pid).children(recursive=True):
            try:
                if any(kernel_id in part for part in child.cmdline()):
                    return child.pid
            except psutil.Error:
                continue
        raise LookupError(f"no process of kernel {kernel_id} under server {self.process.pid}")

    def shut_down_all_kernels(self) -> None:
        """Shut every kernel down, as a Binder learner should between notebooks."""
        for kernel in self.api("kernels"):
            self.api(f"kernels/{kernel['id']}", method="DELETE")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_settings(settings_dir: Path) -> None:
    """Write :data:`LAB_SETTINGS` as JupyterLab user-settings files under ``settings_dir``."""
    for plugin, values in LAB_SETTINGS.items():
        path = settings_dir / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values, indent=2), encoding="utf-8")


def lab_command(root_dir: Path, state_dir: Path, port: int, token: str) -> list[str]:
    """The ``jupyter lab`` command line for a private, headless, offline test server."""
    command = [
        str(Path(sys.executable).with_name("jupyter")),
        "lab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--port-retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root_dir}",
        f"--LabApp.user_settings_dir={state_dir / 'settings'}",
        f"--LabApp.workspaces_dir={state_dir / 'workspaces'}",
        "--LabApp.news_url=None",
        # Lets the test read the notebook model the page shows (outputs and their types).
        "--LabApp.expose_app_in_browser=True",
    ]
    if os.geteuid() == 0:  # CI containers run as root; Jupyter refuses root unless told so
        command.append("--allow-root")
    return command


def _wait_until_serving(server: LabServer, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"jupyter lab exited with code {server.process.returncode} before serving; "
                f"its log:\n{log_path.read_text(errors='replace')[-3000:]}"
            )
        try:
            server.api("status")
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    raise RuntimeError(
        f"jupyter lab did not answer within {START_TIMEOUT_S:.0f} s; its log:\n"
        f"{log_path.read_text(errors='replace')[-3000:]}"
    )


def stop(process: subprocess.Popen) -> None:
    """Stop the server and its kernels (one process group): SIGTERM, then SIGKILL."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextmanager
def running_lab(
    root_dir: Path, state_dir: Path, env: Mapping[str, str] | None = None
) -> Iterator[LabServer]:
    """Run JupyterLab serving ``root_dir`` until the ``with`` block ends, even on failure.

    ``state_dir`` receives the runtime, settings and workspace folders and the server log
    (``lab.log``); ``env`` is added to this process's environment for the server and kernels.
    """
    for name in ("runtime", "settings", "workspaces"):
        (state_dir / name).mkdir(parents=True, exist_ok=True)
    write_settings(state_dir / "settings")
    port, token = free_port(), secrets.token_hex(16)
    log_path = state_dir / "lab.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            lab_command(root_dir, state_dir, port, token),
            cwd=root_dir,
            # JUPYTER_RUNTIME_DIR: the connection files (ServerApp has no runtime_dir option).
            env={**os.environ, "JUPYTER_RUNTIME_DIR": str(state_dir / "runtime"), **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the kernels stop with it
        )
    server = LabServer(f"http://127.0.0.1:{port}", token, process)
    try:
        _wait_until_serving(server, log_path)
        yield server
    finally:
        stop(process)
