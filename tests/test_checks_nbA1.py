"""Checks of appendix A1: correct on the library's solutions, incorrect on known-wrong answers."""

from __future__ import annotations

from course_lib.checks import nbA1
from course_lib.keras2 import reference as keras2_reference

import tensorflow as tf
from tf_keras import backend as K


def _not_attempted(*args):
    raise NotImplementedError


def test_fix_the_switch_accepts_both_correct_fixes():
    assert nbA1.fix_the_switch.check(keras2_reference.value_select_soft_batch_updates).correct
    assert nbA1.fix_the_switch.check(keras2_reference.soft_batch_updates).correct


def test_fix_the_switch_rejects_the_article_version_and_names_the_leak():
    result = nbA1.fix_the_switch.check(keras2_reference.article_soft_batch_updates)
    assert result.status == "incorrect"
    assert "micro-batch 1 is not an update step" in result.message


def test_fix_the_switch_rejects_a_step_without_averaging():
    def sums_instead_of_mean(p, accumulator, gradient, is_update, lr, steps):
        total = accumulator + gradient
        with tf.control_dependencies([total]):
            new_p = K.switch(is_update, p - lr * total, tf.identity(p))
            reset_or_keep = K.switch(is_update, tf.zeros_like(total), total)
            return [K.update(p, new_p), K.update(accumulator, reset_or_keep)]

    assert nbA1.fix_the_switch.check(sums_instead_of_mean).status == "incorrect"


def test_fix_the_switch_rejects_an_accumulator_never_emptied():
    def never_empties(p, accumulator, gradient, is_update, lr, steps):
        total = accumulator + gradient
        with tf.control_dependencies([total]):
            new_p = K.switch(is_update, p - lr * (total / steps), tf.identity(p))
            return [K.update(p, new_p), K.update(accumulator, total)]

    result = nbA1.fix_the_switch.check(never_empties)
    assert result.status == "incorrect"


def test_fix_the_switch_rejects_a_non_list():
    result = nbA1.fix_the_switch.check(lambda *args: 42)
    assert result.status == "incorrect"


def test_fix_the_switch_hint_does_not_give_the_answer():
    assert "tf.identity(p)" not in nbA1.fix_the_switch._hint
    assert "K.update(p," not in nbA1.fix_the_switch._hint


def test_fix_the_switch_not_attempted():
    assert nbA1.fix_the_switch.check(None).status == "not attempted"
    assert nbA1.fix_the_switch.check(_not_attempted).status == "not attempted"


def test_name_the_heirs_both_ways():
    assert nbA1.name_the_heirs.check(nbA1.heirs_solution).correct
    assert nbA1.name_the_heirs.check(lambda: {**nbA1.heirs_solution(), "K.update": "self.assign"})
    wrong = {**nbA1.heirs_solution(), "K.switch": "ops.where"}  # selects values, runs both
    assert nbA1.name_the_heirs.check(lambda: wrong).status == "incorrect"
    partial = {"get_updates": "update_step"}
    assert nbA1.name_the_heirs.check(partial).status == "incorrect"
    assert nbA1.name_the_heirs.check(None).status == "not attempted"
    assert nbA1.name_the_heirs.check(_not_attempted).status == "not attempted"
