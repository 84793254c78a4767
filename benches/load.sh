#!/usr/bin/env bash
# Load test of `dind-injector serve` next to two baselines, in one run, on
# loopback, with h2load over TLS + HTTP/2 (docs/performance.md):
#   ceiling  examples/ceiling_server.rs: same TLS stack, reads the body and
#            answers a fixed copy of the webhook's own answer (no JSON at all)
#   peer     examples/peer_webhook.rs: a typical kube-rs webhook (kube-core's
#            AdmissionReview<DynamicObject>, axum's Json, one patch op, one log line)
#   dind-injector serve, JSON logs, default limits
# Two bodies, compact: the realistic runner-pod review (examples/admission-review.json)
# and the 10 KB runner pod (tests/fixtures/bench-runner-pod.json) in a review.
# Loads: c=1, c=16, c=64 connections of one stream each, and 8 connections x
# 8 streams; the servers take turns at each load, so they share the
# machine's noise. Then the three at half of dind-injector's own 8x8 and c=16
# maxima, offered steadily (examples/steady_load.rs: h2load's --rps sends in
# 10 ms ticks, all streams at once; its figure is kept beside), and each
# server's peak RSS (VmHWM) per body. Run by `make bench-load`.
# BEFORE_BIN=path/to/an/earlier/dind-injector adds that build as a fourth
# server (before/after in the same run); BIN=path replaces the freshly built
# dind-injector (the static build of `make static`, to set it against a
# static BEFORE_BIN: both with the same C library). BIN must come from
# `cargo build --release`: `cargo bench` and `cargo test --release` copy
# their own build over target/release/dind-injector, made with the
# dev-dependencies' features (other symbol names, so link/hot-functions.txt
# orders nothing in it: 2.3-2.6 MiB more peak RSS, docs/performance.md).
# Bounded: every run lasts DURATION seconds, all traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
LOADS=${LOADS:-"1x1 16x1 64x1 8x8"}

if ! command -v h2load >/dev/null; then
    echo "==> installing h2load (Debian nghttp2-client)"
    apt-get install -y -qq nghttp2-client >/dev/null || { apt-get update -qq && apt-get install -y -qq nghttp2-client >/dev/null; }
fi
# BIN, CEILING, PEER and STEADY may name builds made earlier; unless all
# four are given, they are built here.
if [ -z "${BIN:-}" ] || [ -z "${CEILING:-}" ] || [ -z "${PEER:-}" ] || [ -z "${STEADY:-}" ]; then
    echo "==> building release binaries"
    # dind-injector exactly as it ships (without the `peer` feature, which
    # adds kube-core's admission types and axum's Json for the peer): a
    # feature changes the symbol names that link/hot-functions.txt orders.
    cargo build --release --locked --bin dind-injector
    cargo build --release --locked --features peer --example ceiling_server --example peer_webhook \
        --example steady_load
    BIN=${BIN:-$TARGET_DIR/release/dind-injector}
    CEILING=${CEILING:-$TARGET_DIR/release/examples/ceiling_server}
    PEER=${PEER:-$TARGET_DIR/release/examples/peer_webhook}
    STEADY=${STEADY:-$TARGET_DIR/release/examples/steady_load}
fi
for b in "$BIN" "$CEILING" "$PEER" "$STEADY"; do
    [ -x "$b" ] || { echo "load.sh: $b is not an executable" >&2; exit 2; }
done

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

"$BIN" certs --out "$WORK/certs" 2>/dev/null
CERT=$WORK/certs/tls.crt KEY=$WORK/certs/tls.key
# Both bodies compact, as the apiserver sends them (Go's encoding/json
# writes no whitespace): the example review is indented, 4.8 KB; compact it
# is 2.6 KB. Rounds before the seventh sent it indented (docs/performance.md).
python3 benches/review-with-pod.py examples/admission-review.json - "$WORK/review.json"
python3 benches/review-with-pod.py "$WORK/review.json" tests/fixtures/bench-runner-pod.json "$WORK/pod10k.json"

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
stop() { kill "$(cat "$WORK/$1.pid")" 2>/dev/null || true; }
rss() { awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$(cat "$WORK/$1.pid")/status"; }
anon() { awk '/RssAnon/ {printf "%.1f", $2/1024}' "/proc/$(cat "$WORK/$1.pid")/status"; }
# CPU time (user + system, clock ticks) a server has used so far: CPU per
# request is far less sensitive to a busy machine than requests per second.
ticks() { awk '{print $14 + $15}' "/proc/$(cat "$WORK/$1.pid")/stat"; }
us_per_req() { # ticks_before ticks_after rps: CPU microseconds per request (warm-up included at the same rate)
    python3 -c "print(f'{($2 - $1) * 1e6 / $(getconf CLK_TCK) / max(1, $3 * ($DURATION + 2)):.0f}')"
}

run() { # name url body conns streams [extra h2load args]: prints "rps p50_ms p99_ms failed"
    local name=$1 url=$2 body=$3 conns=$4 streams=$5; shift 5
    local log=$WORK/$name.log
    h2load -t 1 -c "$conns" -m "$streams" -D "$DURATION" --warm-up-time=2 \
        -H 'content-type: application/json' -d "$body" --log-file="$log" "$@" "$url/mutate" >"$WORK/$name.h2load"
    python3 - "$log" "$WORK/$name.h2load" <<'PY'
import re, sys
lat = sorted(int(l.split("\t")[2]) for l in open(sys.argv[1]) if l.strip())
text = open(sys.argv[2]).read()
rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", text).group(1))
m = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored", text)
failed = int(m.group(2)) + int(m.group(3))
pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] / 1000 if lat else float("nan")
print(f"{rps:.0f} {pct(0.50):.2f} {pct(0.99):.2f} {failed}")
PY
}

