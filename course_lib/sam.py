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
  only part of the batch), the logged loss is unscaled, and ĝ goes to the optimizer per replica,
  which sums it as usual.

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
from course_lib.keras_internals import make_train_function
from course_lib.multi_gradient_step import (
    assign_all,
    check_injectable,
    forward,
    install_train_function,
    is_injected,
    remove_train_function,
    require_optimizer,
    snapshot,
    track_loss,
)
from course_lib.validation import require_number

import functools
from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf

#: Added to ‖g‖ so that a zero gradient does not divide by zero (the value of the paper's code).
NORM_EPSILON = 1e-12
_INJECTED_ATTRIBUTE = "_sam_rho"


def sam_perturbation(gradients: Sequence[Any], rho: float) -> list[Any]:
    """The step to the worst nearby point: ρ·g/(‖g‖ + ε), with ‖g‖ the norm over all tensors.

    ``gradients`` is one array or tensor per variable (``None`` entries stay ``None``); returns
    tensors. :func:`sam_train_step` adds the result to the weights; notebook 07 builds it first.
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


def _validate_rho(rho: Any) -> float:
    return require_number(
        rho,
        "rho",
        low=0.0,
        meaning="the radius of the neighbourhood",
        example="rho=0.05 (the paper's default)",
    )


def _check_optimizer(model: keras.Model, where: str) -> None:
    require_optimizer(
        model, where, "SAM hands the gradient at the perturbed point to the compiled optimizer."
    )


# --------------------------------------------------------------------------------------------
# The training step
# --------------------------------------------------------------------------------------------


def sam_train_step(model: keras.Model, data: Any, rho: float = 0.05) -> dict[str, Any]:
    """One SAM step of ``model`` on the mini-batch ``data``; returns the logs (taken at p).

    The body of :meth:`SAMTrainStep.train_step` and of the function :func:`inject_sam`
    installs; it must run inside Keras's train function (a replica context).
    """
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    variables = list(model.trainable_variables)
    frozen = list(model.non_trainable_variables)
    start = snapshot(variables)
    frozen_before = snapshot(frozen)

    # First pass at p: what fit() logs, and the only pass whose BatchNorm statistics are kept.
    y_pred, loss, local_gradients = forward(model, x, y, sample_weight, variables)
    track_loss(model, loss, x)
    frozen_after = snapshot(frozen)

    # Second pass at p̂ = p + ρ·g/‖g‖, built from the whole batch's gradient.
    perturbation = sam_perturbation(sum_replicas(local_gradients), rho)
    assign_all(
        variables,
        [p if e is None else p + e for p, e in zip(start, perturbation, strict=True)],
    )
    assign_all(frozen, frozen_before)
    _, _, sharp_gradients = forward(model, x, y, sample_weight, variables)

    assign_all(variables, start)
    assign_all(frozen, frozen_after)
    model.optimizer.apply_gradients(zip(sharp_gradients, variables, strict=True))
    return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)


class SAMTrainStep:
    """Mixin: a ``train_step`` that takes the SAM step. Put it before the Keras model class."""

    sam_rho: float

    def _configure_sam(self, rho: float) -> None:
        self.sam_rho = _validate_rho(rho)

    def train_step(self, data: Any) -> dict[str, Any]:
        return sam_train_step(self, data, self.sam_rho)

    def make_train_function(self, force: bool = False):
        if self.train_function is not None and not force:
            return self.train_function
        _check_optimizer(self, f"{type(self).__name__}.fit")
        self.train_function = make_train_function(self, self.train_step)
        return self.train_function


@keras.saving.register_keras_serializable(package="course_lib")
class SAMModel(SAMTrainStep, keras.Model):
    """A functional model trained by SAM: ``SAMModel(inputs=..., outputs=..., rho=0.05)``.

    Compile it with any optimizer; it receives the gradient at the perturbed point. Saves to
    ``.keras`` with its ``rho``.
    """

    def __init__(self, *args: Any, rho: float = 0.05, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._configure_sam(rho)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["rho"] = self.sam_rho
        return config


@keras.saving.register_keras_serializable(package="course_lib")
class SAMSequential(SAMTrainStep, keras.Sequential):
    """A Sequential model trained by SAM: ``SAMSequential(layers, rho=0.05)``."""

    def __init__(self, layers: list | None = None, rho: float = 0.05, **kwargs: Any) -> None:
        super().__init__(layers, **kwargs)
        self._configure_sam(rho)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["rho"] = self.sam_rho
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects=None) -> SAMSequential:
        config = dict(config)
        rho = config.pop("rho", 0.05)
        model = super().from_config(config, custom_objects=custom_objects)
        model._configure_sam(rho)
        return model


# --------------------------------------------------------------------------------------------
# The intrusive route
# --------------------------------------------------------------------------------------------


def inject_sam(model: keras.Model, rho: float = 0.05) -> keras.Model:
    """Make a compiled standard model's ``fit`` take SAM steps; returns the model.

    Only ``model.train_function`` is replaced; ``evaluate`` and ``predict`` are unchanged.
    ``compile`` (which resets ``train_function``) or :func:`eject_sam` undoes it.
    """
    check_injectable(model, "inject_sam", SAMTrainStep, "rho")
    _check_optimizer(model, "inject_sam")
    rho = _validate_rho(rho)
    step = functools.partial(sam_train_step, model, rho=rho)
    return install_train_function(model, make_train_function(model, step), _INJECTED_ATTRIBUTE, rho)


def is_sam_injected(model: keras.Model) -> bool:
    """Whether ``model.train_function`` is one installed by :func:`inject_sam`."""
    return is_injected(model, _INJECTED_ATTRIBUTE)


def eject_sam(model: keras.Model) -> keras.Model:
    """Undo :func:`inject_sam`: the next ``fit`` builds Keras's standard step again."""
    return remove_train_function(model, _INJECTED_ATTRIBUTE, "SAM")


__all__ = [
    "NORM_EPSILON",
    "SAMModel",
    "SAMSequential",
    "SAMTrainStep",
    "eject_sam",
    "inject_sam",
    "is_sam_injected",
    "sam_perturbation",
    "sam_train_step",
]
