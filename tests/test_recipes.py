"""docs/recipes.md cannot drift: every recipe on the page runs, on each backend it names.

The code comes from the page itself (tests/recipes_page.py), so a renamed argument or a changed
behaviour fails here, at the page's line. The recipes check their own promises where they make
one (a resumed SoftBatch equals the run that never stopped). This module runs in both passes of
``make test``: a recipe that names JAX runs in the JAX pass. The same recipes run again with
course_lib installed as a package in tests/test_installed_package.py.
"""

from __future__ import annotations

import keras
import pytest

from recipes_page import BACKENDS, SETUP_TITLE, program, read_page, run

BACKEND = keras.backend.backend()
SETUP, RECIPES = read_page()


@pytest.fixture
def restored_globals():
    """A recipe may set a global distribution, JAX's x64 mode or the dtype policy; the next test
    gets them back."""
    x64, policy = None, keras.config.dtype_policy()
    if BACKEND == "jax":
        import jax

        x64 = jax.config.jax_enable_x64
    yield
    keras.config.set_dtype_policy(policy)
    if BACKEND == "jax":
        import jax

        keras.distribution.set_distribution(None)
        jax.config.update("jax_enable_x64", x64)


@pytest.mark.parametrize("recipe", RECIPES, ids=[recipe.title for recipe in RECIPES])
def test_the_recipe_runs_on_the_backends_it_names(recipe, restored_globals, capsys):
    if not recipe.runs_on(BACKEND):
        pytest.skip(f"the page says this recipe runs on {', '.join(recipe.backends)}")
    run(SETUP, recipe)
    assert capsys.readouterr().out.strip(), "a recipe prints what it did"


def test_the_page_has_the_recipes_the_course_promises():
    """SoftBatch, Lookahead, the training steps (injected and as models) and JAX's DataParallel."""
    titles = " | ".join(recipe.title for recipe in RECIPES)
    for topic in ["SoftBatch", "Lookahead", "SAM", "Heun", "adaptive", "DataParallel"]:
        assert topic in titles, f"no recipe about {topic}: {titles}"
    named = {backend for recipe in RECIPES for backend in recipe.backends}
    assert named == set(BACKENDS.values()), named


PAGE = """\
# Recipes

```bash
pip install .
```

## Set-up

```python
value = 1
```

## First

Runs on: TensorFlow and JAX.

```python
value += 1
```

Some prose.

```python
assert value == 2
```
"""


def _line(text: str, page: str = PAGE) -> int:
    return page.splitlines().index(text) + 1


def test_the_page_reader_keeps_line_numbers_and_backends():
    setup, recipes = read_page(PAGE)
    assert setup == "\n" * (_line("value = 1") - 1) + "value = 1\n"
    [recipe] = recipes
    assert (recipe.title, recipe.backends) == ("First", ("tensorflow", "jax"))
    lines = recipe.code.splitlines()
    assert lines[_line("value += 1") - 1] == "value += 1"
    assert lines[_line("assert value == 2") - 1] == "assert value == 2"
    assert "Some prose." not in recipe.code
    assert run(setup, recipe)["value"] == 2
    assert f"RECIPES = {[(recipe.title, recipe.code)]!r}" in program(setup, recipes, "jax")


@pytest.mark.parametrize(
    ("page", "message"),
    [
        (PAGE.replace("Runs on: TensorFlow and JAX.", ""), "needs a line 'Runs on:"),
        (PAGE.replace("and JAX", "and PyTorch"), "unknown backend 'PyTorch'"),
        (PAGE.replace(f"## {SETUP_TITLE}\n\n```python\nvalue = 1\n```\n", ""), "no '## Set-up'"),
        (PAGE.replace("```bash", "```python"), "before the first '## ' section"),
        (PAGE + "\n## Second\n\nRuns on: JAX.\n", "names backends but has no python block"),
        (PAGE + "\n```python\nunclosed = True\n", "never closed"),
    ],
    ids=["no backends", "unknown backend", "no set-up", "code outside", "no code", "unclosed"],
)
def test_the_page_reader_refuses_a_recipe_the_tests_would_miss(page, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        read_page(page)


def test_a_failing_recipe_fails_at_its_line_of_the_page():
    broken = PAGE.replace("assert value == 2", "assert value == 3")
    setup, [recipe] = read_page(broken)
    with pytest.raises(AssertionError) as raised:
        run(setup, recipe)
    failed = raised.traceback[-1]
    assert failed.frame.code.raw.co_filename == "docs/recipes.md"
    assert failed.lineno + 1 == _line("assert value == 3", broken)  # pytest counts from 0
