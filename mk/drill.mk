# The history checker (shared/tests/history.rs): seeded, randomized concurrent histories against
# real servers, with faults, judged by a model of sessions. `make test` runs HISTORY_HISTORIES=200
# per store mode through `cargo test --workspace`; `make drill` is the long run.
#
#   make drill                              2600 histories per mode, four modes (> 10,000)
#   make drill HISTORY_HISTORIES=500        fewer
#   make drill HISTORY_SEED=1796120235      replay the run that printed this seed (one run a mode)
#   make prove-checker                      revert each fix of shared/tests/reverts/ in turn and
#                                           show that the checker catches it (needs a clean tree)
#
# Each mode prints one line: histories, calls, faults injected, violations, time, seeds. A
# violation fails the run with the history, its seed and the smallest plan that still fails.

HISTORY_HISTORIES ?= 2600
HISTORY_SEED      ?=
DRILL_LOG         := $(LOCAL)/drill.log

.PHONY: drill prove-checker
drill: deps ## the history checker's long run: HISTORY_HISTORIES (2600) per store mode
	@mkdir -p "$(LOCAL)"
	@echo "==> history checker: $(HISTORY_HISTORIES) histories per mode (both stores, Redis alone, DynamoDB alone, Redis cluster)"
	@started=$$(date +%s); \
	$(TOOLS_ENV) HISTORY_HISTORIES=$(HISTORY_HISTORIES) HISTORY_SEED=$(HISTORY_SEED) \
	  $(CARGO) test -p shared --test history -- --nocapture --test-threads 4 >"$(DRILL_LOG)" 2>&1; rc=$$?; \
	grep -E '^history |panicked|violation|smallest|replay' "$(DRILL_LOG)" || true; \
	awk '/^history /{h+=$$3; c+=$$5; f+=$$7; v+=$$10} END {printf "==> drill: %d histories, %d calls, %d faults injected, %d violations", h, c, f, v}' "$(DRILL_LOG)"; \
	echo " in $$(( $$(date +%s) - started )) s (log: .local/drill.log)"; \
	exit $$rc

prove-checker: deps ## show the history checker catches each reverted fix (shared/tests/reverts/)
	@bash shared/tests/reverts/prove.sh
