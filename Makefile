# Session service: developer and CI entry points.
#
# Needs only the Rust toolchain (cargo with rustfmt and clippy) and python3;
# everything else is installed on first use:
#   - Python-packaged tools (cargo-lambda + zig, moto) into ./.venv, pinned by
#     requirements-dev.txt;
#   - redis-server / redis-cli from Debian's packages, if not on PATH.
#
#   make deps     install what is missing (idempotent, fast when up to date)
#   make test     fmt check, clippy -D warnings, cargo test (real redis + moto,
#                 and shared/tests/e2e.rs over cargo lambda watch), make test-api
#   make test-api schemathesis on openapi.yaml against the local API, both stores
#   make fuzz-api the same, longer (FUZZ_API_EXAMPLES per operation)
#   make fmt      reformat the workspace
#   make clippy   lint the workspace
#   make run      the local API on http://127.0.0.1:9000 (STORE=dynamodb: moto)
#   make token    a JWT the local API accepts (USER=<id>)
#   make invoke   cargo lambda invoke FN=<function> EVENT=<file> against make run
#   make stop     stop what make run started

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
# A file target whose recipe fails is deleted, so the next run starts over.
.DELETE_ON_ERROR:

# ---------------------------------------------------------------------------
# Settings (override on the command line: `make test PYTHON=python3.12`)
# ---------------------------------------------------------------------------

PYTHON   ?= python3
CARGO    ?= cargo
VENV     := $(CURDIR)/.venv
VENV_BIN := $(VENV)/bin
# Written once the venv holds everything in requirements-dev.txt; a newer
# requirements file makes it stale and triggers a reinstall.
VENV_STAMP := $(VENV)/.installed

# Environment for every command that uses the dev tools: .venv/bin first on
# PATH (cargo-lambda finds zig as `python3 -m ziglang`, so the venv's python3
# must win), and the moto server the DynamoDB tests start.
# Prefix a command with $(TOOLS_ENV) to get both.
MOTO_SERVER ?= $(VENV_BIN)/moto_server
export MOTO_SERVER
TOOLS_ENV := PATH="$(VENV_BIN):$$PATH" MOTO_SERVER="$(MOTO_SERVER)"

