"""Self-checks for notebook 07 (Lookahead and SAM): the two mechanisms, and two transfers.

The lesson has the learner write the core of each mechanism, checked right after:

* :data:`lookahead`: Lookahead's synchronisation inside a wrapper optimizer (the class and its
  judge live in :mod:`course_lib.checks.lookahead_problem`, which appendix A2 shares);
* :data:`sam`: SAM's trial point p + ρ·g/‖g‖ and the gradient there (:class:`MySAMModel` on the
  training-step frame :class:`SAMFrame`), judged against NumPy on a small regression; when the
  weights part, the usual mistakes are replayed in NumPy and the one they follow is named.

The exercises at the end are transfers, not copies of a cell:

* :data:`adaptive_sam`: the notebook builds SAM's perturbation ρ·g/‖g‖; the learner derives ASAM's
  (Kwon, Kim, Park and Choi, "ASAM: Adaptive Sharpness-Aware Minimization for Scale-Invariant
  Learning of Deep Neural Networks", ICML 2021) from its definition.
* :data:`weight_average`: the notebook builds Lookahead as a wrapper optimizer; the learner builds
  another wrapper with state across steps, an exponential moving average of the weights that the
  model receives when training ends, and meets Keras's own ``use_ema`` as the reference.

Each check compares the learner's answer with a reference on small cases;
``tests/test_checks_nb07.py`` lists the known-wrong answers each one must reject.
"""

from __future__ import annotations

from course_lib.checks import Exercise, Incorrect, expect_close
from course_lib.checks.lookahead_problem import (
    LEARNING_RATE,
    MyLookahead,
    judge_lookahead,
    mse_gradient,
    regression_problem,
    weights_after_each_step,
)
from course_lib.environment import no_retracing_warning

import functools
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

# --------------------------------------------------------------------------------------------
# SAM's trial point, written by the learner in the lesson
# --------------------------------------------------------------------------------------------


class SAMFrame(keras.Model):
    """SAM's training step around the trial point: notebook 04's Heun frame, given."""

    def __init__(self, *args, rho=0.05, **kwargs):
        super().__init__(*args, **kwargs)
        self.rho = rho

    def train_step(self, data):
        x, y = data[0], data[1]
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred)
        g = tape.gradient(loss, self.trainable_variables)
        sharp_g = self.gradient_at_trial_point(x, y, g)
        self.optimizer.apply(sharp_g, self.trainable_variables)
        for metric in self.metrics:  # loss and metrics at the start point p
            if metric.name == "loss":
                metric.update_state(loss)
        return self.compute_metrics(x, y, y_pred)


class MySAMModel(SAMFrame):
    """A model whose training step is SAM's: the gradient at the worst nearby point."""

    def gradient_at_trial_point(self, x, y, g):
        variables = self.trainable_variables
        start = [tf.identity(v.value) for v in variables]  # copies, not references
        norm = tf.sqrt(tf.add_n([tf.reduce_sum(gi * gi) for gi in g]))  # over all the weights
        for v, gi in zip(variables, g, strict=True):
            v.assign_add(self.rho * gi / (norm + 1e-12))  # to p + rho g/(|g| + 1e-12)
        with tf.GradientTape() as tape:
            trial_loss = self.compute_loss(x=x, y=y, y_pred=self(x, training=True))
        sharp_g = tape.gradient(trial_loss, variables)  # on the same batch
        for v, value in zip(variables, start, strict=True):
            v.assign(value)  # back to p
        return sharp_g


#: SAM's radius, the steps the check trains, and how closely they must follow NumPy (float64).
SAM_RHO, SAM_STEPS, SAM_TOLERANCE = 0.5, 4, 1e-9

Problem = tuple[np.ndarray, np.ndarray, list[np.ndarray]]


def near_a_minimum() -> Problem:
    """A regression whose start is a hair from its minimum: every residual is exactly 2⁻³⁶.

    Small integers and binary fractions keep every product exact in float64, so ‖g‖ is about
    5e-11 and the 1e-12 in ρ·g/(‖g‖ + 1e-12) changes the step by about 2 %: a step without it
    (or one that divides 0 by 0 when g = 0) shows here.
    """
    x = np.array([[1, 2, -1], [0, 1, 3], [2, -1, 1], [-1, 0, 2], [3, 1, 0], [1, -2, -1]], float)
    kernel, bias = np.array([[0.5], [0.25], [-0.5]]), np.array([2.0**-36])
    return x, x @ kernel, [kernel, bias]


