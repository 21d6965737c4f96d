# Set-up and the main jobs. `make demo` and `make test` each create .venv first if needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.rubench-installed

.PHONY: setup demo test ci-baseline ci-zoo bench clean

setup: $(STAMP)

# Installs the pinned versions of requirements.lock (torch 2.14.1 comes from this machine's disk).
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c requirements.lock -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/rubench demo --out rubench-demo

# The CI gate on ourselves evaluates the digits zoo committed in .ci/zoo (fixed weights: training
# does not reproduce bit for bit on another CPU) on a fixed 200-image subset, and checks it against
# the committed baseline with the tolerances (and their reasons) of .ci/gate.toml.
GATE_OUT := .ci-demo
GATE_FLAGS := --limit 200 --threads 1 --out $(GATE_OUT) --no-progress
GATE_EVAL := $(BIN)/rubench evaluate .ci/zoo --suite digits --data-root $(GATE_OUT)/data $(GATE_FLAGS)

# Lint, the test suite, then the gate; the full verdict table lands in .ci-demo/check.txt.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -q
	rm -f $(GATE_OUT)/results.sqlite  # never reuse stored numbers here
	$(GATE_EVAL)
	$(BIN)/rubench check $(GATE_OUT) --baseline .ci/digits-baseline.json \
		--tolerances .ci/gate.toml --output $(GATE_OUT)/check.txt

# After an intended change of the gate's numbers: evaluate the committed zoo, store the baseline.
ci-baseline: $(STAMP)
	rm -f $(GATE_OUT)/results.sqlite
	$(GATE_EVAL)
	$(BIN)/rubench baseline $(GATE_OUT) -o .ci/digits-baseline.json --no-samples  # tolerances decide

# After an intended change of the zoo's training: retrain the committed zoo here, then re-baseline.
ci-zoo: $(STAMP)
	$(BIN)/rubench demo --zoo .ci/zoo --retrain $(GATE_FLAGS) > /dev/null
	$(MAKE) ci-baseline

bench: $(STAMP)
	$(BIN)/python bench/bench_clean.py

clean:
	rm -rf $(VENV) rubench-demo .ci-demo .pytest_cache .ruff_cache