steady() { # name url body conns streams rate: examples/steady_load's line, "req/s p50 p99 p99_from_due failed"
    local name=$1 url=$2 body=$3 conns=$4 streams=$5 rate=$6
    # Its failure would leave `read` nothing and end the script under -e:
    # say why first.
    "$STEADY" "$url/mutate" "$WORK/certs/ca.crt" "$body" "$conns" "$streams" "$rate" "$DURATION" 2 \
        2>"$WORK/steady-$name.err" \
        || { cat "$WORK/steady-$name.err" >&2; echo "load.sh: steady load $name failed" >&2; exit 1; }
}

TABLE=$WORK/table.md
HALF_TABLE=$WORK/half.md
RSS_TABLE=$WORK/rss.md
BEFORE_TABLE=$WORK/before.md
echo "| body | load | before req/s | now req/s | now / before | p50 / p99 ms before | now | CPU µs/req before / now |" >"$BEFORE_TABLE"
echo "|---|---|---:|---:|---:|---:|---:|---:|" >>"$BEFORE_TABLE"
echo "| body | load | ceiling req/s | peer req/s | dind-injector req/s | dind / peer | dind / ceiling | p50 / p99 ms ceiling | peer | dind-injector | CPU µs/req ceiling / peer / dind | failed |" >"$TABLE"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" >>"$TABLE"
echo "| body | load | offered req/s (half dind-injector's maximum there) | ceiling p50 / p99 / p99 from due, ms | peer | dind-injector | dind-injector under h2load --rps: p50 / p99 | failed |" >"$HALF_TABLE"
echo "|---|---|---:|---:|---:|---:|---:|---:|" >>"$HALF_TABLE"
echo "| body | ceiling | peer | dind-injector | RssAnon at the end: ceiling / peer / dind |" >"$RSS_TABLE"
echo "|---|---:|---:|---:|---:|" >>"$RSS_TABLE"

