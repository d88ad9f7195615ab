# The API against its own description: schemathesis runs openapi.yaml against the local API.
#
# Included by the Makefile (`include mk/api.mk`); uses its CARGO, VENV, VENV_BIN, VENV_STAMP,
# MOTO_SERVER, LOCAL, DEV_KEY, DEV_PUB, ORIGINS, ADMINS and its `deps` and `dev-keys` targets.
#
#   make test-api    every store mode (API_STORES: a redis-server, then DynamoDB on moto), each
#                    with what `make run` starts on free ports (cargo lambda watch, routes from
#                    Cargo.toml, --disable-cors); schemathesis with every check, its stateful
#                    phase following the links of openapi.yaml, authenticated by a dev JWT (the
#                    key of `make token`); API_TEST_EXAMPLES examples per operation and a fixed
#                    seed, within 3 minutes on 2 cores with the functions built. `make test` runs it.
#   make fuzz-api    the same with FUZZ_API_EXAMPLES examples and a random seed (printed;
#                    FUZZ_API_SEED=<seed> replays one)
#   make test-api API_STORES="redis dynamodb both"     Redis in front of DynamoDB as well
#
# tools/api_test.py does the work and stops what it started, even on failure; what a killed run
# left is stopped here from the process groups it lists. Reports, logs and each store's data go to
# .local/api-test/<mode>/. tools/schemathesis.toml names each check or warning turned off, and why.
#
# schemathesis is pinned in requirements-api.txt and installed into .venv together with
# requirements-dev.txt: pip resolves both files at once, so that it cannot move a pin of
# aws-sam-cli's (the two sets share jsonschema, requests, click, PyYAML, ...).

API_REQUIREMENTS  := requirements-api.txt
API_VENV_STAMP    := $(VENV)/.installed-api
API_STORES        ?= redis dynamodb
API_TEST_EXAMPLES ?= 100
API_TEST_SEED     ?= 20261201
FUZZ_API_EXAMPLES ?= 1000
FUZZ_API_SEED     ?=
# Bounds of the whole run, seconds (a first build of the functions included).
API_TEST_TIMEOUT  ?= 1200
FUZZ_API_TIMEOUT  ?= 7200
API_PIDS          := $(LOCAL)/api-test/pids

.PHONY: test-api fuzz-api api-tools
test-api: deps dev-keys api-tools ## schemathesis on openapi.yaml against the local API, both stores
	@$(call api_run,test-api,$(API_TEST_EXAMPLES),$(API_TEST_SEED),$(API_TEST_TIMEOUT))

fuzz-api: deps dev-keys api-tools ## test-api, longer: FUZZ_API_EXAMPLES (1000) examples, a random seed
	@$(call api_run,fuzz-api,$(FUZZ_API_EXAMPLES),$(FUZZ_API_SEED),$(FUZZ_API_TIMEOUT))

api-tools: $(API_VENV_STAMP)

$(API_VENV_STAMP): $(API_REQUIREMENTS) requirements-dev.txt $(VENV_STAMP)
	@echo "==> installing schemathesis (requirements-api.txt) into .venv, resolved with requirements-dev.txt"
	"$(VENV_BIN)/python" -m pip install --quiet --disable-pip-version-check \
	  -r requirements-dev.txt -r $(API_REQUIREMENTS)
	@"$(VENV_BIN)/schemathesis" --version
	@touch "$@"

# $(call api_run,LABEL,EXAMPLES,SEED,TIMEOUT): tools/api_test.py bounded by TIMEOUT, then the
# process groups a killed run left behind (listed in $(API_PIDS)) stopped.
api_run = status=0; \
  env CARGO="$(CARGO)" VENV_BIN="$(VENV_BIN)" MOTO_SERVER="$(MOTO_SERVER)" DEV_KEY="$(DEV_KEY)" \
    DEV_PUB="$(DEV_PUB)" ORIGINS="$(ORIGINS)" ADMINS="$(ADMINS)" PATH="$(VENV_BIN):$$PATH" \
    timeout --foreground -k 20 $(4) "$(VENV_BIN)/python" tools/api_test.py --label $(1) --examples $(2) \
    --seed "$(3)" --stores "$(API_STORES)" || status=$$?; \
  if [ -s "$(API_PIDS)" ]; then \
    while read -r pgid what; do \
      if ps -eo pgid=,stat= | awk -v g="$$pgid" '$$1 == g && $$2 !~ /^Z/ {found = 1} END {exit !found}'; then \
        echo "    stopping leftover $$what (process group $$pgid)"; kill -KILL -- "-$$pgid" 2>/dev/null || true; fi; \
    done < "$(API_PIDS)"; \
    rm -f "$(API_PIDS)"; \
  fi; \
  if [ $$status -eq 124 ] || [ $$status -eq 137 ]; then echo "error: $(1) was stopped: past its $(4) s bound, or killed" >&2; fi; \
  exit $$status
