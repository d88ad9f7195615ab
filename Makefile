# Session service: developer and CI entry points.
#
# Needs only the Rust toolchain (cargo with rustfmt and clippy) and python3;
# everything else is installed on first use:
#   - Python-packaged tools (cargo-lambda + zig, moto) into ./.venv, pinned by
#     requirements-dev.txt;
#   - redis-server / redis-cli from Debian's packages, if not on PATH.
#
#   make deps     install what is missing (idempotent, fast when up to date)
#   make test     fmt check, clippy -D warnings, cargo test (real redis + moto)
#   make fmt      reformat the workspace
#   make clippy   lint the workspace

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

.PHONY: help
help: ## list the targets
	@grep -E '^[a-zA-Z_.-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

# ---------------------------------------------------------------------------
# Dependencies
# ---------------------------------------------------------------------------

.PHONY: deps venv redis
deps: venv redis ## install the Python dev tools and redis-server if missing

venv: $(VENV_STAMP) ## create .venv with the pinned Python dev tools

$(VENV_STAMP): requirements-dev.txt
	@echo "==> installing Python dev tools (cargo-lambda, moto) into .venv"
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

# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------

.PHONY: test fmt clippy
test: deps ## fmt check, clippy -D warnings, then cargo test --workspace
	@echo "==> checking formatting (cargo fmt --check)"
	$(CARGO) fmt --all -- --check
	@echo "==> linting (cargo clippy, warnings are errors)"
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@echo "==> running tests (cargo test; MOTO_SERVER=$(MOTO_SERVER))"
	$(TOOLS_ENV) $(CARGO) test --workspace

fmt: ## reformat all crates
	@echo "==> formatting (cargo fmt)"
	$(CARGO) fmt --all

clippy: ## lint all crates, warnings are errors
	@echo "==> linting (cargo clippy, warnings are errors)"
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# ---------------------------------------------------------------------------
# Local run, deployment, benchmarks: TO DO (not implemented yet)
#   run       cargo lambda watch on 127.0.0.1:9000 + local redis-server, data
#             under .local/ (STORE=dynamodb: moto_server instead)
#   invoke    cargo lambda invoke with the sample events under events/
#   token     print a JWT signed by the dev key (.local/) for USER=<id>
#   build     cargo lambda build --release for every function
#   validate  sam validate / cfn-lint on template.yaml
#   deploy    sam deploy
#   bench     the benchmark harness; writes BENCHMARKS.md
# Run their commands with $(TOOLS_ENV) so cargo-lambda finds the venv's zig.
# ---------------------------------------------------------------------------
