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


def _scales(weights, eta):
    return [np.abs(np.asarray(w, dtype=float)) + eta for w in weights]


def test_adaptive_sam_accepts_the_solution_and_an_independent_derivation():
    assert nb07.adaptive_sam.check(nb07.adaptive_perturbation).correct

    def through_the_ball(weights, gradients, rho, eta=0.01):
        # ε = T∘δ with δ = ρ·(T∘g)/‖T∘g‖, the SAM step in the rescaled coordinates
        scaled = [t * np.asarray(g) for t, g in zip(_scales(weights, eta), gradients, strict=True)]
        deltas = sam_perturbation(scaled, rho)
        return [t * d.numpy() for t, d in zip(_scales(weights, eta), deltas, strict=True)]

    assert nb07.adaptive_sam.check(through_the_ball).correct


def test_adaptive_sam_rejects_realistic_wrong_answers():
    def plain_sam(weights, gradients, rho, eta=0.01):
        return [e.numpy() for e in sam_perturbation(gradients, rho)]

    def one_scale_only(weights, gradients, rho, eta=0.01):  # T∘g/‖T∘g‖: forgets to map δ back
        scaled = [t * np.asarray(g) for t, g in zip(_scales(weights, eta), gradients, strict=True)]
        return [e.numpy() for e in sam_perturbation(scaled, rho)]

    def norm_of_the_plain_gradient(weights, gradients, rho, eta=0.01):
        norm = np.sqrt(sum(np.sum(np.square(g)) for g in gradients))
        return [
            rho * t**2 * g / norm for t, g in zip(_scales(weights, eta), gradients, strict=True)
        ]

    def per_variable_norm(weights, gradients, rho, eta=0.01):
        return [
            rho * t**2 * g / np.linalg.norm(t * g)
            for t, g in zip(_scales(weights, eta), gradients, strict=True)
        ]

    def without_eta(weights, gradients, rho, eta=0.01):
        return nb07.adaptive_perturbation(weights, gradients, rho, eta=0.0)

    def downhill(weights, gradients, rho, eta=0.01):
        return [-e for e in nb07.adaptive_perturbation(weights, gradients, rho, eta)]

    wrong_answers = (
        plain_sam,
        one_scale_only,
        norm_of_the_plain_gradient,
        per_variable_norm,
        without_eta,
        downhill,
    )
    for wrong in wrong_answers:
        result = nb07.adaptive_sam.check(wrong)
        assert result.status == "incorrect", wrong.__name__
    assert "‖ε/T‖" in nb07.adaptive_sam.check(one_scale_only).message


def test_adaptive_sam_not_attempted():
    assert nb07.adaptive_sam.check(None).status == "not attempted"
    assert nb07.adaptive_sam.check(_not_attempted).status == "not attempted"


def test_hints_do_not_contain_the_formulas():
    for exercise, answer in (
        (nb07.sam_perturbation_exercise, "rho / (norm"),
        (nb07.adaptive_sam, "T²"),
        (nb07.lookahead_sync, "fraction alpha of the gap"),
        (nb07.mechanism_map, "SoftBatch and Lookahead keep"),
    ):
        assert answer not in exercise._hint


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
    for name, mechanism in (("SAM", "update_step"), ("Lookahead", "train_step")):
        wrong = dict(nb07.MECHANISMS, **{name: mechanism})
        assert nb07.mechanism_map.check(wrong).status == "incorrect", name
    assert nb07.mechanism_map.check({"Adam": "update_step"}).status == "incorrect"
    assert nb07.mechanism_map.check(["update_step"]).status == "incorrect"


def test_not_attempted():
    exercises = (
        nb07.sam_perturbation_exercise,
        nb07.adaptive_sam,
        nb07.lookahead_sync,
        nb07.mechanism_map,
    )
    for exercise in exercises:
        assert exercise.check(None).status == "not attempted"
    assert nb07.sam_perturbation_exercise.check(_not_attempted).status == "not attempted"
    assert nb07.lookahead_sync.check(_not_attempted).status == "not attempted"
