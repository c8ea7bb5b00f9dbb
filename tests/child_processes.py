"""Running Python in child processes, for the tests that need a fresh interpreter.

Keras fixes its backend, and JAX its devices, when a process first imports them, and
``jax.distributed`` must be initialised before any computation: a test about another backend, a
clean import, or a run over 2 devices or 2 processes starts a child. Every child gets this
interpreter, this environment with ``KERAS_BACKEND`` set and ``tests/`` on its path, and a
bounded time; workers that run side by side meet on a free loopback port and are killed if they
outlive their timeout.

* :func:`run_python`: run a few lines of code and return the finished process;
* :func:`start` and :func:`finish`: start worker scripts (``tests/jax_worker.py``), wait for all
  of them, fail the test with the end of a failed worker's output.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

#: Seconds a child or a set of workers may run: a start of JAX or TensorFlow and a few small
#: trainings, with room for a busy CPU.
TIMEOUT = 240


def child_environment(backend: str, **extra: str) -> dict[str, str]:
    """This environment on Keras's ``backend``, with ``tests/`` importable and ``extra`` set."""
    environment = dict(os.environ, KERAS_BACKEND=backend, **extra)
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).parent), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    return environment


def run_python(
    code: str, backend: str, timeout: float = TIMEOUT, **extra: str
) -> subprocess.CompletedProcess:
    """``python -c code`` on ``backend``; its output is captured, its exit code not checked."""
    return subprocess.run(
        [sys.executable, "-c", code],
        env=child_environment(backend, **extra),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def two_device_flags() -> str:
    """``XLA_FLAGS`` that give a process two CPU devices (any flags already set are kept)."""
    flags = [os.environ.get("XLA_FLAGS", ""), "--xla_force_host_platform_device_count=2"]
    return " ".join(flags).strip()


def one_device_environment(**extra: str) -> dict[str, str]:
    """A JAX worker's environment with one CPU device per process (multi-process runs)."""
    environment = child_environment("jax", **extra)
    environment.pop("XLA_FLAGS", None)
    return environment


def start(script: Path, arguments: list[str], environment: dict[str, str]) -> subprocess.Popen:
    """Start ``python script arguments...``; stdout and stderr are read together."""
    return subprocess.Popen(
        [sys.executable, str(script), *arguments],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(workers: list[subprocess.Popen], timeout: float = TIMEOUT) -> list[str]:
    """Wait for every worker (at most ``timeout`` s in all), kill any left; their outputs.

    A worker that fails or runs too long fails the test, quoting the end of its output.
    """
    outputs = []
    try:
        for worker in workers:
            outputs.append(worker.communicate(timeout=timeout)[0])
    except subprocess.TimeoutExpired:
        pytest.fail(f"a worker ran longer than {timeout} s")
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.communicate()
    for worker, output in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, f"worker failed:\n{output[-3000:]}"
    return outputs


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picked it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
