# StoreSync developer entry points. Every target creates .venv when it is missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PKGS := sync_protocol storesync_runtime edge_agent cloud_hub tui storesync_harness

.PHONY: demo test bench bench-quick lint format faults clean constraints

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

# The suite waits on real processes far more than it computes: two workers (pytest-xdist) fill the two cores.
# Tests go to the workers one at a time, the long ones first (tests/conftest.py RUN_FIRST), so neither
# worker is left alone with a long test at the end. TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist load --maxschedchunk 1 $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

bench-quick: $(STAMP)
	$(BIN)/python bench/run.py --quick

faults: $(STAMP)
	$(BIN)/python -m storesync_harness.faults --verbose $(FAULTS_ARGS)

# Schemathesis against the hub's and the agent's OpenAPI, plus the Hypothesis parsers, with many more cases than
# `make test` (FUZZ_EXAMPLES per operation and generation mode); prints the cases run.
FUZZ_EXAMPLES ?= 300
fuzz: $(STAMP)
	STORESYNC_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) STORESYNC_FUZZ_SCALE=10 $(BIN)/python -m pytest -s -p no:cacheprovider \
		tests/security/test_fuzz_api.py tests/security/test_no_500.py tests/security/test_cards.py

lint: $(STAMP)
	$(BIN)/ruff check $(PKGS) tests bench scripts
	$(BIN)/ruff format --check $(PKGS) tests bench scripts
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format $(PKGS) tests bench scripts
	$(BIN)/ruff check --fix $(PKGS) tests bench scripts

clean:
	rm -rf $(VENV) demo-data .pytest_cache .mypy_cache .ruff_cache

# Pin what the installers install to the versions in this environment (after `make test` passed).
constraints: $(STAMP)
	@{ echo "# Pinned versions for installers/systemd/install.sh and installers/windows/install.ps1 (pip -c)."; \
	   echo "# Regenerate with: make constraints  (the versions the test suite passed with)."; \
	   $(BIN)/python -m pip freeze --exclude-editable | grep -v '^storesync'; } > installers/constraints.txt
