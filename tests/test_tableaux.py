"""Butcher tableaux: SciPy's coefficients, validation errors, stability (course_lib.tableaux)."""

from __future__ import annotations

from course_lib.tableaux import (
    TABLEAUX,
    ButcherTableau,
    InvalidTableauError,
    get_tableau,
    real_stability_limit,
    stability_function,
)

import numpy as np
import pytest
from scipy.integrate import RK23, RK45

EXPECTED_NAMES = {
    "euler",
    "midpoint",
    "heun",
    "ralston",
    "kutta3",
    "rk4",
    "bogacki_shampine",
    "dormand_prince",
}


def test_named_tableaux_are_the_documented_set():
    assert set(TABLEAUX) == EXPECTED_NAMES
    assert {name: t.order for name, t in TABLEAUX.items()} == {
        "euler": 1,
        "midpoint": 2,
        "heun": 2,
        "ralston": 2,
        "kutta3": 3,
        "rk4": 4,
        "bogacki_shampine": 3,
        "dormand_prince": 5,
    }


@pytest.mark.parametrize(("name", "solver"), [("bogacki_shampine", RK23), ("dormand_prince", RK45)])
def test_embedded_pairs_equal_scipy(name, solver):
    tableau = TABLEAUX[name]
    n = solver.n_stages
    assert tableau.stages == n + 1  # plus the "first same as last" stage at the new point
    np.testing.assert_allclose(tableau.c[:n], solver.C, rtol=0, atol=1e-15)
    a = np.array(tableau.a)[:n, :n]
    columns = solver.A.shape[1]  # SciPy stores RK45's A without its all-zero last column
    np.testing.assert_allclose(a[:, :columns], solver.A, rtol=0, atol=1e-14)
    assert not a[:, columns:].any()
    np.testing.assert_allclose(tableau.b[:n], solver.B, rtol=0, atol=1e-15)
    # SciPy's E is b_hat - b over all stages (its error estimate is h·Σ E_i k_i).
    np.testing.assert_allclose(np.subtract(tableau.b_hat, tableau.b), solver.E, atol=1e-15)
    # The last row of A is b: the last stage is evaluated at the new point.
    np.testing.assert_allclose(tableau.a[-1], tableau.b, atol=0)
    assert tableau.order == solver.order
    assert tableau.embedded_order == solver.error_estimator_order
    assert tableau.is_adaptive


def test_classic_coefficients():
    heun = TABLEAUX["heun"]
    assert heun.c == (0.0, 1.0) and heun.a == ((0.0, 0.0), (1.0, 0.0)) and heun.b == (0.5, 0.5)
    assert TABLEAUX["rk4"].b == (1 / 6, 1 / 3, 1 / 3, 1 / 6)
    assert TABLEAUX["ralston"].a[1][0] == 2 / 3
    assert not heun.is_adaptive
    assert TABLEAUX["bogacki_shampine"].stages_needed() == 3
    assert TABLEAUX["bogacki_shampine"].stages_needed(adaptive=True) == 4


def test_get_tableau_by_name_and_object():
    assert get_tableau("RK4") is TABLEAUX["rk4"]
    assert get_tableau("dormand-prince") is TABLEAUX["dormand_prince"]
    assert get_tableau(TABLEAUX["heun"]) is TABLEAUX["heun"]
    assert get_tableau(TABLEAUX["dormand_prince"].to_config()) == TABLEAUX["dormand_prince"]


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="rk5") as info:
        get_tableau("rk5")
    for name in EXPECTED_NAMES:
        assert name in str(info.value)
    with pytest.raises(TypeError, match="tableau must be"):
        get_tableau(4)


def _heun_kwargs(**overrides):
    kwargs = dict(name="t", c=(0.0, 1.0), a=((0.0, 0.0), (1.0, 0.0)), b=(0.5, 0.5), order=2)
    kwargs.update(overrides)
    return kwargs


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"a": ((0.5, 0.0), (0.5, 0.0))}, "not explicit"),
        ({"a": ((0.0, 0.5), (1.0, 0.0))}, "not explicit"),
        ({"b": (0.5, 0.6)}, "Σ b_i = 1"),
        ({"c": (0.0, 0.5)}, "row sums of A"),
        ({"b": (0.5, 0.5, 0.0)}, "b has 3 entries"),
        ({"a": ((0.0,), (1.0,))}, "full 2×2 matrix"),
        ({"b": (0.5, float("nan"))}, "finite"),
        ({"order": 3}, "order-3 condition"),
        ({"order": 0}, "order must be an integer"),
        ({"b_hat": (1.0, 0.0)}, "go together"),
        ({"b_hat": (1.0, 0.0), "embedded_order": 2}, "b_hat fails the order-2"),
        ({"b_hat": (0.5, 0.5), "embedded_order": 1}, "b_hat equals b"),
    ],
)
def test_invalid_tableaux_raise_clear_errors(overrides, message):
    with pytest.raises(InvalidTableauError, match=message):
        ButcherTableau(**_heun_kwargs(**overrides))


def test_an_embedded_pair_estimates_the_error_with_b_minus_b_hat():
    valid = ButcherTableau(**_heun_kwargs(b_hat=(1.0, 0.0), embedded_order=1))
    assert valid.is_adaptive and valid.error_weights == (-0.5, 0.5)


def test_stability_function_is_the_step_factor():
    # One step of the method on dp/dt = λp multiplies p by R(hλ): compare with the closed forms.
    z = np.linspace(-3, 0.5, 11)
    np.testing.assert_allclose(stability_function("euler", z), 1 + z)
    np.testing.assert_allclose(stability_function("heun", z), 1 + z + z**2 / 2)
    np.testing.assert_allclose(
        stability_function("rk4", z), 1 + z + z**2 / 2 + z**3 / 6 + z**4 / 24, atol=1e-14
    )
    complex_z = np.array([1j, -1 + 1j])
    np.testing.assert_allclose(
        stability_function("midpoint", complex_z), 1 + complex_z + complex_z**2 / 2
    )


@pytest.mark.parametrize(
    ("name", "limit"),
    [
        ("euler", 2.0),
        ("heun", 2.0),
        ("midpoint", 2.0),
        ("kutta3", 2.5127453266183286),
        ("rk4", 2.785293563405282),
        ("bogacki_shampine", 2.5127453266183286),
        ("dormand_prince", 3.3066),
    ],
)
def test_real_stability_limit(name, limit):
    x = real_stability_limit(name)
    assert x == pytest.approx(limit, abs=1e-4)
    values = np.abs(stability_function(name, -np.linspace(0, x, 2001)))
    assert values.max() <= 1 + 1e-9
    assert abs(stability_function(name, -(x + 1e-3))) > 1
