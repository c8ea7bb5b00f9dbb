# One entry point for learners and maintainers. `make lab` opens the course, `make test` runs
# every test (on the TensorFlow backend, and the backend tests again on JAX). Both create the
# virtual environment .venv on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

# Quiet, repeatable TensorFlow for every process started from here (course_lib sets the same
# defaults when imported first; see course_lib/environment.py).
export TF_CPP_MIN_LOG_LEVEL := 3
export TF_ENABLE_ONEDNN_OPTS := 0
export PYTHONHASHSEED := 0
export PATH := $(CURDIR)/$(BIN):$(PATH)

PYTEST_NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg
LAB_ARGS ?=

E2E_STAMP := $(VENV)/.e2e-stamp
SITE_STAMP := $(VENV)/.site-stamp
# npm ci writes this file; MathJax for the website, pinned by book/package-lock.json.
MATHJAX := book/node_modules/.package-lock.json

.PHONY: setup lab test e2e site lint format notebooks benchmarks clean

setup: $(STAMP)

$(STAMP): pyproject.toml tools/ipython_kernel_config.py tools/pins.py
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[lab,test]"
	$(BIN)/python -m pip install --quiet --no-deps $$($(BIN)/python tools/pins.py no-deps)
	mkdir -p $(VENV)/etc/ipython
	cp tools/ipython_kernel_config.py $(VENV)/etc/ipython/ipython_kernel_config.py
	touch $(STAMP)

lab: $(STAMP)
	$(BIN)/jupyter lab --ServerApp.root_dir=$(CURDIR) \
		--LabApp.default_url=/lab/tree/notebooks/00_index.ipynb $(LAB_ARGS)

# Keras fixes its backend per process, so the unit tests run twice. First on TensorFlow, the
# course's backend: every test and every notebook. Then on JAX: only the tests about backends,
# the modules listed in RUNS_ON_JAX in tests/conftest.py (the optimizers and wrappers of
# notebooks 02, 03 and 07, the distribution seam, scale-out over 2 devices and 2 processes,
# appendix A2's checks); tests/conftest.py leaves every other module out of that run.
test: $(STAMP) lint
	KERAS_BACKEND=tensorflow $(BIN)/python -m pytest $(PYTEST_NBVAL) tests notebooks
	KERAS_BACKEND=jax $(BIN)/python -m pytest tests

$(E2E_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[lab,test,e2e]"
	touch $(E2E_STAMP)

# The course as a learner meets it: JupyterLab in a real browser, Binder's start-up simulated,
# and the website built offline and read page by page (e2e/test_site.py builds it itself).
e2e: $(E2E_STAMP) $(SITE_STAMP) $(MATHJAX)
	bash e2e/ensure_chromium.sh
	$(BIN)/python -m pytest e2e

# With the other extras, so that pip resolves the website's packages against their pins.
$(SITE_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[lab,test,site]"
	touch $(SITE_STAMP)

$(MATHJAX): book/package.json book/package-lock.json
	@command -v npm >/dev/null || { echo "MathJax for the website comes from npm, which is \
	missing: install Node.js and npm (Debian: apt-get install npm), then rerun" >&2; exit 1; }
	npm ci --prefix book --ignore-scripts --no-audit --no-fund
	touch $(MATHJAX)

# The course as a static website, built from the stored notebooks (no kernel), offline:
# open build/book/_build/html/index.html.
site: $(SITE_STAMP) $(MATHJAX)
	$(BIN)/python book/build.py

lint: $(STAMP)
	$(BIN)/ruff check course_lib tests e2e benchmarks tools notebooks book
	$(BIN)/ruff format --check course_lib tests e2e benchmarks tools notebooks book

format: $(STAMP)
	$(BIN)/ruff check --fix course_lib tests e2e benchmarks tools notebooks book
	$(BIN)/ruff format course_lib tests e2e benchmarks tools notebooks book

# Re-run notebooks in place (all, or NB=notebooks/02_minimal_optimizer.ipynb).
notebooks: $(STAMP)
	$(BIN)/python tools/execute_notebooks.py $(NB)

benchmarks: $(STAMP)
	for script in benchmarks/*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache test-artifacts build book/node_modules
