"""The claim helper: prints its evidence when a sentence holds, fails loudly when it does not.

The last test shows the point of it: a notebook whose stored output says a claim held fails
strict nbval on the day a re-run produces numbers that contradict the sentence.
"""

from __future__ import annotations

from course_lib.claims import ClaimError, claim, format_number, roundoff

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient


def test_a_claim_that_holds_prints_the_sentence_and_its_numbers(capsys):
    ratio = 3.98123
    claim("the error falls about 4× when h halves", 3.5 < ratio < 4.5, ratio=ratio, runs=10)
    assert capsys.readouterr().out == (
        "✔ the error falls about 4× when h halves  [ratio = 3.981, runs = 10]\n"
    )


def test_a_claim_without_numbers_prints_only_the_sentence(capsys):
    claim("the two optimizers agree bit for bit", np.array_equal([1.0], [1.0]))
    assert capsys.readouterr().out == "✔ the two optimizers agree bit for bit\n"


def test_a_claim_that_fails_raises_with_its_numbers_and_prints_nothing(capsys):
    with pytest.raises(ClaimError) as raised:
        claim("7 of the 10 runs diverge", 3 == 7, diverged=3, of=10)
    message = str(raised.value)
    assert message.startswith("✘ no longer holds: 7 of the 10 runs diverge")
    assert "[diverged = 3, of = 10]" in message
    assert "re-check the prose" in message
    # It speaks to the learner as well as to the course's authors.
    assert "undo it" in message and "report it" in message
    assert capsys.readouterr().out == ""
    # An AssertionError, so that pytest and nbval report it as a failed check.
    assert isinstance(raised.value, AssertionError)


def test_numpy_comparisons_count_as_booleans(capsys):
    value = np.float32(0.25)
    claim("the loss is below 0.3", value < 0.3, loss=value)
    claim("every weight moved", np.all(np.array([1.0, 2.0]) > 0))
    assert capsys.readouterr().out.splitlines() == [
        "✔ the loss is below 0.3  [loss = 0.25]",
        "✔ every weight moved",
    ]


@pytest.mark.parametrize("not_a_comparison", [1, 0.0, np.array([True, False]), "yes", None])
def test_holds_must_be_a_comparison(not_a_comparison):
    with pytest.raises(TypeError, match="holds must be the result of a comparison"):
        claim("something", not_a_comparison)


def test_the_sentence_is_required():
    with pytest.raises(TypeError, match="non-empty string"):
        claim("  ", True)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (3, "3"),
        (np.int64(12), "12"),
        (True, "True"),
        (0.000123456, "0.0001235"),
        (1367.2, "1367"),
        (np.float32(2.5), "2.5"),
        (np.array(0.5), "0.5"),
        (float("nan"), "nan"),
        ("1.2e-07", "1.2e-07"),
    ],
)
def test_numbers_print_short_and_stable(value, shown):
    assert format_number(value) == shown


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0.0, "0"),
        (np.float32(0.0), "0"),
        (2.384185791015625e-07, "2e-07"),
        (np.float64(6.2e-08), "6e-08"),
        (np.array(0.0031), "3e-03"),
        (float("inf"), "inf"),
    ],
)
def test_roundoff_keeps_one_significant_digit_and_exact_zero(value, shown):
    assert roundoff(value) == shown


@pytest.mark.parametrize("not_a_number", ["< 1e-6", None, True, [1e-7]])
def test_roundoff_refuses_what_is_not_a_number(not_a_number):
    with pytest.raises(TypeError, match="roundoff needs a number"):
        roundoff(not_a_number)


def test_evidence_that_is_not_a_number_names_the_fix():
    with pytest.raises(TypeError, match=r"pass float\(x\)"):
        claim("the weights are small", True, weights=[0.1, 0.2])


def _claim_notebook(path: Path) -> None:
    """A one-claim notebook, executed and stored, whose number comes from the environment."""
    cell = textwrap.dedent(
        """\
        import os
        from course_lib.claims import claim
        loss = float(os.environ.get("CLAIM_TEST_LOSS", "0.25"))
        claim("the loss ends below 0.3", loss < 0.3, loss=loss)
        """
    )
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    NotebookClient(notebook, timeout=120, kernel_name="python3").execute()
    nbformat.write(notebook, path)


def _nbval(path: Path, loss: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, CLAIM_TEST_LOSS=loss)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval"]
    command += ["--nbval-current-env", str(path)]
    return subprocess.run(
        command, cwd=path.parent, env=env, capture_output=True, text=True, timeout=300
    )


def test_strict_nbval_fails_a_notebook_once_a_rerun_contradicts_its_claim(tmp_path):
    notebook = tmp_path / "claims.ipynb"
    _claim_notebook(notebook)
    stored = nbformat.read(notebook, as_version=4).cells[0].outputs[0]["text"]
    assert stored == "✔ the loss ends below 0.3  [loss = 0.25]\n"

    same = _nbval(notebook, "0.25")
    assert same.returncode == 0, same.stdout + same.stderr

    contradicted = _nbval(notebook, "0.5")
    assert contradicted.returncode != 0
    assert "no longer holds: the loss ends below 0.3" in contradicted.stdout
