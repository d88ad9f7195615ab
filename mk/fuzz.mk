# The long fuzz run: the proptest targets of shared/tests/fuzz.rs, each replaying its
# corpus (fuzz/corpus/<target>/) and then running FUZZ_CASES generated cases. `make test` runs
# the same targets with the default 2000 cases, through `cargo test --workspace`.
#
#   make fuzz                        200000 cases per target (tens of minutes on 2 cores)
#   make fuzz FUZZ_CASES=50000       fewer
#   make fuzz FUZZ_TARGET=jwt        one target: token, token_round_trip, jwt, request_bodies,
#                                    api_gateway_events (a substring of the test name)
#   make fuzz FUZZ_SEED=0x1234abcd   replay the run that printed this seed
#
# Each target prints its executions, crashes (0, or the test fails with the smallest failing
# input and its seed) and a histogram of outcomes. The handlers' metrics lines (EMF, `"_aws":`)
# are filtered out of the output.

FUZZ_CASES  ?= 200000
FUZZ_SEED   ?=
FUZZ_TARGET ?=

.PHONY: fuzz
fuzz: openssl ## long fuzz run: FUZZ_CASES (200000) cases per target after the corpus in fuzz/corpus/
	@echo "==> fuzzing shared/tests/fuzz.rs: corpus, then $(FUZZ_CASES) generated cases per target"
	FUZZ_CASES=$(FUZZ_CASES) FUZZ_SEED=$(FUZZ_SEED) $(CARGO) test -p shared --test fuzz -- \
	  --nocapture $(FUZZ_TARGET) 2>&1 | grep --line-buffered -v '"_aws":'
