"""One training step that takes several gradients on the same mini-batch (notebooks 04, 05, 07, A3).

A Keras optimizer's ``update_step`` sees one gradient. Heun and Runge–Kutta (notebooks 04–05)
and SAM (notebook 07) need the gradient at other points too, on the *same* mini-batch, so they
own the training step. Each is a :class:`~.records.Method`: a *rule*, written once in
``keras.ops`` against one question, "the gradient at this point, on this batch"
(:class:`~.records.TrialPoints`), and optionally a step-size controller
(:mod:`course_lib.adaptive`). Everything else is this package's skeleton:

* :mod:`.records`: what the pieces hand each other (imports nothing of course_lib);
* :mod:`.step`: the part every backend shares: the loss at p logged, the method's step taken,
  the metrics at p;
* :mod:`.tensorflow_backend` (a tape, and the model's variables moved to each trial point and
  back) and :mod:`.jax_backend` (``jax.value_and_grad`` of Keras's forward pass, a pure function
  of the state): the first pass, the trial points and the state, each backend its own way;
* :mod:`.loss_scaling`: mixed precision, for every method at once (below);
* :mod:`.routes`: the two ways in, a model class and injection into a compiled model, made for
  every method by one factory.

Mixed precision: under a ``mixed_float16`` policy ``compile`` wraps the optimizer in Keras's
``LossScaleOptimizer``, and the skeleton does what Keras's own step does, at every trial point:
each pass differentiates the loss times the loss scale and hands the rule the gradients divided
by it, so every method sees float32's gradients. A step in which a gradient is not finite is
skipped as a whole (the weights, the optimizer's variables and the non-trainable state such as
BatchNorm's statistics stay as they were), the loss scale halves, and the logs count it:
``skipped_steps`` is the number of steps skipped since the train function was made (``compile``
or an injection), so ``History`` holds its value at the end of each epoch. A fixed
``loss_scale_factor`` on the optimizer is refused with a clear error.

Keras fixes its backend when it is first imported (``KERAS_BACKEND``), so the backend's
skeleton is chosen once, here, as :mod:`course_lib.distribution` chooses its helpers.

The idea of taking over the training step comes from Su Jianlin, "Keras之小众需求:自定义优化器"
(kexue.fm, 2018), which built Keras 2's ``model.train_function`` by hand.
"""

from __future__ import annotations

from course_lib.environment import backend_module
from course_lib.multi_gradient_step.records import Method

from collections.abc import Callable
from typing import Any

import keras

__all__ = ["BACKENDS", "after_each_step", "make_train_function", "train_step"]

#: The skeleton of each backend course_lib's training steps run on.
BACKENDS: dict[str, str] = {
    "tensorflow": "course_lib.multi_gradient_step.tensorflow_backend",
    "jax": "course_lib.multi_gradient_step.jax_backend",
}


_backend = backend_module(BACKENDS, "multi-gradient training steps")


def train_step(model: keras.Model, method: Method, *args: Any) -> Any:
    """One step of ``method``, with the arguments of this backend's ``Model.train_step``.

    TensorFlow: ``train_step(model, method, data) -> logs``. JAX: ``train_step(model, method,
    state, data) -> (logs, state)``. The logs describe the start point, as a standard step's.
    """
    return _backend.train_step(model, method, *args)


def make_train_function(model: keras.Model, method: Method) -> Callable:
    """Keras's own train function around ``method``'s step, for a model that does not own it."""
    return _backend.make_train_function(model, method)


def after_each_step(
    function: Callable, model: keras.Model, check: Callable[[dict], None]
) -> Callable:
    """A train function that runs ``check(logs)`` on the Python side after each call.

    ``check`` may raise (the adaptive step's failure policy); on JAX the model then keeps the
    state the step returned.
    """
    return _backend.after_each_step(function, model, check)
