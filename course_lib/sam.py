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
as Heun and Runge–Kutta do in notebooks 04–05, with the same machinery
(:mod:`course_lib.multi_gradient_step`) and the same guarantees, each a test in
``tests/test_sam.py``:

* **The formula**, exactly, on a quadratic (float64, against NumPy).
* **One mini-batch** for both gradients; **loss and metrics at p**, as a standard step logs.
* **Non-trainable state moves once**: BatchNorm's moving statistics (and dropout's seed state)
  are put back before the second pass and left as the first pass set them.
* ``jit_compile`` on or off; saving and loading (:class:`SAMModel`, :class:`SAMSequential`).
* **MirroredStrategy equals one device**: g is all-reduced before p̂ is built (each replica holds
  only part of the batch), and ĝ goes to the optimizer per replica, which sums it as usual.

On Keras's JAX backend :func:`stateless_sam_direction` builds the same p̂ from values, for the
stateless step of :mod:`course_lib.jax_training_step`.

Keras 3 ships no SAM (the legacy tf-keras has
``keras.models.experimental.SharpnessAwareMinimization``).
The denominator is ‖g‖ + 1e-12, as in the paper's code, so a zero gradient gives p̂ = p.
``rho=0`` is allowed: then SAM is the compiled optimizer at twice the cost (a useful check).
Two ways in, as for Runge–Kutta: the clean models, or :func:`inject_sam` on a compiled standard
model (``compile`` and :func:`eject_sam` undo it; saving an injected model saves the standard
model).
"""

from __future__ import annotations

from course_lib.distribution import sum_replicas
from course_lib.multi_gradient_step import (
    Direction,
    MultiGradientTrainStep,
    StepConfig,
    StepMethod,
    StepStart,
    TrialPoints,
    eject,
    inject,
    is_injected,
    multi_gradient_train_step,
)
from course_lib.validation import require_number

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras
from keras import ops

if keras.backend.backend() == "tensorflow":
    # The TensorFlow step; on JAX the stateless one (jax_training_step) runs without it.
    import tensorflow as tf

__all__ = [
    "NORM_EPSILON",
    "SAMConfig",
    "SAMModel",
    "SAMSequential",
    "SAMTrainStep",
    "eject_sam",
    "inject_sam",
    "is_sam_injected",
    "sam_direction",
    "sam_perturbation",
    "sam_train_step",
    "stateless_sam_direction",
]

#: Added to ‖g‖ so that a zero gradient does not divide by zero (the value of the paper's code).
NORM_EPSILON = 1e-12


def sam_perturbation(gradients: Sequence[Any], rho: float) -> list[Any]:
    """The step to the worst nearby point: ρ·g/(‖g‖ + ε), with ‖g‖ the norm over all tensors.

    ``gradients`` is one array or tensor per variable (``None`` entries stay ``None``); returns
    tensors. :func:`sam_direction` adds the result to the weights; notebook 07 builds it first.
    """
    present = [tf.convert_to_tensor(g) for g in gradients if g is not None]
    if not present:
        return [None for _ in gradients]
    dtype = present[0].dtype
    norm = tf.sqrt(tf.add_n([tf.reduce_sum(tf.square(tf.cast(g, dtype))) for g in present]))
    scale = tf.constant(rho, dtype) / (norm + tf.constant(NORM_EPSILON, dtype))
    return [None if g is None else tf.cast(scale, g.dtype) * g for g in map(_as_tensor, gradients)]


def _as_tensor(value: Any) -> Any:
    return None if value is None else tf.convert_to_tensor(value)


def sam_direction(trial: TrialPoints, start: StepStart, rho: float) -> Direction:
    """SAM's rule: the gradient at p̂ = p + ρ·g/‖g‖, with g the whole batch's gradient at p."""
    perturbation = sam_perturbation(sum_replicas(start.gradients), rho)
    point = [p if e is None else p + e for p, e in zip(start.weights, perturbation, strict=True)]
    return Direction(trial.gradients_at(start, point))


def stateless_sam_direction(trial: Any, start: StepStart, rho: float) -> Any:
    """SAM's rule on JAX (:mod:`course_lib.jax_training_step`): the same point p̂, pure values.

    ``trial`` is a ``StatelessTrialPoints``; the gradient at p is already the whole batch's.
    """
    from course_lib.jax_training_step import StatelessDirection

    gradients = start.gradients
    dtype = gradients[0].dtype
    squares = [ops.sum(ops.square(ops.cast(g, dtype))) for g in gradients]
    scale = rho / (ops.sqrt(functools.reduce(ops.add, squares)) + ops.cast(NORM_EPSILON, dtype))
    point = [
        p + ops.cast(scale, g.dtype) * g for p, g in zip(start.weights, gradients, strict=True)
    ]
    return StatelessDirection(trial.gradients_at(start, point))


@dataclass(frozen=True)
class SAMConfig(StepConfig):
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

    def direction_rule(self):
        return functools.partial(sam_direction, rho=self.rho)

    def stateless_direction_rule(self):
        return functools.partial(stateless_sam_direction, rho=self.rho)

    def to_config(self) -> dict[str, Any]:
        return {"rho": self.rho}


SAM = StepMethod(
    name="SAM",
    tag="_sam_config",
    setting="rho",
    needs_optimizer="SAM hands the gradient at the perturbed point to the compiled optimizer.",
)


def sam_train_step(model: keras.Model, data: Any, rho: float = 0.05) -> dict[str, Any]:
    """One SAM step of ``model`` on the mini-batch ``data``; returns the logs (taken at p).

    It must run inside Keras's train function (a replica context).
    """
    return multi_gradient_train_step(model, data, SAMConfig(rho).direction_rule())


# --------------------------------------------------------------------------------------------
# The clean route
# --------------------------------------------------------------------------------------------


class SAMTrainStep(MultiGradientTrainStep):
    """Mixin: a ``train_step`` that takes the SAM step. Put it before the Keras model class."""

    step_method = SAM
    step_defaults = {"rho": 0.05}

    def _step_config_for(self, rho: float = 0.05) -> SAMConfig:
        return SAMConfig(rho)

    @property
    def sam_rho(self) -> float:
        """ρ, the radius of the neighbourhood."""
        return self.step_config.rho


@keras.saving.register_keras_serializable(package="course_lib")
class SAMModel(SAMTrainStep, keras.Model):
    """A functional model trained by SAM: ``SAMModel(inputs=..., outputs=..., rho=0.05)``.

    Compile it with any optimizer; it receives the gradient at the perturbed point. Saves to
    ``.keras`` with its ``rho``.
    """

    def __init__(self, *args: Any, rho: float = 0.05, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._configure_step(rho=rho)


@keras.saving.register_keras_serializable(package="course_lib")
class SAMSequential(SAMTrainStep, keras.Sequential):
    """A Sequential model trained by SAM: ``SAMSequential(layers, rho=0.05)``."""

    def __init__(self, layers: list | None = None, rho: float = 0.05, **kwargs: Any) -> None:
        super().__init__(layers, **kwargs)
        self._configure_step(rho=rho)


# --------------------------------------------------------------------------------------------
# The intrusive route
# --------------------------------------------------------------------------------------------


def inject_sam(model: keras.Model, rho: float = 0.05) -> keras.Model:
    """Make a compiled standard model's ``fit`` take SAM steps; returns the model.

    Only ``model.train_function`` is replaced; ``evaluate`` and ``predict`` are unchanged.
    ``compile`` (which resets ``train_function``) or :func:`eject_sam` undoes it.
    """
    return inject(model, SAM, SAMConfig(rho), "inject_sam")


def is_sam_injected(model: keras.Model) -> bool:
    """Whether ``model.train_function`` is one installed by :func:`inject_sam`."""
    return is_injected(model, SAM)


def eject_sam(model: keras.Model) -> keras.Model:
    """Undo :func:`inject_sam`: the next ``fit`` builds Keras's standard step again."""
    return eject(model, SAM)
