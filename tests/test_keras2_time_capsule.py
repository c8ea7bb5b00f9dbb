"""Appendix A1: the article's ideas in Keras 2 (tf_keras, graph mode) against the course's Keras 3.

The pytest process runs eagerly, so the Keras 2 side trains in one graph-mode subprocess
(``python -m course_lib.keras2.reference``), once per session; the Keras 3 side trains here.
"""

from __future__ import annotations

from course_lib.environment import run_module_in_subprocess
from course_lib.keras2 import time_capsule
from course_lib.keras2.time_capsule import KERAS2_KINDS, KINDS, max_abs_difference, weights_of

import numpy as np
import pytest

#: float32 round-off: the two Keras versions order the MSE gradient's sums differently.
ROUND_OFF = 1e-6


@pytest.fixture(scope="module")
def keras2() -> dict[str, dict[str, np.ndarray]]:
    return time_capsule.keras2_reference_weights(KERAS2_KINDS)


@pytest.fixture(scope="module")
def keras3() -> dict[str, dict[str, np.ndarray]]:
    return {kind: time_capsule.train_keras3(kind) for kind in KINDS}


@pytest.mark.parametrize("kind", KINDS)
def test_keras2_equals_the_course_keras3_class(keras2, keras3, kind):
    difference = max_abs_difference(weights_of(keras2[kind]), weights_of(keras3[kind]))
    moved = max_abs_difference(weights_of(keras3[kind]), time_capsule.shared_problem()[2])
    assert moved > 1e-2, "training did not move the weights: the comparison would be void"
    assert difference < ROUND_OFF, f"{kind}: Keras 2 and Keras 3 differ by {difference:.3g}"
    np.testing.assert_allclose(keras2[kind]["loss"], keras3[kind]["loss"], rtol=1e-5)


def test_our_get_updates_sgd_is_bit_identical_to_keras2s_own(keras2):
    assert max_abs_difference(weights_of(keras2["sgd"]), weights_of(keras2["keras2_sgd"])) == 0.0


def test_heun_really_takes_heun_steps(keras2):
    # If fit had rebuilt train_function, "heun" would equal plain SGD.
    assert max_abs_difference(weights_of(keras2["heun"]), weights_of(keras2["sgd"])) > 1e-3


def test_corrected_soft_batch_leaves_weights_bit_identical_between_updates(keras2):
    motion = keras2["soft_batch"]["motion"]
    steps = time_capsule.shared_problem().soft_batch_steps
    update = (np.arange(1, len(motion) + 1) % steps) == 0
    assert np.all(motion[~update] == 0.0), motion
    assert np.all(motion[update] > 1e-3), motion


def test_soft_batch_corrected_by_selecting_values_equals_the_branch_fix_bit_for_bit(keras2):
    """One K.update whose value K.switch picks: written every micro-batch, moved on updates only."""
    motion = keras2["select_soft_batch"]["motion"]
    steps = time_capsule.shared_problem().soft_batch_steps
    update = (np.arange(1, len(motion) + 1) % steps) == 0
    assert np.all(motion[~update] == 0.0), motion
    np.testing.assert_array_equal(motion, keras2["soft_batch"]["motion"])
    selected, branched = weights_of(keras2["select_soft_batch"]), weights_of(keras2["soft_batch"])
    assert max_abs_difference(selected, branched) == 0.0


def test_article_style_soft_batch_leaks(keras2, keras3):
    motion = keras2["article_soft_batch"]["motion"]
    steps = time_capsule.shared_problem().soft_batch_steps
    update = (np.arange(1, len(motion) + 1) % steps) == 0
    assert np.all(motion[~update] > 1e-3), f"every non-update micro-batch should leak: {motion}"
    leaked = weights_of(keras2["article_soft_batch"])
    assert max_abs_difference(leaked, weights_of(keras3["soft_batch"])) > 1e-2


def test_keras3_reference_in_a_subprocess_matches_in_process(keras3):
    remote = time_capsule.keras3_reference_weights("sgd")["sgd"]
    assert max_abs_difference(weights_of(remote), weights_of(keras3["sgd"])) == 0.0


def test_bad_kinds_and_problems_are_refused_clearly():
    with pytest.raises(ValueError, match="kind='adam'.*choose one of"):
        time_capsule.keras3_reference_weights("adam")
    with pytest.raises(ValueError, match="kind='article_soft_batch'"):
        time_capsule.train_keras3("article_soft_batch")  # a Keras 2 kind only
    with pytest.raises(ValueError, match="samples=100 must be a multiple of 64"):
        time_capsule.shared_problem(samples=100)


def test_a_failing_child_reports_its_own_error():
    with pytest.raises(RuntimeError, match="unknown kind 'nonsense'"):
        run_module_in_subprocess("course_lib.keras2.reference", ["nonsense"])


def test_keras2_builders_refuse_eager_mode_with_a_clear_message():
    from course_lib.keras2 import reference as keras2_reference

    with pytest.raises(RuntimeError, match="enable_graph_mode"):
        keras2_reference.build_keras2_model()
    with pytest.raises(RuntimeError, match="graph mode"):
        keras2_reference.SoftBatchSGD(0.1, steps=4)


def test_heirs_table_links_existing_notebooks():
    from pathlib import Path

    notebooks = Path(__file__).resolve().parents[1] / "notebooks"
    table = time_capsule.heirs_table()
    for _, _, notebook in time_capsule.KERAS2_HEIRS:
        assert (notebooks / f"{notebook}.ipynb").exists(), notebook
        assert f"({notebook}.ipynb)" in table
