#!/usr/bin/env bash
# Where `dind-injector serve` spends its CPU under load: perf samples of the
# server while h2load posts a review (8 connections x 8 streams, loopback,
# TLS + HTTP/2), top symbols and the share per binary/kernel.
# Usage: benches/profile.sh BIN [BODY] (default body: examples/admission-review.json)
# Bounded: DURATION seconds of load (default 8), traffic on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$1
BODY=${2:-examples/admission-review.json}
DURATION=${DURATION:-8}
command -v perf >/dev/null || { echo "perf is not installed (Debian: linux-perf)"; exit 1; }
command -v h2load >/dev/null || apt-get install -y -qq nghttp2-client >/dev/null

WORK=$(mktemp -d)
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
"$BIN" certs --out "$WORK/certs" 2>/dev/null
"$BIN" serve --addr 127.0.0.1:0 --metrics-addr 127.0.0.1:0 --tls-cert "$WORK/certs/tls.crt" \
    --tls-key "$WORK/certs/tls.key" --log-format json >"$WORK/out" 2>"$WORK/err" &
PID=$!
for _ in $(seq 100); do grep -q listening "$WORK/out" 2>/dev/null && break; sleep 0.1; done
URL=$(grep -o 'https://[^/ ]*' "$WORK/out" | head -1)
h2load -t 1 -c 8 -m 8 -D $((DURATION + 2)) -H 'content-type: application/json' -d "$BODY" \
    "$URL/mutate" >"$WORK/h2load" &
LOAD=$!
sleep 1
perf record -q -F 499 -p "$PID" -o "$WORK/perf.data" -- sleep "$DURATION" 2>/dev/null
wait "$LOAD"
grep "finished in" "$WORK/h2load"
echo "== share by binary (dso)"
perf report -i "$WORK/perf.data" --no-children --sort dso --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -8
echo "== top symbols"
perf report -i "$WORK/perf.data" --no-children --sort symbol --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -${TOP:-25}
