"""A probe rule for the tests of the multi-gradient skeleton: the gradient one step ahead.

The skeleton's guarantees (logs at the start point, one mini-batch, non-trainable state moved
once, the routes, distribution equal to one device) hold for any rule, so they are tested once,
with the simplest rule that uses all of them: the gradient at p̂ = p − reach·g, g = ∇L(p) the
whole batch's gradient (the "extragradient"). With ``SGD(h)`` on L(p) = ½ pᵀAp a step is

    p ← p − h·A·(I − reach·A)·p,

and ``reach=0`` takes the gradient at p again: Keras's own step, bit for bit. The rule also adds
the step size it was handed to the logs, so a test can see that the logs of a rule reach ``fit``.
The models and the injection come from the library's own factory
(:func:`course_lib.multi_gradient_step.routes.routes`).
"""

from __future__ import annotations

from course_lib.multi_gradient_step.records import Direction, Method, StepStart, TrialPoints
from course_lib.multi_gradient_step.routes import MethodFamily, MethodSettings, routes

import functools
from dataclasses import dataclass
from typing import Any

import keras
from keras import ops


def probe_direction(trial: TrialPoints, start: StepStart, step_size: Any, *, reach: float):
    """The gradient at p − reach·g; logs ``probe_step_size``, the step size handed to the rule."""
    point = [
        p if g is None else p - ops.convert_to_tensor(reach, p.dtype) * g
        for p, g in zip(start.weights, start.gradients, strict=True)
    ]
    return Direction(trial.gradients_at(start, point), {"probe_step_size": step_size})


@dataclass(frozen=True)
class ProbeSettings(MethodSettings):
    """How far ahead the probe takes its gradient: p̂ = p − reach·g."""

    reach: float = 0.0

    def method(self, model: keras.Model, intrusive: bool, where: str) -> Method:
        return Method(functools.partial(probe_direction, reach=self.reach))


PROBE = MethodFamily(
    name="probe",
    class_prefix="Probe",
    function_suffix="probe",
    settings=ProbeSettings,
    setting="reach",
    needs_optimizer="the probe hands its gradient to the compiled optimizer.",
    compile_hint="any optimizer",
    package="course_lib_tests",
)

ROUTES = routes(PROBE)