def sam_reference(
    problem: Problem | None = None,
    *,
    steps: int = SAM_STEPS,
    direction: float = 1.0,
    normalise: str = "global",
    guard: float = 1e-12,
    at_trial_point: bool = True,
    restore: bool = True,
) -> list[list[np.ndarray]]:
    """The weights after each SAM step on ``problem`` (the regression by default), in NumPy.

    With the defaults, SAM itself: ε = ρ·g/(‖g‖ + 1e-12) with one norm over all the variables,
    ĝ = ∇L(p + ε), p ← p − lr·ĝ. The keywords replay the usual mistakes: ``direction=-1``
    perturbs downhill; ``normalise`` is ``"none"`` (ε = ρ·g), ``"squared"`` (divides by ‖g‖²)
    or ``"per variable"``; ``guard=0`` drops the 1e-12; ``at_trial_point=False`` takes ĝ at p;
    ``restore=False`` lets the optimizer step from p + ε.
    """
    x, y, initial = regression_problem() if problem is None else problem
    weights, after_each_step = [w.copy() for w in initial], []
    for _ in range(steps):
        g = mse_gradient(weights, x, y)
        norm = np.sqrt(sum(float(np.sum(gi**2)) for gi in g))
        scale = {
            "global": [norm + guard] * len(g),
            "none": [1.0] * len(g),
            "squared": [norm**2 + guard] * len(g),
            "per variable": [float(np.linalg.norm(gi)) + guard for gi in g],
        }[normalise]
        moves = zip(weights, g, scale, strict=True)
        trial = [w + direction * SAM_RHO * gi / s for w, gi, s in moves]
        sharp_g = mse_gradient(trial, x, y) if at_trial_point else g
        base = weights if restore else trial
        weights = [w - LEARNING_RATE * gi for w, gi in zip(base, sharp_g, strict=True)]
        after_each_step.append([w.copy() for w in weights])
    return after_each_step


#: Mistakes the SAM check recognises: the NumPy replay of each, and what to tell the learner.
SAM_MISTAKES: tuple[tuple[dict[str, Any], str], ...] = (
    (
        {"at_trial_point": False},
        "your weights follow plain SGD: the gradient you return is the one at p. Take a new "
        "forward pass and a new tape after moving to the trial point, and return its gradient.",
    ),
    (
        {"direction": -1.0},
        "you perturb downhill, to p − ρ·g/‖g‖: SAM looks for the worst nearby point, uphill, "
        "at p + ρ·g/‖g‖.",
    ),
    (
        {"normalise": "none"},
        "your trial point is p + ρ·g, at a distance ρ·‖g‖ from p: divide by ‖g‖ so that it "
        "lies at distance ρ.",
    ),
    (
        {"normalise": "squared"},
        "you divide by ‖g‖², the sum of squares: ‖g‖ is its square root.",
    ),
    (
        {"normalise": "per variable"},
        "you normalise each variable's gradient by its own norm: SAM's ‖g‖ is one norm over all "
        "the weights together, so the whole step ε has length ρ.",
    ),
    (
        {"restore": False},
        "the optimizer steps from the trial point, not from p: put every variable back to its "
        "start value before returning the gradient.",
    ),
)


def train_sam(
    answer: Callable[..., Any], problem: Problem | None = None, steps: int = SAM_STEPS
) -> list[list[np.ndarray]]:
    """Train with ``fit`` and ``answer``'s training step in float64: weights after each step.

    The model is a float64 ``Dense(1)`` whatever Keras's default float type, so that the check
    is as tight in a float32 session as in notebook 07's float64 one. One step per epoch.
    """
    x, y, initial = regression_problem() if problem is None else problem
    inputs = keras.Input((x.shape[1],), dtype="float64")
    outputs = keras.layers.Dense(1, dtype="float64")(inputs)
    model = answer(inputs=inputs, outputs=outputs, rho=SAM_RHO)
    if not isinstance(model, keras.Model):
        raise Incorrect(f"your class must be a keras.Model subclass; got {type(model).__name__}.")
    model.set_weights(initial)
    loss = keras.losses.MeanSquaredError(dtype="float64")
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE), loss=loss)
    return weights_after_each_step(model, x, y, steps)


def _follows(got: list[list[np.ndarray]], expected: list[list[np.ndarray]]) -> bool:
    return all(
        np.all(np.isfinite(a)) and float(np.max(np.abs(a - b))) <= SAM_TOLERANCE
        for step_got, step_expected in zip(got, expected, strict=True)
        for a, b in zip(step_got, step_expected, strict=True)
    )


def _check_sam(answer: Callable[..., Any]) -> str:
    got = train_sam(answer)
    if not _follows(got, sam_reference()):
        for mistake, message in SAM_MISTAKES:
            if _follows(got, sam_reference(**mistake)):
                raise Incorrect(message)
        expected = sam_reference()
        first = next(
            s for s in range(SAM_STEPS) if not _follows(got[s : s + 1], expected[s : s + 1])
        )
        gaps = [
            float(np.max(np.abs(a - b))) for a, b in zip(got[first], expected[first], strict=True)
        ]
        raise Incorrect(
            f"the weights part from SAM's at step {first + 1}: the kernel by up to {gaps[0]:.3g}, "
            f"the bias by {gaps[1]:.3g}. Move to p + ρ·g/‖g‖ (one norm over all the weights), "
            "take the gradient there on the same batch, go back to p, and return that gradient."
        )
    if not _follows(
        train_sam(answer, near_a_minimum(), 1), sam_reference(near_a_minimum(), steps=1)
    ):
        raise Incorrect(
            "near a minimum, where ‖g‖ is about 5e-11, your step is not ρ·g/(‖g‖ + 1e-12). Add "
            "the 1e-12 to ‖g‖, as the NumPy version does: it keeps a zero gradient from dividing "
            "0 by 0, and later cells compare your class with NumPy to 1e-12."
        )
    return (
        f"{SAM_STEPS} steps of fit (ρ = {SAM_RHO}) follow SAM's formula, and so does a step "
        "near a minimum: the gradient at p + ρ·g/(‖g‖ + 1e-12), one norm over all the weights, "
        "applied at p."
    )


def _as_array(value: Any) -> np.ndarray | None:
    return None if value is None else np.asarray(value, dtype=np.float64)


def adaptive_perturbation(
    weights: Sequence[Any], gradients: Sequence[Any], rho: float, eta: float = 0.01
) -> list[np.ndarray]:
    """ASAM's step to the worst nearby point: ε = ρ·T²∘g / ‖T∘g‖ with T = |p| + η.

    SAM's neighbourhood is a ball ‖ε‖ ≤ ρ, the same for every weight. ASAM measures it relative
    to each weight's size, ‖ε/T‖ ≤ ρ, so that rescaling a layer (which leaves the network's
    function unchanged) no longer changes the sharpness. Maximising the first-order change g·ε
    over that ellipsoid gives ε = ρ·T²∘g/‖T∘g‖, one norm over all the variables. (The authors'
    code scales only weight matrices and leaves biases at T = 1; here every variable is scaled.)
    """
    scales = [np.abs(np.asarray(p, dtype=np.float64)) + eta for p in weights]
    grads = [np.asarray(g, dtype=np.float64) for g in gradients]
    norm = np.sqrt(sum(float(np.sum((t * g) ** 2)) for t, g in zip(scales, grads, strict=True)))
    return [rho * t**2 * g / (norm + 1e-12) for t, g in zip(scales, grads, strict=True)]


_ADAPTIVE_CASES: tuple[tuple[list[np.ndarray], list[np.ndarray], float, float], ...] = (
    ([np.array([2.0, -0.5])], [np.array([1.0, 3.0])], 0.5, 0.01),
    (
        [np.array([[1.0, -3.0], [0.2, 0.0]]), np.array([4.0])],
        [np.array([[0.5, 0.5], [-1.0, 2.0]]), np.array([-0.25])],
        0.1,
        0.01,
    ),
    ([np.array([0.0, 1.0]), np.array([-2.0])], [np.array([2.0, -1.0]), np.array([1.0])], 1.0, 0.1),
)


