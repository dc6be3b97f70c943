# The two commands of the quick start: `make demo` and `make test`.
# Everything installs into .venv; nothing needs to be installed by hand.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-test
BASE := $(VENV)/.installed
# The local chain for payment tests: anvil, and solc-js to rebuild the test token. npm
# packages go into a folder of the virtualenv, never into the global prefix.
NPM ?= npm
NPM_DIR := $(VENV)/npm
ANVIL_VERSION := 1.7.1
SOLC_VERSION := 0.8.26
NPM_STAMP := $(NPM_DIR)/.installed-anvil-$(ANVIL_VERSION)-solc-$(SOLC_VERSION)

.PHONY: test lint typecheck pytest demo clean npm token

$(PY):
	$(PYTHON) -m venv $(VENV)

$(BASE): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	@# LocalNet's local runtime runs commands under bubblewrap; install it when we may.
	@command -v bwrap >/dev/null || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap) || echo "bubblewrap missing: the local runtime (make demo, and its tests) needs it; install it with: apt-get install bubblewrap"; }
	touch $(BASE)

$(NPM_STAMP):
	@command -v $(NPM) >/dev/null || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm); } || { echo "npm is missing: the payment tests need it for anvil; install Node.js with npm"; exit 1; }
	mkdir -p $(NPM_DIR)
	$(NPM) install --prefix $(NPM_DIR) --no-save --no-audit --no-fund --loglevel=error \
		@foundry-rs/anvil-linux-amd64@$(ANVIL_VERSION) solc@$(SOLC_VERSION)
	touch $(NPM_STAMP)

npm: $(NPM_STAMP)

# Rebuild golem_trio/localnet/yagna/contracts/token.json from Token.sol (the artifact is
# checked in).
token: $(NPM_STAMP)
	NODE_PATH=$(NPM_DIR)/node_modules node golem_trio/localnet/yagna/contracts/build_token.js

$(STAMP): pyproject.toml $(BASE) $(NPM_STAMP)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(MAKE) --no-print-directory lint typecheck pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check golem_trio tests $(wildcard benchmarks examples)
	$(VENV)/bin/ruff format --check golem_trio tests $(wildcard benchmarks examples)
	$(VENV)/bin/flake8 golem_trio
	$(VENV)/bin/lint-imports --no-cache

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP)
	$(VENV)/bin/pytest -q

# The guide's SimpleService on the embedded LocalNet: no daemon, no configuration.
demo: $(BASE)
	env -u YAGNA_APPKEY $(PY) examples/simple_service/simple_service.py --running-time 35

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
