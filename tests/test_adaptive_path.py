"""landscapes.adaptive_path (notebook 05's animation of an adaptive run) against SciPy's solvers."""

from course_lib.landscapes import Rosenbrock, adaptive_path
from course_lib.tableaux import get_tableau

import numpy as np
import pytest
from scipy.integrate import RK23, RK45

START = np.array([-1.2, 1.4])


def scipy_run(solver_class, first_step, steps, rtol, atol):
    """SciPy's solver on dp/dt = −∇L(p): accepted points and step sizes."""
    rosenbrock = Rosenbrock()
    solver = solver_class(
        lambda _, p: -rosenbrock.gradient(p),
        0.0,
        START,
        t_bound=np.inf,
        first_step=first_step,
        rtol=rtol,
        atol=atol,
    )
    points, sizes = [START], []
    for _ in range(steps):
        before = solver.t
        solver.step()
        sizes.append(solver.t - before)
        points.append(solver.y.copy())
    return np.array(points), np.array(sizes)


@pytest.mark.parametrize(
    ("name", "solver_class"), [("bogacki_shampine", RK23), ("dormand_prince", RK45)]
)
def test_an_adaptive_path_takes_scipys_steps_rejections_included(name, solver_class):
    run = adaptive_path(Rosenbrock().gradient, START, get_tableau(name), 0.02, 40, 1e-3, 1e-6)
    points, sizes = scipy_run(solver_class, 0.02, 40, 1e-3, 1e-6)
    np.testing.assert_allclose(run.step_sizes, sizes, rtol=1e-9)
    np.testing.assert_allclose(run.points, points, rtol=1e-9, atol=1e-12)
    assert run.rejections.sum() > 0  # the first step of 0.02 is too large: retried
    assert len(run.tries) == len(run.step_sizes) + run.rejections.sum()
    accepted = [end for _, _, end, ok in run.tries if ok]
    np.testing.assert_array_equal(np.array(accepted), run.points[1:])


def test_an_adaptive_path_needs_an_embedded_pair_and_a_positive_step():
    with pytest.raises(ValueError, match="embedded pair"):
        adaptive_path(Rosenbrock().gradient, START, get_tableau("rk4"), 0.01, 3)
    with pytest.raises(ValueError, match="first_step"):
        adaptive_path(Rosenbrock().gradient, START, get_tableau("dormand_prince"), 0.0, 3)
