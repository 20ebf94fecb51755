# Two commands do all the set-up on a fresh machine with python3 and make:
#   make run   -> creates .venv, installs portinspect, runs `portinspect list`
#   make test  -> installs the test extra, runs ruff, mypy (strict) and the whole pytest suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
# pytest workers: the suite is mostly waiting on real servers, so two cores take two workers well.
JOBS   ?= 2

.PHONY: run install install-test test lint typecheck pytest test-repeat bench clean

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

# The suite N times, counting failures per test: make test-repeat N=10 [JOBS=4]
# [FRESH=1: each run `make test` in a fresh clone] [PRIVATE=1: clones under a 0700 directory]
# [CONCURRENT=2: that many clones' suites at the same time]. See scripts/test_repeat.py.
N ?= 10
test-repeat: install-test
	$(PY) scripts/test_repeat.py --runs $(N) --jobs $(JOBS) $(if $(FRESH),--fresh) \
		$(if $(PRIVATE),--private) $(if $(CONCURRENT),--concurrent $(CONCURRENT))

bench: install
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache
