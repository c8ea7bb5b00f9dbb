"""The quadratic that judges a learner's Heun step: notebook 04 (TensorFlow) and appendix A3 (JAX).

A bias-free ``Dense(1)`` fitted with MSE on :func:`course_lib.data.quadratic_regression_data`,
both rows in one batch, has exactly the loss L(p) = ½pᵀAp: notebook 04's yardstick. One Heun step
there is p − h/2·(Ap + A(p − hAp)), and each known mistake is another formula, so a check can say
which mistake a learner made and at which step. The learning rate falls by 40 % every step (a
schedule): a step size typed in, or read once when the step is traced, shows from step 2 on.
NumPy and the backend-neutral Keras API only, so that the TensorFlow check and the JAX check
share it, :func:`train_on_the_quadratic` included.
"""

from __future__ import annotations

from course_lib.checks import Incorrect

from collections.abc import Mapping, Sequence

import keras
import numpy as np

#: Notebook 04's quadratic and start point.
A = np.array([[3.0, 1.0], [1.0, 2.0]])
START = np.array([1.5, -2.0])
#: Steps the check trains (one batch per epoch, so that each epoch logs one step's loss).
STEPS = 3
#: The schedule: h = FIRST_RATE · DECAY^k at step k (from 0).
FIRST_RATE, DECAY = 0.2, 0.6

#: Known mistakes in the weights, in the order the check tries them (keys of the messages).
WEIGHT_MISTAKES = (
    "not restored",
    "gradient descent",
    "second slope only",
    "sum",
    "uphill trial",
    "half-step trial",
    "first rate",
)
#: Known mistakes in the logged loss.
LOSS_MISTAKES = ("trial loss", "loss after the step", "both losses")
#: What the known mistakes that read the same on either backend mean; each check adds the
#: messages that name its backend's API (restoring the weights, reading h, the optimizer call).
SHARED_MESSAGES = {
    "second slope only": "the optimizer received g2 alone, the slope at the trial point: Heun "
    "averages the two slopes, (g1 + g2)/2.",
    "sum": "the optimizer received g1 + g2, twice the average: Heun's step is p − h/2·(g1 + g2).",
    "uphill trial": "the second gradient was taken at p + h·g1, uphill: the trial point is an "
    "ordinary gradient step, p − h·g1.",
    "half-step trial": "the second gradient was taken at p − h/2·g1, half a step ahead (the "
    "midpoint method's probe): Heun's trial point is a whole step, p − h·g1.",
    "trial loss": "it is the loss at the trial point p − h·g1. Log the loss of the first pass, "
    "at p, as fit's own step does.",
    "loss after the step": "it is the loss after the step. Log the loss of the first pass, at p, "
    "as fit's own step does.",
}


def rate(step: int) -> float:
    """The learning rate (the step size h) of step ``step``, counted from 0."""
    return FIRST_RATE * DECAY**step


def loss(p: np.ndarray) -> float:
    return float(0.5 * p @ A @ p)


def gradient(p: np.ndarray) -> np.ndarray:
    return A @ p


def heun_step(p: np.ndarray, step: int, form: str = "heun") -> np.ndarray:
    """Step ``step`` from ``p``: Heun's (``form="heun"``) or one of :data:`WEIGHT_MISTAKES`."""
    h = rate(step)
    g1 = gradient(p)
    probe = {"uphill trial": p + h * g1, "half-step trial": p - h / 2 * g1}.get(form, p - h * g1)
    if form == "first rate":
        probe = p - rate(0) * g1
    g2 = gradient(probe)
    if form == "gradient descent":
        return p - h * g1
    if form == "second slope only":
        return p - h * g2
    if form == "sum":
        return p - h * (g1 + g2)
    origin = p - h * g1 if form == "not restored" else p
    return origin - h / 2 * (g1 + g2)


def logged_loss(p: np.ndarray, step: int, form: str = "heun") -> float:
    """The loss Heun's step logs (at p), or what one of :data:`LOSS_MISTAKES` logs instead."""
    trial = p - rate(step) * gradient(p)
    if form == "trial loss":
        return loss(trial)
    if form == "loss after the step":
        return loss(heun_step(p, step))
    if form == "both losses":
        return (loss(p) + loss(trial)) / 2
    return loss(p)