# Root runs apt-get directly; anyone else goes through sudo when it exists.
SUDO := $(shell if [ "$$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then echo sudo; fi)

# $(call apt_install,PKG...): install Debian packages non-interactively.
# One shell line, so it can sit inside an if/else of a recipe.
apt_install = { command -v apt-get >/dev/null 2>&1 || { echo "error: apt-get not found; install $(1) by hand" >&2; exit 1; }; \
  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(1); }

# $(call need,COMMAND,DEBIAN-PACKAGE): install the package when COMMAND is
# missing; its output goes to stderr, so `make -s token` prints only the JWT.
need = command -v $(1) >/dev/null 2>&1 || { echo "==> $(1) missing: installing Debian package $(2)"; $(call apt_install,$(2)); } >&2

# $(call port_open,PORT): whether something accepts connections on it.
port_open = (exec 3<>/dev/tcp/127.0.0.1/$(1)) 2>/dev/null

# $(call stop_pid,PIDFILE,NAME,SIGNAL): stop the process of a pidfile when it
# is still NAME (a stale pidfile may name an unrelated process by now).
stop_pid = if [ -s "$(1)" ] && pid=$$(cat "$(1)") && grep -qa -- "$(2)" "/proc/$$pid/cmdline" 2>/dev/null; then \
    echo "==> stopping $(2) (pid $$pid)"; kill -$(3) "$$pid" 2>/dev/null || true; \
    for _ in $$(seq 100); do kill -0 "$$pid" 2>/dev/null || break; sleep 0.1; done; \
    if kill -0 "$$pid" 2>/dev/null; then echo "    still running after 10 s: SIGKILL"; kill -KILL "$$pid" 2>/dev/null || true; fi; \
  else echo "==> $(2): not running"; fi; \
  rm -f "$(1)"

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_.-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

# ---------------------------------------------------------------------------
# Dependencies
# ---------------------------------------------------------------------------

.PHONY: deps venv redis openssl
deps: venv redis openssl ## install the Python dev tools, redis-server and openssl if missing

venv: $(VENV_STAMP) ## create .venv with the pinned Python dev tools

$(VENV_STAMP): requirements-dev.txt
	@echo "==> installing Python dev tools (cargo-lambda, moto, aws-sam-cli, cfn-lint) into .venv"
	@# A venv left by another Python, or a half-made one without pip, is rebuilt.
	@if [ -d "$(VENV)" ] && ! "$(VENV_BIN)/python" -c 'import pip' >/dev/null 2>&1; then \
	  echo "    .venv is broken; recreating it"; rm -rf "$(VENV)"; \
	fi
	@# Debian's own python3 ships venv/ensurepip separately (python3-venv).
	@if [ ! -x "$(VENV_BIN)/python" ] && ! $(PYTHON) -m venv "$(VENV)"; then \
	  echo "==> $(PYTHON) -m venv failed: installing Debian package python3-venv"; \
	  rm -rf "$(VENV)"; \
	  pyver=$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	  $(call apt_install,python3-venv python$$pyver-venv); \
	  $(PYTHON) -m venv "$(VENV)"; \
	fi
	"$(VENV_BIN)/python" -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@"$(VENV_BIN)/cargo-lambda" lambda --version
	@"$(VENV_BIN)/python" -m ziglang version | sed 's/^/zig /'
	@"$(VENV_BIN)/moto_server" --help >/dev/null && echo "moto_server ok"
	@touch "$@"

# redis-server for the tests (they start their own on free ports, and build a
# cluster with redis-cli) and for `make run`. Both come with Debian's
# redis-server package (redis-cli through its redis-tools dependency).
redis: ## install redis-server and redis-cli if missing
	@if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then \
	  echo "==> redis-server present: $$(redis-server --version | cut -d' ' -f3)"; \
	else \
	  echo "==> redis-server missing: installing Debian package redis-server"; \
	  $(call apt_install,redis-server redis-tools); \
	  redis-server --version; \
	fi

# openssl makes the dev key pair (make token) and the tests' key pairs.
openssl:
	@$(call need,openssl,openssl)

# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------

.PHONY: test fmt clippy
test: deps validate ## fmt check, clippy -D warnings, template checks, cargo test --workspace, the extension client
	@echo "==> checking formatting (cargo fmt --check)"
	$(CARGO) fmt --all -- --check
	@echo "==> linting (cargo clippy, warnings are errors)"
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@echo "==> running tests (cargo test; MOTO_SERVER=$(MOTO_SERVER))"
	$(TOOLS_ENV) $(CARGO) test --workspace
	@echo "==> the API against openapi.yaml: schemathesis, both stores (make test-api)"
	$(MAKE) --no-print-directory test-api
	@echo "==> extension client: node unit tests and the real-browser flow (make test-client)"
	$(MAKE) --no-print-directory test-client

fmt: ## reformat all crates
	@echo "==> formatting (cargo fmt)"
	$(CARGO) fmt --all

clippy: ## lint all crates, warnings are errors
	@echo "==> linting (cargo clippy, warnings are errors)"
	$(CARGO) clippy --workspace --all-targets -- -D warnings


# ---------------------------------------------------------------------------
# Local run: make run, make token, make invoke, make stop
# ---------------------------------------------------------------------------
include mk/local.mk

# ---------------------------------------------------------------------------
# Deployment: release builds for Lambda (arm64), template checks, sam deploy
#
#   make build      every function in one `cargo lambda build` (dependencies
#                   compiled once, the ten links in parallel)
#   make package    make build, then `sam build`, which only copies each
#                   prebuilt bootstrap into .aws-sam/build/<LogicalId>/ (the
#                   build-<LogicalId> targets of mk/sam.mk); offline
#   make deploy     make package, then `sam deploy`
# ---------------------------------------------------------------------------

# Where compiled artifacts go (CI keeps it outside the clone).
TARGET_DIR   := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
ARCH         ?= arm64
LAMBDA_DIR   := $(TARGET_DIR)/lambda-$(ARCH)
RUST_TARGET  := $(if $(filter arm64,$(ARCH)),aarch64-unknown-linux-gnu,x86_64-unknown-linux-gnu)
# The functions: one package, binary and bootstrap per folder of functions/ (not bench).
FUNCTIONS    := $(notdir $(patsubst %/,%,$(wildcard functions/*/)))
# sam wants a region and credentials even to validate; offline checks take any.
SAM_ENV := SAM_CLI_TELEMETRY=0 AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=offline AWS_SECRET_ACCESS_KEY=offline

.PHONY: build validate package deploy
build: venv ## release bootstraps of all functions for Lambda (ARCH=arm64|x86_64) into $(TARGET_DIR)/lambda-<arch>/
	@if ! rustup target list --installed 2>/dev/null | grep -qx "$(RUST_TARGET)"; then \
	  echo "==> adding the $(RUST_TARGET) standard library (rustup target add $(RUST_TARGET))"; \
	  rustup target add "$(RUST_TARGET)" || { \
	    echo "error: the $(RUST_TARGET) standard library cannot be added here. On a machine that can" >&2; \
	    echo "       reach the Rust distribution server run: rustup target add $(RUST_TARGET)" >&2; exit 1; }; \
	fi
	@echo "==> cargo lambda build --release --$(ARCH): the $(words $(FUNCTIONS)) functions at once (zig from .venv links for Amazon Linux 2023)"
	@start=$$(date +%s); \
	$(TOOLS_ENV) $(CARGO) lambda build --release --$(ARCH) --lambda-dir "$(LAMBDA_DIR)" $(addprefix -p ,$(FUNCTIONS)); \
	echo "    built in $$(( $$(date +%s) - start )) s:"
	@for f in $(FUNCTIONS); do \
	  printf '    %-20s %s bytes\n' "$$f" "$$(stat -c %s "$(LAMBDA_DIR)/$$f/bootstrap")"; done

validate: venv ## cfn-lint, sam validate --lint and the deploy rehearsal on template.yaml, offline
	@echo "==> cfn-lint template.yaml"
	$(TOOLS_ENV) cfn-lint template.yaml
	@echo "==> sam validate --lint"
	$(TOOLS_ENV) $(SAM_ENV) sam validate --lint --template-file template.yaml
	@echo "==> deploy rehearsal: the SAM transform, offline, held to our rules (tools/deploy_rehearsal.py)"
	$(TOOLS_ENV) "$(VENV_BIN)/python" tools/deploy_rehearsal.py template.yaml

# sam build: in the source tree (no copy of the clone, .venv and all, per
# function), never from its cache (its key is the sources, not the bootstraps),
# the ten copies in parallel. Its make gets our TARGET_DIR, and not our
# MAKEFLAGS (a jobserver it could not reach).
package: ## make build, then sam build: the bootstraps into .aws-sam/build/ (no compiling, no AWS account)
	@if [ "$(ARCH)" != "$(SAM_ARCH)" ]; then \
	  echo "error: ARCH=$(ARCH), but template.yaml deploys $(SAM_ARCH)" >&2; exit 2; fi
	@echo "==> make build: every function, in one cargo lambda build"
	@$(MAKE) --no-print-directory build
	@echo "==> sam build: packaging the prebuilt bootstraps, nothing compiled (BuildMethod makefile, mk/sam.mk)"
	@start=$$(date +%s); \
	env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL $(TOOLS_ENV) CARGO_TARGET_DIR="$(TARGET_DIR)" SAM_CLI_TELEMETRY=0 \
	  sam build --build-in-source --no-cached --parallel --template-file template.yaml; \
	echo "    packaged in $$(( $$(date +%s) - start )) s"

deploy: package ## make build + sam build (packaging only) + sam deploy (--guided the first time)
	@echo "==> sam deploy$(if $(wildcard .local/deployed),, --guided (the first deploy from this clone))"
	@if [ -f .local/deployed ]; then \
	  $(TOOLS_ENV) SAM_CLI_TELEMETRY=0 sam deploy; \
	else \
	  $(TOOLS_ENV) SAM_CLI_TELEMETRY=0 sam deploy --guided && mkdir -p .local && touch .local/deployed; \
	fi

include mk/sam.mk

# ---------------------------------------------------------------------------
# Benchmarks: make bench writes BENCHMARKS.md (the budgets of docs/architecture.md,
# raw store measured in the same run)
# ---------------------------------------------------------------------------
include mk/bench.mk

# ---------------------------------------------------------------------------
# The extension client (clients/extension): node unit tests and a headless
# Chromium flow against a local API
# ---------------------------------------------------------------------------
include mk/client.mk

# ---------------------------------------------------------------------------
# Fuzzing: cargo-fuzz on nightly (make fuzz); make test runs the stable proptest targets
# ---------------------------------------------------------------------------
include mk/fuzz.mk

# ---------------------------------------------------------------------------
# The history checker's long run and the proof that it can fail
# ---------------------------------------------------------------------------
include mk/drill.mk

# ---------------------------------------------------------------------------
# The API against openapi.yaml: schemathesis on the local API (make test-api, make fuzz-api)
# ---------------------------------------------------------------------------
include mk/api.mk
