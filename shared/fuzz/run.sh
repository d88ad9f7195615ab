#!/usr/bin/env bash
# The coverage-guided fuzz run behind `make fuzz` (see README.md here): builds the cargo-fuzz
# targets, runs each for FUZZ_SECONDS with its kept corpus (corpus/<target>/) and its seeds
# (seed-corpus.sh), minimizes the corpus again, and prints one line per target. Exits non-zero
# when a target crashed; the crashing input is under artifacts/<target>/.
#
# Settings (environment, all optional):
#   FUZZ_SECONDS     seconds per target (default 480)
#   FUZZ_TARGETS     the targets, in order (default: all five)
#   FUZZ_JOBS        targets run at once (default: the number of cores)
#   FUZZ_SANITIZER   cargo fuzz --sanitizer: none (default) or address
#   FUZZ_TARGET_DIR  where the nightly build goes (default /var/tmp/session-service-fuzz-target)
#   FUZZ_MINIMIZE    1 (default): merge each corpus down to the inputs that add coverage
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"
seconds=${FUZZ_SECONDS:-480}
targets=${FUZZ_TARGETS:-request token jwt records cache_body device}
jobs=${FUZZ_JOBS:-$(nproc)}
sanitizer=${FUZZ_SANITIZER:-none}
target_dir=${FUZZ_TARGET_DIR:-/var/tmp/session-service-fuzz-target}
minimize=${FUZZ_MINIMIZE:-1}

log() { printf '==> %s\n' "$*"; }

# --- toolchain -----------------------------------------------------------------------------
# cargo-fuzz wants nightly. Without one, stable with RUSTC_BOOTSTRAP=1 and no sanitizer builds
# the same targets; when even that fails, the run is skipped, saying so.
toolchain=(cargo +nightly)
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  log "no nightly toolchain (rustup toolchain list): trying stable with RUSTC_BOOTSTRAP=1 and --sanitizer none"
  export RUSTC_BOOTSTRAP=1
  toolchain=(cargo)
  sanitizer=none
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  log "cargo-fuzz missing: installing it (cargo install cargo-fuzz --locked)"
  cargo install cargo-fuzz --locked
fi

log "building the fuzz targets (${toolchain[*]} fuzz build --sanitizer $sanitizer, into $target_dir)"
if ! nice -n 10 "${toolchain[@]}" fuzz build --sanitizer "$sanitizer" --target-dir "$target_dir"; then
  if [ -n "${RUSTC_BOOTSTRAP:-}" ]; then
    log "SKIPPED: the fuzz targets do not build without a nightly toolchain here (rustup toolchain install nightly); make test still runs the stable proptest targets"
    exit 0
  fi
  exit 1
fi
triple=$(rustc -vV | sed -n 's/^host: //p')
bin=$target_dir/$triple/release

# --- run -------------------------------------------------------------------------------------
seeds=$(mktemp -d)
work=$(mktemp -d)
trap 'rm -rf "$seeds" "$work"' EXIT
"$here/seed-corpus.sh" "$seeds"

run_one() {
  local t=$1
  mkdir -p "corpus/$t" "artifacts/$t"
  touch "$work/$t.start"
  # libFuzzer reads both folders and adds what it finds to the first; its report goes to
  # the log; the target's own stdout (metrics lines) is a sink.
  local dict=()
  [ -f "dict/$t.dict" ] && dict=("-dict=dict/$t.dict")
  nice -n 10 "$bin/$t" "corpus/$t" "$seeds/$t" "${dict[@]}" \
    -max_total_time="$seconds" -print_final_stats=1 \
    -artifact_prefix="artifacts/$t/" >"$work/$t.log" 2>&1 || true
  local found crashes
  found=$(find "artifacts/$t" -type f -newer "$work/$t.start")
  crashes=$(grep -c . <<<"$found" || true)
  if [ "$minimize" = 1 ] && [ "$crashes" -eq 0 ]; then
    rm -rf "$work/$t.min" && mkdir -p "$work/$t.min"
    nice -n 10 "$bin/$t" -merge=1 "$work/$t.min" "corpus/$t" "$seeds/$t" >"$work/$t.merge.log" 2>&1 &&
      rm -rf "corpus/$t" && mv "$work/$t.min" "corpus/$t"
  fi
  local stats execs cov ft
  stats=$(grep -E '^#[0-9]+.*cov: ' "$work/$t.log" | tail -n 1)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log" | tail -n 1)
  [ -n "$execs" ] || execs=$(sed -n 's/^#\([0-9]*\).*/\1/p' <<<"$stats")
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$stats")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$stats")
  printf '%-10s executions=%s cov=%s ft=%s corpus=%s crashes=%s (%s s)%s\n' \
    "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$(find "corpus/$t" -type f | wc -l)" "$crashes" \
    "$seconds" "$([ "${execs:-0}" -ge 1000000 ] || echo '  [under 1,000,000 executions]')" \
    >"$work/$t.line"
  if [ "$crashes" -ne 0 ]; then
    { sed 's/^/    input: shared\/fuzz\//' <<<"$found"
      grep -A12 -m1 -E 'panicked at|ERROR: libFuzzer' "$work/$t.log" | sed 's/^/    /'
    } >>"$work/$t.line"
  fi
}
export -f run_one
export bin seeds work seconds minimize

log "fuzzing $(wc -w <<<"$targets") targets for $seconds s each, $jobs at a time"
printf '%s\n' $targets | xargs -P "$jobs" -I{} bash -c 'run_one {}'

failed=0
for t in $targets; do
  cat "$work/$t.line"
  grep -q 'crashes=0 ' "$work/$t.line" || failed=1
done
exit "$failed"
