# The two commands of the contract: `make quickstart` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SOURCES := tessera policies connector broker tests deploy bench

.PHONY: quickstart console test test-postgresql fuzz lint bench clean

# The PostgreSQL pass of `make test`: the storage, protocol, usage, API, console and broker suites again with the broker
# and every connector on a fresh PostgreSQL database (TESSERA_TEST_DATABASE, tests/postgres.py).
PG_SUITE := \
	tests/connector/test_storage.py \
	tests/connector/test_audit.py \
	tests/connector/test_anchoring.py \
	tests/connector/test_copies.py \
	tests/connector/test_crash.py \
	tests/connector/test_protocol.py \
	tests/connector/test_negotiation.py \
	tests/connector/test_transfers.py \
	tests/connector/test_exchange.py \
	tests/connector/test_management.py \
	tests/connector/test_usage.py \
	tests/connector/test_usage_counters.py \
	tests/connector/test_usage_agreement.py \
	tests/connector/test_openapi.py \
	tests/connector/test_user_cli.py \
	tests/browser/test_console_walk.py \
	tests/fuzz/test_console_fuzz.py \
	tests/broker
# The broker's own database on that pass (`sqlite` keeps it there while the connectors use PostgreSQL).
PG_BROKER ?= postgresql

$(STAMP): pyproject.toml
	# The SM crypto profile signs with the openssl command (docs/crypto.md); Debian's package has it.
	command -v openssl >/dev/null || (apt-get update -qq && apt-get install -y -qq openssl)
	# SQL sources are tested on a throwaway PostgreSQL server (tests/postgres.py); Debian's package has it.
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq postgresql)
	# The console's browser tests drive Debian's chromium; fonts-wqy-microhei renders its Chinese pages.
	(command -v chromium >/dev/null && dpkg -s fonts-wqy-microhei >/dev/null 2>&1) || \
		(apt-get update -qq && apt-get install -y -qq chromium fonts-wqy-microhei)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,otel]'
	# Real OPA as a Go library, for the OPA-REST test fixture; it declares Python >= 3.14 but works on 3.11.
	$(BIN)/pip install --quiet --ignore-requires-python opa-golib-python-bindings==0.4.4
	touch $(STAMP)

quickstart: $(STAMP)
	$(BIN)/python deploy/quickstart.py

# The quickstart's data space left running for the web consoles: their addresses and keys (docs/console.md).
console: $(STAMP)
	$(BIN)/python deploy/quickstart.py --console

test: $(STAMP)
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/tessera policy test policies
	$(BIN)/pytest -q
	$(MAKE) test-postgresql

# Fails, never skips, where PostgreSQL cannot be installed: the pass was asked for.
test-postgresql: $(STAMP)
	TESSERA_TEST_DATABASE=postgresql TESSERA_TEST_BROKER_DATABASE=$(PG_BROKER) $(BIN)/pytest -q $(PG_SUITE)

# The long fuzz run: 10,000 hostile requests over every endpoint, then the status histogram (docs/reliability.md).
FUZZ_REQUESTS ?= 10000
fuzz: $(STAMP)
	FUZZ_REQUESTS=$(FUZZ_REQUESTS) $(BIN)/pytest -q tests/fuzz/test_fuzz.py

lint: $(STAMP)
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)
	$(BIN)/lint-imports
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache test-artifacts
