#!/usr/bin/env bash
# Shows that the history checker can fail: reverts each fix of the store protocol in turn (one
# patch of this folder each), runs the checker at the `make test` budget in the store mode the
# fix concerns, expects a violation and prints the seed that caught it, then restores the tree.
#
#   bash shared/tests/reverts/prove.sh [PATCH...]     (make prove-checker)
#
# Needs the protocol's sources unmodified (the patches apply to the committed tree).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."
here=shared/tests/reverts
budget=${HISTORY_HISTORIES:-200}

if ! git diff --quiet -- shared/src; then
  echo "error: shared/src has uncommitted changes; commit or stash them first" >&2
  exit 2
fi
patches=("$@")
[ ${#patches[@]} -gt 0 ] || patches=("$here"/*.patch)

applied=
restore() { [ -n "$applied" ] && git apply -R "$applied" && applied=; }
trap restore EXIT

missed=0
for patch in "${patches[@]}"; do
  name=$(basename "$patch" .patch)
  git apply "$patch" || { echo "error: $name no longer applies; refresh it" >&2; exit 2; }
  applied=$patch
  log=$(mktemp)
  started=$(date +%s)
  HISTORY_HISTORIES=$budget cargo test -q -p shared --test history histories_with_both_stores \
    -- --nocapture >"$log" 2>&1
  rc=$?
  took=$(( $(date +%s) - started ))
  seed=$(grep -o 'a violation in run seed [0-9]*' "$log" | head -n1 | awk '{print $NF}')
  if [ $rc -ne 0 ] && [ -n "$seed" ]; then
    first=$(grep -A1 'replay with HISTORY_SEED' "$log" | tail -n1 | cut -c1-160)
    echo "caught  $name: seed $seed, ${took} s (build included): $first"
  else
    echo "MISSED  $name: no violation in $budget histories (${took} s); log: $log"
    missed=$((missed + 1))
  fi
  restore
done
[ $missed -eq 0 ] || { echo "$missed reverted fix(es) went unnoticed"; exit 1; }
echo "every reverted fix was caught"