for body in review pod10k; do
    BODY=$WORK/$body.json
    WEBHOOK=$(start "webhook-$body" "$BIN" serve --addr 127.0.0.1:0 --metrics-addr 127.0.0.1:0 \
        --tls-cert "$CERT" --tls-key "$KEY" --log-format json)
    # The ceiling answers with exactly what the webhook answers for this body.
    curl -sS --fail --cacert "$WORK/certs/ca.crt" -H 'Content-Type: application/json' \
        --data-binary @"$BODY" "$WEBHOOK/mutate" >"$WORK/answer-$body.json"
    CEIL=$(start "ceiling-$body" "$CEILING" 127.0.0.1:0 "$CERT" "$KEY" "$WORK/answer-$body.json")
    PEERURL=$(start "peer-$body" "$PEER" 127.0.0.1:0 "$CERT" "$KEY")
    if [ -n "${BEFORE_BIN:-}" ]; then
        BEFORE=$(start "before-$body" "$BEFORE_BIN" serve --addr 127.0.0.1:0 --metrics-addr 127.0.0.1:0 \
            --tls-cert "$CERT" --tls-key "$KEY" --log-format json)
    fi
    echo "==> $body: $(wc -c <"$BODY") bytes, answer $(wc -c <"$WORK/answer-$body.json") bytes; ${DURATION}s per run"
    MAX8=0 MAX16=0
    for load in $LOADS; do
        conns=${load%x*} streams=${load#*x}
        t0=$(ticks "ceiling-$body")
        read -r C_RPS C_P50 C_P99 C_F < <(run "c-$body-$load" "$CEIL" "$BODY" "$conns" "$streams")
        C_CPU=$(us_per_req "$t0" "$(ticks "ceiling-$body")" "$C_RPS")
        t0=$(ticks "peer-$body")
        read -r P_RPS P_P50 P_P99 P_F < <(run "p-$body-$load" "$PEERURL" "$BODY" "$conns" "$streams")
        P_CPU=$(us_per_req "$t0" "$(ticks "peer-$body")" "$P_RPS")
        t0=$(ticks "webhook-$body")
        read -r W_RPS W_P50 W_P99 W_F < <(run "w-$body-$load" "$WEBHOOK" "$BODY" "$conns" "$streams")
        W_CPU=$(us_per_req "$t0" "$(ticks "webhook-$body")" "$W_RPS")
        if [ -n "${BEFORE_BIN:-}" ]; then
            t0=$(ticks "before-$body")
            read -r B_RPS B_P50 B_P99 _ < <(run "b-$body-$load" "$BEFORE" "$BODY" "$conns" "$streams")
            B_CPU=$(us_per_req "$t0" "$(ticks "before-$body")" "$B_RPS")
            echo "| $body | $load | $B_RPS | $W_RPS | $(python3 -c "print(f'{$W_RPS / $B_RPS:.2f}')") | $B_P50 / $B_P99 | $W_P50 / $W_P99 | $B_CPU / $W_CPU |" >>"$BEFORE_TABLE"
        fi
        [ "$load" = 8x8 ] && MAX8=$W_RPS
        [ "$load" = 16x1 ] && MAX16=$W_RPS
        label="c=$conns"; [ "$streams" != 1 ] && label="${conns}x${streams}"
        ratios=$(python3 -c "print(f'{$W_RPS / $P_RPS:.2f} | {$W_RPS / $C_RPS:.2f}')")
        row="| $body | $label | $C_RPS | $P_RPS | $W_RPS | $ratios | $C_P50 / $C_P99 | $P_P50 / $P_P99 | $W_P50 / $W_P99 | $C_CPU / $P_CPU / $W_CPU | $((C_F + P_F + W_F)) |"
        echo "$row" | tee -a "$TABLE"
    done
    # Half of dind-injector's own maximum at 8x8 and at c=16, offered to all
    # three at evenly spaced times; then the same rate through h2load's
    # --rps, whose timer sends what is due every 10 ms, all streams at once.
    for half in "8 8 $MAX8 8x8" "16 1 $MAX16 c=16"; do
        read -r conns streams max label <<<"$half"
        [ "$max" != 0 ] || continue
        per_conn=$(python3 -c "print(max(1, int($max / 2 / $conns)))")
        rate=$((per_conn * conns))
        read -r _ SC_P50 SC_P99 SC_DUE SC_F < <(steady "c-$body-$conns" "$CEIL" "$BODY" "$conns" "$streams" "$rate")
        read -r _ SP_P50 SP_P99 SP_DUE SP_F < <(steady "p-$body-$conns" "$PEERURL" "$BODY" "$conns" "$streams" "$rate")
        read -r _ SW_P50 SW_P99 SW_DUE SW_F < <(steady "w-$body-$conns" "$WEBHOOK" "$BODY" "$conns" "$streams" "$rate")
        read -r _ H_P50 H_P99 H_F < <(run "wh-$body-$conns" "$WEBHOOK" "$BODY" "$conns" "$streams" --rps="$per_conn")
        echo "| $body | $label | $rate | $SC_P50 / $SC_P99 / $SC_DUE | $SP_P50 / $SP_P99 / $SP_DUE | $SW_P50 / $SW_P99 / $SW_DUE | $H_P50 / $H_P99 | $SC_F / $SP_F / $SW_F / $H_F |" | tee -a "$HALF_TABLE"
    done
    echo "| $body | $(rss "ceiling-$body") | $(rss "peer-$body") | $(rss "webhook-$body") | $(anon "ceiling-$body") / $(anon "peer-$body") / $(anon "webhook-$body") |" >>"$RSS_TABLE"
    if [ -n "${BEFORE_BIN:-}" ]; then
        echo "| $body, the earlier build | | | $(rss "before-$body") | $(anon "before-$body") |" >>"$RSS_TABLE"
        stop "before-$body"
    fi
    stop "webhook-$body"; stop "ceiling-$body"; stop "peer-$body"
done

echo
echo "Throughput (h2load -t 1, ${DURATION}s after 2s warm-up; loads c=N are N connections of 1 stream):"
echo
cat "$TABLE"
echo
echo "At half of dind-injector's own maximum (8x8 and c=16), offered steadily (examples/steady_load.rs; p99 from due includes waiting for a free stream):"
echo
cat "$HALF_TABLE"
echo
echo "Peak RSS (VmHWM, MiB, over all the runs of that body):"
echo
cat "$RSS_TABLE"
if [ -n "${BEFORE_BIN:-}" ]; then
    echo
    echo "dind-injector now against $BEFORE_BIN, in the same run:"
    echo
    cat "$BEFORE_TABLE"
fi
