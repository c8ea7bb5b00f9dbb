"""The notebook 07 checks pass on the library's solutions and fail on known-wrong answers."""

from __future__ import annotations

from course_lib.checks import nb07
from course_lib.lookahead import lookahead_interpolation
from course_lib.sam import sam_perturbation

import numpy as np


def _not_attempted(*args):
    raise NotImplementedError


def test_perturbation_accepts_the_library_and_a_numpy_version():
    assert nb07.sam_perturbation_exercise.check(sam_perturbation).correct

    def numpy_version(gradients, rho):
        norm = np.sqrt(sum(np.sum(np.square(g)) for g in gradients if g is not None))
        return [None if g is None else rho * g / (norm + 1e-12) for g in gradients]

    assert nb07.sam_perturbation_exercise.check(numpy_version).correct


def test_perturbation_rejects_known_wrong_answers():
    def per_tensor_norm(gradients, rho):
        return [None if g is None else rho * g / np.linalg.norm(g) for g in gradients]

    def not_normalised(gradients, rho):
        return [None if g is None else rho * g for g in gradients]

    def downhill(gradients, rho):
        return [None if e is None else -e for e in sam_perturbation(gradients, rho)]

    def drops_none(gradients, rho):
        return [e for e in sam_perturbation(gradients, rho) if e is not None]

    for wrong in (per_tensor_norm, not_normalised, downhill, drops_none):
        assert nb07.sam_perturbation_exercise.check(wrong).status == "incorrect", wrong.__name__


def test_lookahead_sync_both_ways():
    assert nb07.lookahead_sync.check(lookahead_interpolation).correct
    assert nb07.lookahead_sync.check(lambda s, f, a: f + a * (s - f)).status == "incorrect"
    assert nb07.lookahead_sync.check(lambda s, f, a: f).status == "incorrect"
    assert nb07.lookahead_sync.check(lambda s, f, a: s + 0.5 * (f - s)).status == "incorrect"


def test_mechanism_map_both_ways():
    assert nb07.mechanism_map.check(dict(nb07.MECHANISMS)).correct
    assert nb07.mechanism_map.check(lambda: dict(nb07.MECHANISMS)).correct

    def starter():
        raise NotImplementedError

    assert nb07.mechanism_map.check(starter).status == "not attempted"
    wrong = dict(nb07.MECHANISMS, SAM="update_step")
    assert nb07.mechanism_map.check(wrong).status == "incorrect"
    assert nb07.mechanism_map.check({"Adam": "update_step"}).status == "incorrect"
    assert nb07.mechanism_map.check(["update_step"]).status == "incorrect"


def test_not_attempted():
    for exercise in (nb07.sam_perturbation_exercise, nb07.lookahead_sync, nb07.mechanism_map):
        assert exercise.check(None).status == "not attempted"
    assert nb07.sam_perturbation_exercise.check(_not_attempted).status == "not attempted"
    assert nb07.lookahead_sync.check(_not_attempted).status == "not attempted"
