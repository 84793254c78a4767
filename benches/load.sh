#!/usr/bin/env bash
# Load test of `dind-injector serve` against a ceiling (benches/ceiling_server.rs)
# on loopback, with h2load over TLS + HTTP/2, posting a realistic
# AdmissionReview. Run by `make bench` (not by `make test`).
#
# For each server: a saturation run (throughput, p50/p99), then a run at half
# the ceiling's throughput (p50/p99 under normal load); peak RSS (VmHWM).
# Bounded: every run lasts DURATION seconds, all traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-8}
STREAMS=${STREAMS:-8}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
REVIEW=examples/admission-review.json

if ! command -v h2load >/dev/null; then
    echo "==> installing h2load (Debian nghttp2-client)"
    apt-get install -y -qq nghttp2-client >/dev/null || { apt-get update -qq && apt-get install -y -qq nghttp2-client >/dev/null; }
fi
echo "==> building release binaries"
cargo build --release --locked --bin dind-injector --example ceiling_server
BIN=$TARGET_DIR/release/dind-injector
CEILING=$TARGET_DIR/release/examples/ceiling_server

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

"$BIN" certs --out "$WORK/certs" 2>/dev/null
start() { # name, command...: starts a server, prints its address
    local name=$1; shift
    "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    PIDS+=($!)
    echo $! >"$WORK/$name.pid"
    for _ in $(seq 100); do
        grep -q listening "$WORK/$name.out" 2>/dev/null && break
        sleep 0.1
    done
    grep -o 'https://[^/ ]*' "$WORK/$name.out" | head -1
}
WEBHOOK=$(start webhook "$BIN" serve --addr 127.0.0.1:0 --metrics-addr 127.0.0.1:0 \
    --tls-cert "$WORK/certs/tls.crt" --tls-key "$WORK/certs/tls.key" --log-format json)
# The ceiling answers with exactly what the webhook answers for this review.
curl -sS --cacert "$WORK/certs/ca.crt" -H 'Content-Type: application/json' \
    --data @"$REVIEW" "$WEBHOOK/mutate" >"$WORK/answer.json"
CEIL=$(start ceiling "$CEILING" 127.0.0.1:0 "$WORK/certs/tls.crt" "$WORK/certs/tls.key" "$WORK/answer.json")
echo "webhook $WEBHOOK, ceiling $CEIL; review $(wc -c <"$REVIEW") bytes, answer $(wc -c <"$WORK/answer.json") bytes"

run() { # name url log [extra h2load args]: prints "rps p50_ms p99_ms failed"
    local name=$1 url=$2 log=$3; shift 3
    # The webhook logs one line per review; keep that cost in the figures
    # but not the disk: stderr goes to a file in $WORK.
    h2load -t 1 -c "$CLIENTS" -m "$STREAMS" -D "$DURATION" --warm-up-time=2 \
        -H 'content-type: application/json' -d "$REVIEW" --log-file="$log" "$@" "$url/mutate" >"$WORK/$name.h2load"
    python3 - "$log" "$WORK/$name.h2load" <<'PY'
import re, sys
lat = sorted(int(l.split("\t")[2]) for l in open(sys.argv[1]) if l.strip())
text = open(sys.argv[2]).read()
rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", text).group(1))
m = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored", text)
ok, failed = int(m.group(1)), int(m.group(2)) + int(m.group(3))
pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] / 1000
print(f"{rps:.0f} {pct(0.50):.3f} {pct(0.99):.3f} {failed} {ok}")
PY
}
rss() { awk '/VmHWM/ {print $2/1024}' "/proc/$(cat "$WORK/$1.pid")/status"; }

echo "==> saturation: $CLIENTS connections x $STREAMS streams, ${DURATION}s each"
read -r C_RPS C_P50 C_P99 C_FAIL C_OK < <(run ceiling "$CEIL" "$WORK/c.log")
read -r W_RPS W_P50 W_P99 W_FAIL W_OK < <(run webhook "$WEBHOOK" "$WORK/w.log")
HALF=$(python3 -c "print(max(1, int($C_RPS / 2 / $CLIENTS)))")
echo "==> half the ceiling's throughput: $CLIENTS connections x $HALF req/s"
read -r CH_RPS CH_P50 CH_P99 CH_FAIL _ < <(run ceiling-half "$CEIL" "$WORK/ch.log" --rps="$HALF")
read -r WH_RPS WH_P50 WH_P99 WH_FAIL _ < <(run webhook-half "$WEBHOOK" "$WORK/wh.log" --rps="$HALF")
# And at half the webhook's own saturation throughput: its latency under a
# load it can sustain.
WHALF=$(python3 -c "print(max(1, int($W_RPS / 2 / $CLIENTS)))")
echo "==> half the webhook's throughput: $CLIENTS connections x $WHALF req/s"
read -r WW_RPS WW_P50 WW_P99 WW_FAIL _ < <(run webhook-own-half "$WEBHOOK" "$WORK/ww.log" --rps="$WHALF")
C_RSS=$(rss ceiling); W_RSS=$(rss webhook)

cat <<TABLE

| server | load | req/s | p50 ms | p99 ms | failed | peak RSS MiB |
|---|---|---:|---:|---:|---:|---:|
| ceiling | saturation | $C_RPS | $C_P50 | $C_P99 | $C_FAIL | $C_RSS |
| dind-injector | saturation | $W_RPS | $W_P50 | $W_P99 | $W_FAIL | $W_RSS |
| ceiling | $((HALF * CLIENTS)) req/s | $CH_RPS | $CH_P50 | $CH_P99 | $CH_FAIL | |
| dind-injector | $((HALF * CLIENTS)) req/s | $WH_RPS | $WH_P50 | $WH_P99 | $WH_FAIL | |
| dind-injector | $((WHALF * CLIENTS)) req/s (half its own) | $WW_RPS | $WW_P50 | $WW_P99 | $WW_FAIL | |

throughput ratio dind-injector / ceiling: $(python3 -c "print(f'{$W_RPS / $C_RPS:.2f}')")
TABLE
