# Two commands on a fresh machine: `make demo` and `make test` (each creates .venv first).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test test-engine demo bench bench-quick docs lint clean

# The distribution was named flask-jobs before (a name an unrelated PyPI project owns): an old
# .venv's install of it, or its flask_jobs.egg-info left in the checkout, would be a second
# flask_jobs distribution with its own entry points, so the install removes both.
$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip uninstall -qq -y flask-jobs
	rm -rf flask_jobs.egg-info
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

test-engine: $(STAMP)
	$(BIN)/python -m pytest -m "not browser"

demo: $(STAMP)
	$(BIN)/python -m example_app.demo

# The benchmark has a venv of its own, with what a user installs (no test tools): the test
# extra brings OpenTelemetry, which redis-py loads (and instruments with) whenever it is
# installed, and which would weigh on every figure.
BENCH_VENV := .venv-bench
BENCH_BIN := $(BENCH_VENV)/bin
BENCH_STAMP := $(BENCH_VENV)/.installed

$(BENCH_STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_BIN)/python -m pip install -q --upgrade pip
	$(BENCH_BIN)/python -m pip install -q -e '.[bench,hiredis,embedded,gevent]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BENCH_BIN)/python -m bench.run
	$(BENCH_BIN)/python -m bench.web_bench

bench-quick: $(BENCH_STAMP)
	$(BENCH_BIN)/python -m bench.run --quick
	$(BENCH_BIN)/python -m bench.web_bench --quick

$(VENV)/.docs: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[docs]'
	touch $(VENV)/.docs

docs: $(VENV)/.docs
	$(BIN)/python -m sphinx -W --keep-going -b html docs docs/_build/html

# ruff, the types (mypy --strict, config in pyproject.toml) and the house's import layers.
lint: $(STAMP)
	$(BIN)/python -m ruff check flask_jobs tests example_app bench
	$(BIN)/python -m mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) $(BENCH_VENV) docs/_build build dist *.egg-info
