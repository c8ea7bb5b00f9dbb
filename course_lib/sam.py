"""SAM, sharpness-aware minimisation, as a training step (notebook 07).

SAM (Foret, Kleinberg, Mobahi and Neyshabur, "Sharpness-Aware Minimization for Efficiently
Improving Generalization", ICLR 2021) looks for weights whose whole neighbourhood has a low
loss, not just the point itself. Each step takes two gradients on the same mini-batch:

1. g = ∇L(p) at the current weights p;
2. the worst nearby point to first order, p̂ = p + ρ·g/‖g‖ (‖g‖ the norm over all weights);
3. the gradient there, ĝ = ∇L(p̂); back to p, and the compiled optimizer steps with ĝ.

With ``SGD(h)`` that is p ← p − h·∇L(p + ρ·g/‖g‖). In a sharp, narrow minimum p̂ lands on the
steep wall and the step pushes out; in a flat one p̂ is still low and SAM settles.

Two gradients per step do not fit ``update_step`` (it sees one), so SAM owns the training step,
as Heun and Runge–Kutta do in notebooks 04–05, with the same skeleton
(:mod:`course_lib.multi_gradient_step`: one mini-batch for both gradients, logs at p, BatchNorm's
statistics moved once, distribution equal to one device, on TensorFlow and JAX). This module is
SAM's rule (:func:`sam_direction`, written once in ``keras.ops``) and its setting ρ; the models
and the injection come from the skeleton's factory.

Keras 3 ships no SAM (the legacy tf-keras has
``keras.models.experimental.SharpnessAwareMinimization``).
The denominator is ‖g‖ + 1e-12, as in the paper's code, so a zero gradient gives p̂ = p.
``rho=0`` is allowed: then SAM is the compiled optimizer at twice the cost (a useful check).
Two ways in, as for Runge–Kutta: :class:`SAMModel`, :class:`SAMSequential`, or :func:`inject_sam`
on a compiled standard model (``compile`` and :func:`eject_sam` undo it; saving an injected
model saves the standard model). Both train under a ``mixed_float16`` policy: both gradients
are unscaled, and a step whose gradients overflow is skipped and counted in the logs
(``skipped_steps``), as :mod:`course_lib.multi_gradient_step` describes.
"""

from __future__ import annotations

from course_lib.multi_gradient_step.records import Direction, Method, StepStart, TrialPoints
from course_lib.multi_gradient_step.routes import MethodFamily, MethodSettings, routes
from course_lib.validation import require_number

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras
from keras import ops

__all__ = [
    "NORM_EPSILON",
    "ROUTES",
    "SAM",
    "SAMModel",
    "SAMSequential",
    "SAMSettings",
    "SAMTrainStep",
    "eject_sam",
    "inject_sam",
    "is_sam_injected",
    "sam_direction",
    "sam_perturbation",
]

#: Added to ‖g‖ so that a zero gradient does not divide by zero (the value of the paper's code).
NORM_EPSILON = 1e-12


def sam_perturbation(gradients: Sequence[Any], rho: float) -> list[Any]:
    """The step to the worst nearby point: ρ·g/(‖g‖ + ε), with ‖g‖ the norm over all tensors.

    ``gradients`` is one array or tensor per variable (``None`` entries stay ``None``); returns
    tensors of this backend. :func:`sam_direction` adds the result to the weights; notebook 07
    builds it first.
    """
    tensors = [None if g is None else ops.convert_to_tensor(g) for g in gradients]
    present = [g for g in tensors if g is not None]
    if not present:
        return list(tensors)
    dtype = present[0].dtype
    squares = [ops.sum(ops.square(ops.cast(g, dtype))) for g in present]
    norm = ops.sqrt(functools.reduce(ops.add, squares))
    scale = ops.convert_to_tensor(rho, dtype) / (norm + ops.convert_to_tensor(NORM_EPSILON, dtype))
    return [None if g is None else ops.cast(scale, g.dtype) * g for g in tensors]


def sam_direction(trial: TrialPoints, start: StepStart, step_size: Any, *, rho: float) -> Direction:
    """SAM's rule: the gradient at p̂ = p + ρ·g/‖g‖, g the whole batch's gradient at p.

    The step size is the optimizer's business: SAM only chooses where the gradient is taken.
    """
    del step_size
    perturbation = sam_perturbation(start.gradients, rho)
    point = [p if e is None else p + e for p, e in zip(start.weights, perturbation, strict=True)]
    return Direction(trial.gradients_at(start, point))


@dataclass(frozen=True)
class SAMSettings(MethodSettings):
    """SAM's one setting: ρ, the radius of the neighbourhood (checked: a finite number ≥ 0)."""

    rho: float = 0.05

    def __post_init__(self) -> None:
        rho = require_number(
            self.rho,
            "rho",
            low=0.0,
            meaning="the radius of the neighbourhood",
            example="rho=0.05 (the paper's default)",
        )
        object.__setattr__(self, "rho", rho)

    def method(self, model: keras.Model, intrusive: bool, where: str) -> Method:
        del model, intrusive, where  # SAM has no state of its own.
        return Method(functools.partial(sam_direction, rho=self.rho))


SAM = MethodFamily(
    name="SAM",
    class_prefix="SAM",
    function_suffix="sam",
    settings=SAMSettings,
    setting="rho",
    needs_optimizer="SAM hands the gradient at the perturbed point to the compiled optimizer.",
    compile_hint="any optimizer; it receives the gradient at the perturbed point",
)

#: The mixin, the two model classes and the injection, made by the skeleton's factory.
ROUTES = routes(SAM)
SAMTrainStep, SAMModel, SAMSequential, inject_sam, is_sam_injected, eject_sam = ROUTES