def _check_adaptive(function: Callable[..., Any]) -> str:
    for weights, gradients, rho, eta in _ADAPTIVE_CASES:
        got = list(function([w.copy() for w in weights], [g.copy() for g in gradients], rho, eta))
        expected = adaptive_perturbation(weights, gradients, rho, eta)
        if len(got) != len(expected):
            raise Incorrect(f"expected one entry per variable ({len(expected)}), got {len(got)}.")
        got = [_as_array(g) for g in got]
        for index, (g, e) in enumerate(zip(got, expected, strict=True)):
            if g is None or g.shape != e.shape:
                shape = None if g is None else g.shape
                raise Incorrect(f"perturbation {index} has shape {shape}, expected {e.shape}.")
        scales = [np.abs(w) + eta for w in weights]
        reach = np.sqrt(sum(float(np.sum((g / s) ** 2)) for g, s in zip(got, scales, strict=True)))
        if not abs(reach - rho) <= 1e-6 * rho:
            raise Incorrect(
                f"your ε has ‖ε/T‖ = {reach:.4g} with T = |p| + eta (rho={rho}, eta={eta}): "
                "the worst point to first order lies on the edge of the neighbourhood, where "
                "‖ε/T‖ = ρ, over all the variables together."
            )
        for index, (g, e) in enumerate(zip(got, expected, strict=True)):
            expect_close(
                f"the perturbation of variable {index} (rho={rho}, eta={eta})", g, e, atol=1e-9
            )
    return (
        "ρ·T²∘g/‖T∘g‖: the largest first-order rise of the loss over the ellipsoid ‖ε/T‖ ≤ ρ, "
        "whose axes grow with each weight's size."
    )


# --------------------------------------------------------------------------------------------
# A wrapper that averages the weights
# --------------------------------------------------------------------------------------------

#: The checks' settings: SGD's learning rate and the average's momentum.
_LEARNING_RATE, _MOMENTUM = 0.05, 0.9


class WeightAverage(keras.optimizers.Optimizer):
    """Let ``inner`` train the weights and keep their exponential moving average.

    After the first step the average is the weights themselves; after each later step,
    average ← momentum·average + (1 − momentum)·weights. The model trains with its own weights;
    ``fit`` calls ``finalize_variable_values`` when training ends, and only then do the averages
    replace them. Keras's optimizers do the same with ``use_ema=True``.
    """

    def __init__(self, inner, momentum=0.99, name="weight_average"):
        super().__init__(learning_rate=0.0, name=name)  # unused: the inner rate counts
        self.inner = inner
        self.momentum = momentum

    def build(self, variables):
        super().build(variables)
        self.inner.build(variables)
        self.averages = [self.add_variable_from_reference(v, name="average") for v in variables]

    def apply(self, grads, trainable_variables=None):
        if not self.built:
            self.build(trainable_variables)
        self.inner.apply(grads, trainable_variables)  # the weights move first
        first_step = ops.equal(self.inner.iterations, 1)
        for average, variable in zip(self.averages, trainable_variables, strict=True):
            momentum = ops.cast(ops.where(first_step, 0.0, self.momentum), variable.dtype)
            average.assign(momentum * average + (1 - momentum) * variable)

    def finalize_variable_values(self, var_list):
        for variable, average in zip(var_list, self.averages, strict=True):
            variable.assign(average)


def _regression_problem() -> tuple[np.ndarray, np.ndarray]:
    """96 examples of a small regression, trained in 6 batches of 16 for 2 epochs (12 steps)."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(96, 4)).astype("float32")
    y = np.tanh(x @ rng.normal(size=(4, 1))).astype("float32")
    return x, y


def _fit(optimizer: Any) -> list[np.ndarray]:
    """Train the same small model from the same weights with ``optimizer``; its final weights."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(7)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(1)]
    )
    model.compile(optimizer=optimizer, loss="mse")
    x, y = _regression_problem()
    with no_retracing_warning():
        model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    return model.get_weights()


