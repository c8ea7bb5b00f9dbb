"""SoftBatch and Lookahead under keras.distribution.DataParallel on JAX: 2 devices, 2 processes.

Each scale-out run is a worker process (``tests/jax_scale_out.py``): JAX fixes its devices at
start-up, and ``jax.distributed`` must be initialised before any computation. The workers train
the cases of :data:`jax_scale_out.DEVICE_CASES` or ``PROCESS_CASES``; this process trains every
case of ``CASES`` (with the big-batch references) on one device and
compares. Multi-process workers meet on a free loopback port, talk through gloo's CPU
collectives, each feeds its own half of every global batch, and are killed if they outlive
:data:`jax_workers.TIMEOUT`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import jax_scale_out
from jax_scale_out import CASES, DEVICE_CASES, PROCESS_CASES, STEPS
from jax_workers import (
    finish,
    free_loopback_port,
    one_device_environment,
    start,
    two_device_flags,
    worker_environment,
)

pytestmark = pytest.mark.jax_only("keras.distribution with JAX's devices and jax.distributed")

WORKER = Path(__file__).with_name("jax_scale_out.py")
#: float32 round-off of two epochs of a 6-8-2 MLP (summation order differs between layouts).
ROUND_OFF = 1e-6
CLIPPED = ["adam_clipnorm", "sgd_global_clipnorm"]


@pytest.fixture(scope="module")
def one_device() -> dict[str, np.ndarray]:
    """Every case trained in this process, on one device."""
    import jax

    assert len(jax.devices()) == 1, "the reference must run on one device"
    return {case: jax_scale_out.train(case) for case in CASES}


@pytest.fixture(scope="module")
def two_devices(tmp_path_factory) -> dict[str, np.ndarray]:
    outfile = tmp_path_factory.mktemp("devices") / "weights.npz"
    environment = worker_environment(XLA_FLAGS=two_device_flags())
    finish([start(WORKER, ["devices", str(outfile)], environment)])
    with np.load(outfile) as saved:
        return {name: saved[name] for name in saved.files}


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> list[dict[str, np.ndarray]]:
    folder = tmp_path_factory.mktemp("processes")
    coordinator = f"127.0.0.1:{free_loopback_port()}"
    environment = one_device_environment()
    workers = [
        start(WORKER, ["process", coordinator, str(i), str(folder / f"{i}.npz")], environment)
        for i in range(jax_scale_out.PROCESSES)
    ]
    finish(workers)
    results = []
    for i in range(jax_scale_out.PROCESSES):
        with np.load(folder / f"{i}.npz") as saved:
            results.append({name: saved[name] for name in saved.files})
    return results


def _gap(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max())


def test_the_reference_trainings_move_and_differ(one_device):
    """Guards: every case trains, and clipping changes the result, so equalities mean something."""
    initial = np.concatenate([w.ravel() for w in jax_scale_out.INITIAL_WEIGHTS])
    moved = {case: _gap(weights, initial) for case, weights in one_device.items()}
    assert min(moved.values()) > 1000 * ROUND_OFF, moved
    assert _gap(one_device["soft_batch:adam_clipnorm"], one_device["soft_batch:adam"]) > 1e-3


def test_soft_batch_on_one_device_is_the_big_batch(one_device):
    for inner in ["adam", *CLIPPED]:
        gap = _gap(one_device[f"soft_batch:{inner}"], one_device[f"big_batch:{inner}"])
        assert gap < ROUND_OFF, inner


def test_two_devices_equal_one_device(two_devices, one_device):
    assert int(two_devices["devices"]) == 2
    for case in DEVICE_CASES:
        assert _gap(two_devices[case], one_device[case]) < ROUND_OFF, case


@pytest.mark.parametrize("inner", ["adam", *CLIPPED])
def test_soft_batch_on_two_devices_is_the_big_batch_clipping_included(
    two_devices, one_device, inner
):
    gap = _gap(two_devices[f"soft_batch:{inner}"], one_device[f"big_batch:{inner}"])
    assert gap < ROUND_OFF


def test_keras_accumulation_works_under_data_parallel(two_devices, one_device):
    """Unlike under MirroredStrategy on TensorFlow, where it raises (keras issue #20582)."""
    assert _gap(two_devices["keras_accumulation:adam"], one_device["big_batch:adam"]) < ROUND_OFF


def test_two_processes_equal_one_device(two_processes, one_device):
    first, second = two_processes
    assert int(first["processes"]) == 2 and int(first["devices"]) == 2
    for case in PROCESS_CASES:
        assert np.array_equal(first[case], second[case]), f"{case}: the processes disagree"
        assert _gap(first[case], one_device[case]) < ROUND_OFF, case


@pytest.mark.parametrize("inner", ["adam", *CLIPPED])
def test_soft_batch_across_processes_is_the_big_batch_clipping_included(
    two_processes, one_device, inner
):
    gap = _gap(two_processes[0][f"soft_batch:{inner}"], one_device[f"big_batch:{inner}"])
    assert gap < ROUND_OFF


def test_lookahead_across_processes_and_devices_is_its_one_device_cycle(
    two_processes, two_devices, one_device
):
    assert STEPS == 4  # 16 batches of 16 over two epochs: four whole cycles
    for run in (two_processes[0], two_devices):
        assert _gap(run["lookahead:adam"], one_device["lookahead:adam"]) < ROUND_OFF
