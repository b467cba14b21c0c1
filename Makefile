# The two commands of the contract: `make quickstart` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SOURCES := tessera policies connector broker tests deploy bench

.PHONY: quickstart test lint bench clean

$(STAMP): pyproject.toml
	# The SM crypto profile signs with the openssl command (docs/crypto.md); Debian's package has it.
	command -v openssl >/dev/null || (apt-get update -qq && apt-get install -y -qq openssl)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	# Real OPA as a Go library, for the OPA-REST test fixture; it declares Python >= 3.14 but works on 3.11.
	$(BIN)/pip install --quiet --ignore-requires-python opa-golib-python-bindings==0.4.4
	touch $(STAMP)

quickstart: $(STAMP)
	$(BIN)/python deploy/quickstart.py

test: $(STAMP)
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/tessera policy test policies
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)
	$(BIN)/lint-imports
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
