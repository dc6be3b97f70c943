# The two commands of the quick start: `make demo` and `make test`.
# Everything installs into .venv; nothing needs to be installed by hand.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-test

.PHONY: test lint typecheck pytest demo clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@# LocalNet's local runtime runs commands under bubblewrap; install it when we may.
	@command -v bwrap >/dev/null || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap) || echo "bubblewrap missing: the local runtime's tests will fail; install it with: apt-get install bubblewrap"; }
	touch $(STAMP)

test: $(STAMP)
	$(MAKE) --no-print-directory lint typecheck pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check golem_trio tests $(wildcard benchmarks examples)
	$(VENV)/bin/ruff format --check golem_trio tests $(wildcard benchmarks examples)
	$(VENV)/bin/flake8 golem_trio

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP)
	$(VENV)/bin/pytest -q

demo:
	@echo "make demo runs the seed's SimpleService on the embedded Golem network."
	@echo "It arrives with the services layer; it is not built yet."
	@exit 1

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