def trajectory(steps: int = STEPS) -> list[np.ndarray]:
    """Heun's points after each of ``steps`` steps from :data:`START`."""
    points, p = [], START
    for step in range(steps):
        p = heun_step(p, step)
        points.append(p)
    return points


def _same(a: np.ndarray | float, b: np.ndarray | float, atol: float = 1e-5) -> bool:
    return bool(np.allclose(np.asarray(a, dtype=np.float64), b, rtol=1e-5, atol=atol))


def judge(
    points: Sequence[np.ndarray],
    losses: Sequence[float],
    optimizer_steps: int,
    messages: Mapping[str, str],
) -> None:
    """Raise :class:`Incorrect` at the first thing a learner's run does that Heun's step does not.

    ``points`` are the weights after each step, ``losses`` the loss logged for each step and
    ``optimizer_steps`` the compiled optimizer's iteration count after the run. ``messages``
    maps each of :data:`WEIGHT_MISTAKES`, :data:`LOSS_MISTAKES`, "optimizer" (it did not step
    once per step) and "own update" (the weights moved, the optimizer never stepped) to the
    words of the learner's backend. Each step is judged from the learner's own previous point, so
    the message names the step where the run first leaves Heun's.
    """
    if optimizer_steps != STEPS:
        moved = bool(points) and not _same(points[-1], START, atol=0.0)
        key = "own update" if optimizer_steps == 0 and moved else "optimizer"
        raise Incorrect(
            f"in {STEPS} training steps the compiled optimizer stepped {optimizer_steps} times. "
            + messages[key]
        )
    previous = START
    for step, (got, logged) in enumerate(zip(points, losses, strict=True)):
        number = f"step {step + 1} (h = {rate(step):g})"
        if not _same(got, heun_step(previous, step)):
            for form in WEIGHT_MISTAKES:
                if _same(got, heun_step(previous, step, form)):
                    raise Incorrect(f"at {number}: {messages[form]}")
            raise Incorrect(
                f"at {number} your weights are {np.round(got, 5)}; Heun's step from your previous "
                f"point {np.round(previous, 5)} gives {np.round(heun_step(previous, step), 5)}."
            )
        if not _same(logged, logged_loss(previous, step), atol=1e-4):
            for form in LOSS_MISTAKES:
                if _same(logged, logged_loss(previous, step, form), atol=1e-4):
                    raise Incorrect(f"at {number} the logged loss is wrong: {messages[form]}")
            raise Incorrect(
                f"at {number} the logged loss is {logged:.5g}; the loss at the start point p is "
                f"{logged_loss(previous, step):.5g}."
            )
        previous = np.asarray(got, dtype=np.float64)


__all__ = [
    "A",
    "LOSS_MISTAKES",
    "START",
    "STEPS",
    "WEIGHT_MISTAKES",
    "heun_step",
    "judge",
    "logged_loss",
    "rate",
    "trajectory",
]


def train_on_the_quadratic(model_class: type) -> tuple[list, list, int]:
    """Weights after each step, each step's logged loss and the optimizer's count.

    ``model_class`` (a ``keras.Model`` subclass with the learner's step) trains a bias-free
    ``Dense(1)`` from :data:`START` for :data:`STEPS` steps with the falling rate, one batch
    per epoch; ``fit`` writes the weights back at each epoch's end on both backends.
    """
    from course_lib.data import quadratic_regression_data

    x, y = quadratic_regression_data(A)
    inputs = keras.Input((2,))
    model = model_class(inputs=inputs, outputs=keras.layers.Dense(1, use_bias=False)(inputs))
    schedule = keras.optimizers.schedules.ExponentialDecay(
        FIRST_RATE, decay_steps=1, decay_rate=DECAY
    )
    model.compile(optimizer=keras.optimizers.SGD(schedule), loss="mse")
    kernel = model.layers[-1].kernel
    kernel.assign(START[:, None].astype("float32"))
    points: list[np.ndarray] = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: points.append(
            np.asarray(kernel.numpy())[:, 0].astype(np.float64)
        )
    )
    history = model.fit(
        x, y, batch_size=2, epochs=STEPS, shuffle=False, verbose=0, callbacks=[record]
    )
    return points, history.history["loss"], int(model.optimizer.iterations.numpy())
