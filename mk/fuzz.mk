# Fuzzing (shared/fuzz/README.md).
#
# make fuzz: the coverage-guided run, cargo-fuzz (libFuzzer) on the nightly toolchain, through
# shared/fuzz/run.sh. It builds the crate shared/fuzz/ (outside the workspace) into its own target folder,
# FUZZ_TARGET_DIR, so that the nightly, instrumented build never touches the workspace's; runs
# every target for FUZZ_SECONDS, FUZZ_JOBS at a time (a 2-core machine: two targets at once, so
# the default 480 s gives each at least 1,000,000 executions); keeps a minimized corpus in
# shared/fuzz/corpus/<target>/; prints one line per target (executions, libFuzzer's cov and ft at the
# end, corpus size, crashes). cargo-fuzz is installed when missing; without a nightly it tries
# stable with RUSTC_BOOTSTRAP=1, and skips, saying so, when that does not build.
#
#   make fuzz                          every target, 480 s each (about 25 minutes on 2 cores)
#   make fuzz FUZZ_SECONDS=60          shorter
#   make fuzz FUZZ_TARGETS="jwt token" some targets
#   make fuzz FUZZ_SANITIZER=address   with AddressSanitizer (slower; the default is none)
#
# make fuzz-stable: the long run of the proptest targets of shared/tests/fuzz.rs on stable
# (`make test` runs them with 2000 cases each), for a machine without nightly.
#
#   make fuzz-stable FUZZ_CASES=200000 FUZZ_TARGET=jwt FUZZ_SEED=0x1234abcd

FUZZ_SECONDS    ?= 480
FUZZ_TARGETS    ?= request token jwt records cache_body device
FUZZ_JOBS       ?= $(shell nproc)
FUZZ_SANITIZER  ?= none
FUZZ_TARGET_DIR ?= /var/tmp/session-service-fuzz-target
FUZZ_CASES      ?= 200000
FUZZ_SEED       ?=
FUZZ_TARGET     ?=

.PHONY: fuzz fuzz-stable
fuzz: openssl ## coverage-guided fuzzing (cargo-fuzz, nightly): every target for FUZZ_SECONDS (480)
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_TARGETS="$(FUZZ_TARGETS)" FUZZ_JOBS=$(FUZZ_JOBS) \
	  FUZZ_SANITIZER=$(FUZZ_SANITIZER) FUZZ_TARGET_DIR=$(FUZZ_TARGET_DIR) shared/fuzz/run.sh

fuzz-stable: openssl ## the proptest fuzz targets on stable, FUZZ_CASES (200000) cases each
	@echo "==> fuzzing shared/tests/fuzz.rs: seeds, kept corpus, then $(FUZZ_CASES) generated cases per target"
	FUZZ_CASES=$(FUZZ_CASES) FUZZ_SEED=$(FUZZ_SEED) $(CARGO) test -p shared --test fuzz -- \
	  --nocapture $(FUZZ_TARGET) 2>&1 | grep --line-buffered -v '"_aws":'
