# The history checker (shared/tests/history.rs): seeded, randomized concurrent histories against
# real servers, with faults, judged by a model of sessions. `make test` runs HISTORY_HISTORIES=400
# per store mode through `cargo test --workspace`; `make drill` is the long run.
#
#   make drill                              13,500 histories: 3000 with both stores, 5000 with
#                                           Redis alone, 2500 with DynamoDB alone, 3000 on a cluster
#   make drill HISTORY_BOTH=3000            more or fewer in one mode (HISTORY_REDIS, _DYNAMODB,
#                                           _CLUSTER likewise)
#   make drill HISTORY_SEED=1796120235      replay the run that printed this seed (one run a mode)
#   make prove-checker                      revert each fix of shared/tests/reverts/ in turn and
#                                           show that the checker catches it (on a scratch worktree of HEAD)
#
# Each mode prints one line: histories, calls, faults injected, violations, time, seeds. A
# violation fails the run with the history, its seed and the smallest plan that still fails.

# Both stores cost the most per history (moto, two stores, the protocol's jitter); the split
# keeps the whole run within 30 minutes on 2 cores.
HISTORY_BOTH     ?= 3000
HISTORY_REDIS    ?= 5000
HISTORY_DYNAMODB ?= 2500
HISTORY_CLUSTER  ?= 3000
HISTORY_SEED     ?=
DRILL_LOG         := $(LOCAL)/drill.log

.PHONY: drill prove-checker
drill: deps ## the history checker's long run: 13,500 histories in four store modes
	@mkdir -p "$(LOCAL)"
	@echo "==> history checker: $(HISTORY_BOTH) histories with both stores, $(HISTORY_REDIS) Redis alone, $(HISTORY_DYNAMODB) DynamoDB alone, $(HISTORY_CLUSTER) on a Redis cluster"
	@started=$$(date +%s); \
	$(TOOLS_ENV) HISTORY_BOTH=$(HISTORY_BOTH) HISTORY_REDIS=$(HISTORY_REDIS) HISTORY_DYNAMODB=$(HISTORY_DYNAMODB) \
	  HISTORY_CLUSTER=$(HISTORY_CLUSTER) HISTORY_SEED=$(HISTORY_SEED) \
	  $(CARGO) test -p shared --test history -- --nocapture --test-threads 4 >"$(DRILL_LOG)" 2>&1; rc=$$?; \
	grep -E '^history |panicked|violation|smallest|replay' "$(DRILL_LOG)" || true; \
	awk '/^history /{h+=$$3; c+=$$5; f+=$$7; v+=$$10} END {printf "==> drill: %d histories, %d calls, %d faults injected, %d violations", h, c, f, v}' "$(DRILL_LOG)"; \
	echo " in $$(( $$(date +%s) - started )) s (log: .local/drill.log)"; \
	exit $$rc

prove-checker: deps ## show the history checker catches each reverted fix (shared/tests/reverts/)
	@$(TOOLS_ENV) bash shared/tests/reverts/prove.sh
