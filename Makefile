# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

CHROMIUM := /usr/bin/chromium

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Vigil needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

## Start Vigil on its embedded default (SQLite + ./vigil-data) at http://127.0.0.1:8000
run: $(STAMP)
	$(BIN)/vigil serve

# The browser tests drive Debian's Chromium (Playwright never downloads a browser here).
$(CHROMIUM):
	@echo "Installing Debian's chromium for the review app's browser tests"
	@if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; \
	else echo "run as root or install it: apt-get install chromium" >&2; exit 1; fi; \
	export DEBIAN_FRONTEND=noninteractive; \
	$$SUDO apt-get install -y -qq chromium >/dev/null \
	  || { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

## Run the test suite
test: $(STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest

## Lint and type-check
lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

## Benchmarks: results go to bench/RESULTS.md (options: make bench BENCH_ARGS='--only load')
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
