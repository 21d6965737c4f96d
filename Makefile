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

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python bench/bench_clean.py

clean:
	rm -rf $(VENV) rubench-demo .pytest_cache .ruff_cache
