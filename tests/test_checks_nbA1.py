"""Appendix A1's check: correct on two correct constructions, incorrect on known-wrong answers."""

from __future__ import annotations

from course_lib.checks import nbA1

import numpy as np
import pytest
import tensorflow as tf
from tf_keras import backend as K


def _not_attempted(*args):
    raise NotImplementedError


def in_branches(p, slow, gradient, is_sync, lr, alpha):
    """The other correct construction: every assignment built inside a branch function."""
    fast = p - lr * gradient
    synced = slow + alpha * (fast - slow)

    def synchronise():
        with tf.control_dependencies([K.update(slow, synced)]):
            return K.update(p, synced)

    def fast_step():
        return K.update(p, fast)

    return [K.switch(is_sync, synchronise, fast_step)]


def article_style(p, slow, gradient, is_sync, lr, alpha):
    """The article's flaw carried over: the slow weight's assignment built outside K.switch."""
    fast = p - lr * gradient
    moved = K.update(slow, slow + alpha * (fast - slow))  # runs on every step
    return [K.update(p, K.switch(is_sync, moved, fast)), K.switch(is_sync, moved, slow)]


def from_the_old_weight(p, slow, gradient, is_sync, lr, alpha):
    """Synchronises towards p before this step's fast step."""
    fast = p - lr * gradient
    synced = slow + alpha * (p - slow)
    return [
        K.update(p, K.switch(is_sync, synced, fast)),
        K.update(slow, K.switch(is_sync, synced, tf.identity(slow))),
    ]


def no_restart(p, slow, gradient, is_sync, lr, alpha):
    """Moves the slow weight but lets the fast weight run on."""
    fast = p - lr * gradient
    synced = slow + alpha * (fast - slow)
    return [K.update(p, fast), K.update(slow, K.switch(is_sync, synced, tf.identity(slow)))]


def alpha_the_wrong_way(p, slow, gradient, is_sync, lr, alpha):
    """Moves a fraction α from the fast weight towards the slow one (1 − α, not α)."""
    fast = p - lr * gradient
    synced = fast + alpha * (slow - fast)
    return [
        K.update(p, K.switch(is_sync, synced, fast)),
        K.update(slow, K.switch(is_sync, synced, tf.identity(slow))),
    ]


def test_the_expected_trajectory_is_lookahead_written_out():
    weights, slows = nbA1.expected_lookahead_trajectory()
    # Steps 1-3: p = 1 - 0.1*(1 + 3 - 2) = 0.8; slow = 1 + 0.3*(0.8 - 1) = 0.94; p restarts.
    np.testing.assert_allclose(weights[:3], [0.9, 0.6, 0.94], rtol=0, atol=1e-12)
    np.testing.assert_allclose(slows[:3], [1.0, 1.0, 0.94], rtol=0, atol=1e-12)
    assert slows[3] == slows[4] == slows[2]  # no synchronisation at steps 4 and 5


@pytest.mark.parametrize("answer", [nbA1.lookahead_updates, in_branches])
def test_accepts_both_correct_constructions(answer):
    result = nbA1.keras2_lookahead.check(answer)
    assert result.correct, result


@pytest.mark.parametrize(
    "wrong", [article_style, from_the_old_weight, no_restart, alpha_the_wrong_way]
)
def test_rejects_realistic_wrong_answers(wrong):
    result = nbA1.keras2_lookahead.check(wrong)
    assert result.status == "incorrect", wrong.__name__


def test_names_the_leak_and_the_missing_restart():
    assert "step 1 is not a synchronisation" in nbA1.keras2_lookahead.check(article_style).message
    assert "must restart" in nbA1.keras2_lookahead.check(no_restart).message


def test_rejects_a_non_list():
    assert nbA1.keras2_lookahead.check(lambda *args: 42).status == "incorrect"


def test_hint_does_not_give_the_answer():
    for answer in ("K.switch(is_sync", "alpha * (", "tf.identity(slow)"):
        assert answer not in nbA1.keras2_lookahead._hint, answer


def test_not_attempted():
    assert nbA1.keras2_lookahead.check(None).status == "not attempted"
    assert nbA1.keras2_lookahead.check(_not_attempted).status == "not attempted"
