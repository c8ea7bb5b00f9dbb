"""keras.distribution.DataParallel on JAX, over 2 devices and over 2 processes, equals one device.

For the optimizer wrappers (SoftBatch, clipping included, and Lookahead, notebooks 03 and 07)
and for the multi-gradient training steps: the skeleton through the probe rule on both routes
(``probe_method.py``) and the adaptive controller, whose decisions run in the step. Each run is a
worker process (``tests/jax_worker.py``): JAX fixes its devices at start-up, and
``jax.distributed`` must be initialised before any computation. One worker trains every case on
one device and then over two devices; two more train them over two processes (gloo's CPU
collectives on a free loopback port, each process feeding its own half of every global batch).
Workers are killed if they outlive :data:`child_processes.TIMEOUT`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from child_processes import (
    child_environment,
    finish,
    free_loopback_port,
    one_device_environment,
    start,
    two_device_flags,
)
from jax_worker import (
    CASES,
    INITIAL_WEIGHTS,
    PROCESSES,
    REFERENCES,
    STEP_CASES,
    STEPS,
    WRAPPER_CASES,
)

pytestmark = pytest.mark.jax_only("keras.distribution with JAX's devices and jax.distributed")

WORKER = Path(__file__).with_name("jax_worker.py")
#: float32 round-off of two epochs of a 6-8-2 MLP (summation order differs between layouts).
ROUND_OFF = 1e-6
CLIPPED = ["adam_clipnorm", "sgd_global_clipnorm"]
SCALED_OUT = [case for case in CASES if case not in REFERENCES]


def _load(path: Path) -> dict:
    with open(path) as file:
        return json.load(file)


@pytest.fixture(scope="module")
def two_devices(tmp_path_factory) -> dict:
    """Every case on one device, then under DataParallel over two devices."""
    outfile = tmp_path_factory.mktemp("devices") / "runs.json"
    environment = child_environment("jax", JAX_ENABLE_X64="1", XLA_FLAGS=two_device_flags())
    finish([start(WORKER, ["devices", str(outfile), *CASES], environment)])
    return _load(outfile)


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> list[dict]:
    """Every scaled-out case under DataParallel over two processes, one result per process."""
    folder = tmp_path_factory.mktemp("processes")
    coordinator = f"127.0.0.1:{free_loopback_port()}"
    environment = one_device_environment(JAX_ENABLE_X64="1")
    outfiles = [folder / f"{i}.json" for i in range(PROCESSES)]
    workers = [
        start(WORKER, ["process", coordinator, str(i), str(out), *SCALED_OUT], environment)
        for i, out in enumerate(outfiles)
    ]
    finish(workers)
    return [_load(out) for out in outfiles]


def _gap(a: dict, b: dict) -> float:
    return float(np.abs(np.asarray(a["weights"]) - np.asarray(b["weights"])).max())


def _assert_same_steps(got: dict, want: dict, name: str) -> None:
    """The training steps in float64: weights and every logged value as on one device."""
    np.testing.assert_allclose(got["weights"], want["weights"], rtol=0, atol=1e-12, err_msg=name)
    assert got["logs"].keys() == want["logs"].keys()
    for key, values in want["logs"].items():
        np.testing.assert_allclose(got["logs"][key], values, rtol=1e-9, err_msg=f"{name}: {key}")


def _assert_same_run(got: dict, want: dict, case: str) -> None:
    if case in STEP_CASES:
        _assert_same_steps(got, want, case)
    else:
        assert _gap(got, want) < ROUND_OFF, case


# ---------------------------------------------------------------------------------------------
# Guards: equal runs mean something only if they moved and differ where they should
# ---------------------------------------------------------------------------------------------


def test_the_one_device_runs_train_and_differ(two_devices):
    single = two_devices["single"]
    initial = {"weights": np.concatenate([w.ravel() for w in INITIAL_WEIGHTS])}
    moved = {case: _gap(single[case], initial) for case in WRAPPER_CASES}
    assert min(moved.values()) > 1000 * ROUND_OFF, moved
    assert _gap(single["soft_batch:adam_clipnorm"], single["soft_batch:adam"]) > 1e-3
    first, last = single["probe"]["logs"]["loss"]
    assert last < 0.5 * first
    assert max(single["adaptive"]["logs"]["rejections"]) >= 1, "no rejection was tested"
    # Both routes run the same rule: the injected step is the clean one.
    _assert_same_steps(single["probe_injected"], single["probe"], "probe")


@pytest.mark.parametrize("inner", ["adam", *CLIPPED])
def test_soft_batch_on_one_device_is_the_big_batch(two_devices, inner):
    single = two_devices["single"]
    assert _gap(single[f"soft_batch:{inner}"], single[f"big_batch:{inner}"]) < ROUND_OFF


# ---------------------------------------------------------------------------------------------
# Two devices, two processes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", SCALED_OUT)
def test_two_devices_equal_one_device(two_devices, case):
    assert two_devices["devices"] == 2
    _assert_same_run(two_devices["parallel"][case], two_devices["single"][case], case)


@pytest.mark.parametrize("case", SCALED_OUT)
def test_two_processes_equal_one_device(two_processes, two_devices, case):
    first, second = two_processes
    assert first["processes"] == 2 and first["devices"] == 2
    assert first["parallel"][case]["weights"] == second["parallel"][case]["weights"], (
        f"{case}: the processes disagree"
    )
    _assert_same_run(first["parallel"][case], two_devices["single"][case], case)


@pytest.mark.parametrize("inner", ["adam", *CLIPPED])
def test_soft_batch_scaled_out_is_the_big_batch_clipping_included(
    two_devices, two_processes, inner
):
    reference = two_devices["single"][f"big_batch:{inner}"]
    for run in (two_devices["parallel"], two_processes[0]["parallel"]):
        assert _gap(run[f"soft_batch:{inner}"], reference) < ROUND_OFF


def test_keras_accumulation_works_under_data_parallel(two_devices):
    """Unlike under MirroredStrategy on TensorFlow, where it raises (keras issue #20582)."""
    reference = two_devices["single"]["big_batch:adam"]
    assert _gap(two_devices["parallel"]["keras_accumulation:adam"], reference) < ROUND_OFF


def test_lookahead_scaled_out_is_its_one_device_cycle(two_devices, two_processes):
    assert STEPS == 4 and WRAPPER_CASES["lookahead:adam"] == 16  # four whole cycles
    reference = two_devices["single"]["lookahead:adam"]
    for run in (two_processes[0]["parallel"], two_devices["parallel"]):
        assert _gap(run["lookahead:adam"], reference) < ROUND_OFF
