# ---------------------------------------------------------------------------
# Benchmarks: `make bench` measures the performance budgets (docs/architecture.md)
# against the raw store in the same run, prints one table and writes it to
# BENCHMARKS.md with the date, the machine and the command.
#
#   make bench                          everything, release build (several minutes)
#   make bench BENCH_ARGS='--parts 2,3' only some parts (see bench/src/main.rs):
#     1 handler vs raw Redis   2 round trips   3 cold start (beside a hello-world)
#     4 memory   5 end to end   6 delayed network   7 instructions per call (callgrind)
#   make bench-callgrind                part 7 alone, valgrind installed first if missing;
#                                       the table on stdout only (BENCHMARKS.md untouched)
#
# Part 7 runs in `make bench` only where valgrind is installed; elsewhere its
# row says it was not measured.
#
# Included by the Makefile; uses its deps, TOOLS_ENV, CARGO, need and
# apt_install (all expanded when the recipe runs, so the include may sit
# anywhere). The bench starts its own redis-server, moto and cargo lambda watch
# on free loopback ports and stops them, also on Ctrl-C and after
# BENCH_LIMIT_MINUTES. wrk and redis-benchmark come from Debian's packages.
# ---------------------------------------------------------------------------

BENCH_OUT           ?= BENCHMARKS.md
BENCH_ARGS          ?=
BENCH_LIMIT_MINUTES ?= 40
# Where cargo puts binaries (CI keeps CARGO_TARGET_DIR outside the clone).
BENCH_TARGET_DIR     = $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)

.PHONY: bench bench-tools bench-callgrind
bench: deps bench-tools ## measure the performance budgets (release build): table on stdout and in BENCHMARKS.md
	@# Two builds, not one: session-validate alone, as cargo lambda watch builds it (part 5),
	@# so watch finds it fresh instead of relinking it with the bench's feature set. The
	@# second builds both of the bench crate's binaries: the bench, and bench-hello, the
	@# hello-world function part 3 measures beside session-validate (same release profile).
	@echo "==> cargo build --release -p session-validate, then -p bench (bench, bench-hello)"
	$(CARGO) build --release -p session-validate
	$(CARGO) build --release -p bench --bins
	@echo "==> running the bench (5 to 7 minutes on 2 cores; progress on stderr)"
	$(TOOLS_ENV) "$(BENCH_TARGET_DIR)/release/bench" --root "$(CURDIR)" \
	  --target-dir "$(BENCH_TARGET_DIR)" --out "$(BENCH_OUT)" \
	  --limit-minutes $(BENCH_LIMIT_MINUTES) \
	  --command "make bench$(if $(strip $(BENCH_ARGS)), BENCH_ARGS='$(strip $(BENCH_ARGS))')" \
	  $(BENCH_ARGS)

bench-callgrind: deps bench-tools ## instructions per handler call under callgrind (bench part 7): table on stdout
	@$(call need,valgrind,valgrind)
	$(CARGO) build --release -p bench --bins
	$(TOOLS_ENV) "$(BENCH_TARGET_DIR)/release/bench" --root "$(CURDIR)" \
	  --target-dir "$(BENCH_TARGET_DIR)" --limit-minutes $(BENCH_LIMIT_MINUTES) \
	  --command "make bench-callgrind" --parts 7 $(BENCH_ARGS)

# The two load generators: wrk (Debian package wrk) and redis-benchmark (shipped
# with redis-server, in Debian's redis-tools).
bench-tools:
	@$(call need,wrk,wrk)
	@$(call need,redis-benchmark,redis-tools)
