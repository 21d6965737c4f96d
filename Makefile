# Set-up and the main jobs. `make demo` and `make test` each create .venv first if needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.rubench-installed

.PHONY: setup demo test bench clean

setup: $(STAMP)

# Installs the pinned versions of requirements.lock (torch 2.14.1 comes from this machine's disk).
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c requirements.lock -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/rubench demo --out rubench-demo

# Lint, the test suite, then the CI gate on ourselves: the digits zoo on a fixed 200-image
# subset must not regress against the committed baseline (refresh it on purpose with
# `rubench baseline .ci-demo -o .ci/digits-baseline.json` after an intended change).
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -q
	rm -f .ci-demo/results.sqlite  # keep the trained zoo, never reuse stored numbers here
	$(BIN)/rubench demo --out .ci-demo --limit 200 --no-progress > /dev/null
	$(BIN)/rubench check .ci-demo --baseline .ci/digits-baseline.json

bench: $(STAMP)
	$(BIN)/python bench/bench_clean.py

clean:
	rm -rf $(VENV) rubench-demo .ci-demo .pytest_cache .ruff_cache
