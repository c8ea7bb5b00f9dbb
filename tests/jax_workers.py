"""Starting JAX worker processes for the scale-out tests: environment, free port, bounded wait.

JAX fixes its devices when it starts, and ``jax.distributed`` must be initialised before any
computation, so every run over 2 devices or 2 processes is a fresh Python process. Workers meet
on a free loopback port (bound to port 0, then released) and are killed if they outlive their
timeout.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

#: Seconds a set of workers may run: a start of JAX and a few small trainings, with room for a
#: busy CPU.
TIMEOUT = 240


def worker_environment(**extra: str) -> dict[str, str]:
    """This environment on the JAX backend, with ``tests/`` importable and ``extra`` set."""
    environment = dict(os.environ, KERAS_BACKEND="jax", **extra)
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).parent), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    return environment


def two_device_flags() -> str:
    """``XLA_FLAGS`` that give a process two CPU devices (any flags already set are kept)."""
    flags = [os.environ.get("XLA_FLAGS", ""), "--xla_force_host_platform_device_count=2"]
    return " ".join(flags).strip()


def one_device_environment(**extra: str) -> dict[str, str]:
    """The worker environment for one CPU device per process (multi-process runs)."""
    environment = worker_environment(**extra)
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
        pytest.fail(f"a JAX worker ran longer than {timeout} s")
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