@functools.lru_cache(maxsize=2)
def _references(floatx: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Plain SGD's final weights, and Keras's own average of them (``use_ema``), in ``floatx``.

    The same for every answer, so computed once per float type.
    """
    trained = _fit(keras.optimizers.SGD(_LEARNING_RATE))
    averaged = _fit(keras.optimizers.SGD(_LEARNING_RATE, use_ema=True, ema_momentum=_MOMENTUM))
    return trained, averaged


def _largest_gap(weights: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> float:
    return max(float(np.abs(a - b).max()) for a, b in zip(weights, reference, strict=True))


def _check_weight_average(answer: Any) -> str:
    if not callable(answer):
        raise Incorrect(f"pass your class itself, got {type(answer).__name__}.")
    optimizer = answer(keras.optimizers.SGD(_LEARNING_RATE), momentum=_MOMENTUM)
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise Incorrect(
            "your class must be a keras.optimizers.Optimizer subclass, so that compile accepts "
            f"it; got {type(optimizer).__name__}."
        )
    got = _fit(optimizer)
    trained, expected = _references(keras.config.floatx())
    if _largest_gap(got, trained) < 1e-6:
        raise Incorrect(
            "after fit the model holds the weights SGD trained, not their average. fit tells "
            "the optimizer that training has ended by calling one of its methods with the "
            "model's variables: find it in keras.optimizers.Optimizer and let it write the "
            "averages into them."
        )
    gap = _largest_gap(got, expected)
    if gap > 1e-6:
        raise Incorrect(
            f"after 12 steps with momentum {_MOMENTUM} the weights differ from Keras's "
            f"SGD(use_ema=True, ema_momentum={_MOMENTUM}) by up to {gap:.3g}. Check three "
            "things: the average is taken of the weights after the inner step; after the first "
            "step it is those weights themselves; the model trains with its own weights and "
            "receives the averages only when training ends."
        )
    return (
        f"equal to Keras's own SGD(use_ema=True, ema_momentum={_MOMENTUM}) after fit: a "
        "wrapper with state across steps, written into the model when training ends."
    )


lookahead = Exercise(
    title="Lookahead's synchronisation",
    checker=judge_lookahead,
    hint=(
        "Two pieces. The decision: apply has just counted the fast step, so the count reads k "
        "exactly when a cycle is complete; ops.cond takes that boolean, the branch to run and a "
        "branch that does nothing. The branch: for each pair, slow moves a fraction α of the way "
        "to fast, then fast takes slow's new value; and the count starts again."
    ),
    solution=MyLookahead,
)

sam = Exercise(
    title="SAM's trial point and the gradient there",
    checker=_check_sam,
    hint=(
        "‖g‖ is the square root of the sum of every entry of every gradient squared. Move each "
        "variable by rho·its gradient/‖g‖ (assign_add), then run the model again inside a new "
        "GradientTape (the first tape is spent) and take the loss's gradient there. Before "
        "returning it, assign each variable its start value."
    ),
    solution=MySAMModel,
)

adaptive_sam = Exercise(
    title="Adaptive SAM's step to the worst nearby point",
    checker=_check_adaptive,
    hint=(
        "Substitute ε = T∘δ: the constraint ‖ε/T‖ ≤ ρ becomes ‖δ‖ ≤ ρ, a plain ball, and the "
        "first-order rise g·ε becomes (T∘g)·δ. You already know which δ maximises a dot product "
        "over a ball. Then map δ back to ε. The norm runs over all the variables together."
    ),
    solution=adaptive_perturbation,
)

weight_average = Exercise(
    title="A wrapper that averages the weights",
    checker=_check_weight_average,
    hint=(
        "Start from MyLookahead's shape: the inner optimizer built in build, one optimizer "
        "variable per weight for the averages, and apply lets the inner optimizer step before "
        "anything else. Inside fit's compiled step a Python if on a tensor fails, so how will "
        "apply recognise the first step? The inner optimizer counts its own steps. And nothing "
        "in apply should write the model's weights: look for the Optimizer method that fit "
        "calls once, when training ends."
    ),
    solution=WeightAverage,
)

__all__ = [
    "MyLookahead",
    "MySAMModel",
    "SAMFrame",
    "SAM_MISTAKES",
    "WeightAverage",
    "adaptive_perturbation",
    "adaptive_sam",
    "lookahead",
    "sam",
    "near_a_minimum",
    "sam_reference",
    "train_sam",
    "weight_average",
]
