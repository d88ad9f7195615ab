#!/usr/bin/env bash
# Writes the seeds of every cargo-fuzz target into <out>/<target>/, from events/ and the named
# seeds of fuzz/seeds/ (the same ones the stable proptest targets replay). `make fuzz` passes
# them to libFuzzer beside the kept corpus, fuzz/corpus/<target>/. See README.md here.
set -euo pipefail
out=${1:?usage: seed-corpus.sh <out-dir>}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
events=$here/../../events
seeds=$here/seeds
rm -rf "$out"
mkdir -p "$out"/{request,token,jwt,records,cache_body,device}

# request: API Gateway events as the runtime receives them (placeholders filled at run time).
find "$events" -name '*.json' | sort | while read -r f; do
  rel=${f#"$events"/}
  cp "$f" "$out/request/events--${rel//\//--}"
done
for f in "$seeds"/event/*; do cp "$f" "$out/request/seeds--$(basename "$f")"; done

# token: token candidates and user ids alike.
for f in "$seeds"/token/* "$seeds"/token_round_trip/*; do
  cp "$f" "$out/token/$(basename "$(dirname "$f")")--$(basename "$f")"
done

# jwt: one byte picks a pool token (no edits), 0xFF sends the rest as it is.
for i in $(seq 0 23); do printf "\\x$(printf %02x "$i")" > "$out/jwt/pool-$i"; done
for f in "$seeds"/jwt/*; do { printf '\xff'; cat "$f"; } > "$out/jwt/raw--$(basename "$f")"; done

# records: the first byte picks the decoder (see fuzz_targets/records.rs).
printf '\x00%s' '1700000000|1700003600|1707776000|3600|1|1700000100|7|Mozilla/5.0 | odd' > "$out/records/redis-session"
printf '\x00%s' '1|2|3|4|0|5|0|' > "$out/records/redis-session-bare"
printf '\x01' > "$out/records/made-session"
printf '\x02' > "$out/records/any-session"
printf '\x03' > "$out/records/dynamodb-item"
printf '\x04%s' '1700003600|3|{"a":[1,"|"]}' > "$out/records/redis-cache"
printf '\x05%s' '{"a":1}' > "$out/records/cache-round-trip"

# device: user agents.
for f in "$seeds"/device/*; do cp "$f" "$out/device/$(basename "$f")"; done

# cache_body: request bodies.
for f in "$seeds"/body/*; do cp "$f" "$out/cache_body/$(basename "$f")"; done
