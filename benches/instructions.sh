#!/usr/bin/env bash
# Instructions per review (callgrind): the engine benchmark's request path,
# counted rather than timed, so that it compares across noisy runs.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || apt-get install -y -qq valgrind >/dev/null
cargo bench --locked --bench engine --no-run 2>&1 | tail -1
BENCH=$(cargo bench --locked --bench engine --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable") and m["target"]["name"] == "engine"][0])')
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
# The example review as it is in the repository (indented, 4.8 KB: the
# figure earlier rounds compare with), then compact as the apiserver sends it.
for bench in "review to answer bytes" "compact review to answer bytes"; do
    echo "$bench:"
    valgrind --tool=callgrind --callgrind-out-file="$OUT" "$BENCH" --bench --profile-time 2 "^admission-review-5k/$bench\$" >/dev/null 2>&1
    python3 benches/callgrind_percall.py "$OUT" 'admission::answer$' 'Engine::review_view$'
done
