#!/usr/bin/env bash
# Shows that the history checker can fail: reverts each fix of the store protocol in turn (one
# patch of this folder each), runs the checker at the `make test` budget in the store mode the
# fix concerns, expects a violation and prints the seed that caught it.
#
#   bash shared/tests/reverts/prove.sh [PATCH...]     (make prove-checker)
#
# It works on a scratch worktree of the committed tree (HEAD), so the checkout you work in is
# never touched and may hold uncommitted changes (they are not part of the proof). The builds go
# to their own target directory, $PROVE_TARGET_DIR (default: <cargo target dir>/prove), which
# stays warm from one run to the next.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."
here=$PWD/shared/tests/reverts
export CARGO_TARGET_DIR=${PROVE_TARGET_DIR:-${CARGO_TARGET_DIR:-$PWD/target}/prove}

if ! git diff --quiet HEAD -- shared; then
  echo "note: shared/ has uncommitted changes; the proof runs on the committed tree ($(git rev-parse --short HEAD))"
fi
patches=("$@")
[ ${#patches[@]} -gt 0 ] || patches=("$here"/*.patch)

tree=$(mktemp -d)/tree
git worktree add --quiet --detach "$tree" HEAD || exit 2
cleanup() { git worktree remove --force "$tree"; rm -rf "$(dirname "$tree")"; }
trap cleanup EXIT

missed=0
for patch in "${patches[@]}"; do
  name=$(basename "$patch" .patch)
  patch=$(cd "$(dirname "$patch")" && pwd)/$(basename "$patch")
  git -C "$tree" apply "$patch" || { echo "error: $name no longer applies; refresh it" >&2; exit 2; }
  log=$(mktemp)
  started=$(date +%s)
  (cd "$tree" && HISTORY_SEED= cargo test -q -p shared --test history \
    histories_with_both_stores -- --nocapture) >"$log" 2>&1
  rc=$?
  took=$(( $(date +%s) - started ))
  seed=$(grep -o 'a violation in run seed [0-9]*' "$log" | head -n1 | awk '{print $NF}')
  if [ $rc -ne 0 ] && [ -n "$seed" ]; then
    first=$(grep -A1 'replay with HISTORY_SEED' "$log" | tail -n1 | cut -c1-160)
    echo "caught  $name: seed $seed, ${took} s (build and shrinking included): $first"
  else
    echo "MISSED  $name: no violation in ${HISTORY_HISTORIES:-the make test budget of} histories (${took} s); log: $log"
    missed=$((missed + 1))
  fi
  git -C "$tree" checkout --quiet -- .
done
[ $missed -eq 0 ] || { echo "$missed reverted fix(es) went unnoticed"; exit 1; }
echo "every reverted fix was caught"
