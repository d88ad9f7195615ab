# ---------------------------------------------------------------------------
# What `sam build` runs: one `build-<LogicalId>` target per function of
# template.yaml (`Metadata: BuildMethod: makefile`). Each only copies the
# bootstrap that `make build` compiled, all functions in one cargo run, into
# the $(ARTIFACTS_DIR) sam gives it; nothing here compiles. `make package`
# and `make deploy` run `make build` first, then `sam build --build-in-source`.
#
# Included by the Makefile; uses its TARGET_DIR. A function's line names its
# binary, the same as its Metadata.BuildProperties.Binary in template.yaml
# (shared/tests/template.rs holds the two equal, and SAM_ARCH equal to the
# template's Architectures).
# ---------------------------------------------------------------------------

# The architecture template.yaml deploys, whatever ARCH make build was last given.
SAM_ARCH       := arm64
SAM_LAMBDA_DIR  = $(TARGET_DIR)/lambda-$(SAM_ARCH)

# The crates sam must not package stale: a bootstrap older than any of them is
# refused (make build relinks, or at least copies, every bootstrap anew).
LAMBDA_SOURCES = Cargo.toml Cargo.lock shared/Cargo.toml shared/src functions

# $(call sam_package,BINARY): $(SAM_LAMBDA_DIR)/BINARY/bootstrap into
# $(ARTIFACTS_DIR), once it is there and newer than the sources.
sam_package = f="$(SAM_LAMBDA_DIR)/$(1)/bootstrap"; \
  if [ -z "$(ARTIFACTS_DIR)" ]; then echo "error: ARTIFACTS_DIR is unset: sam build runs this target (make package)" >&2; exit 2; fi; \
  if [ ! -f "$$f" ]; then echo "error: $$f is missing: run make build ARCH=$(SAM_ARCH) first (make package runs both)" >&2; exit 1; fi; \
  newer=$$(find $(LAMBDA_SOURCES) -newer "$$f" \( -name '*.rs' -o -name 'Cargo.*' \) -print -quit); \
  if [ -n "$$newer" ]; then echo "error: $$f is older than $$newer: run make build ARCH=$(SAM_ARCH) first (make package runs both)" >&2; exit 1; fi; \
  cp "$$f" "$(ARTIFACTS_DIR)/bootstrap"; \
  printf '    %-20s %s bytes <- %s\n' "$(1)" "$$(stat -c %s "$(ARTIFACTS_DIR)/bootstrap")" "$$f"

.PHONY: build-SessionCreateFunction build-SessionValidateFunction build-SessionRefreshFunction \
  build-SessionLogoutFunction build-SessionLogoutAllFunction build-SessionStatsFunction \
  build-SessionListFunction build-SessionRevokeFunction build-CacheGetFunction build-CachePutFunction
build-SessionCreateFunction:    ; @$(call sam_package,session-create)
build-SessionValidateFunction:  ; @$(call sam_package,session-validate)
build-SessionRefreshFunction:   ; @$(call sam_package,session-refresh)
build-SessionLogoutFunction:    ; @$(call sam_package,session-logout)
build-SessionLogoutAllFunction: ; @$(call sam_package,session-logout-all)
build-SessionStatsFunction:     ; @$(call sam_package,session-stats)
build-SessionListFunction:      ; @$(call sam_package,session-list)
build-SessionRevokeFunction:    ; @$(call sam_package,session-revoke)
build-CacheGetFunction:         ; @$(call sam_package,cache-get)
build-CachePutFunction:         ; @$(call sam_package,cache-put)
