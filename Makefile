# Two commands do all the set-up on a fresh machine with python3 and make:
#   make run   -> creates .venv, installs portinspect, runs `portinspect list`
#   make test  -> installs the test extra, runs ruff, mypy (strict) and the whole pytest suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
# pytest workers: the suite is mostly waiting on real servers, so two cores take two workers well.
JOBS   ?= 2

.PHONY: run install install-test test lint typecheck pytest bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

install: $(PY)
	$(PY) -m pip install --quiet -e .

install-test: $(PY)
	$(PY) -m pip install --quiet -e '.[test]'

run: install
	$(BIN)/portinspect list

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install-test
	$(BIN)/mypy

pytest: install-test
	$(BIN)/pytest -n $(JOBS) --durations=15

test: lint typecheck pytest

bench: install
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache
