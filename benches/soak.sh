#!/usr/bin/env bash
# Soak of `dind-injector serve` (make soak; not in CI): SOAK_MINUTES (30) of
# realistic load at half the measured capacity, a certificate rotation every
# minute, a burst of hostile clients (idle connections, a slowloris, bodies
# over the limit, worst-case bodies) every BURST_EVERY minutes, and one
# SIGTERM + restart on the same address in the middle. Load runs in
# SEGMENT-second segments (h2load, HTTP/2 over TLS, the example review), so
# that the restart's drain window is one segment. Prints one line per
# segment (served, failed, p99, RSS) and a summary: failures must be zero
# outside the restart's segment, and RSS flat from start to end.
set -euo pipefail
cd "$(dirname "$0")/.."

MINUTES=${SOAK_MINUTES:-30}
SEGMENT=${SEGMENT:-20}
BURST_EVERY=${BURST_EVERY:-3}
CLIENTS=${CLIENTS:-4}
REVIEW=examples/admission-review.json
command -v h2load >/dev/null || apt-get install -y -qq nghttp2-client >/dev/null

# The binary under test: $BIN (make soak passes the static release build).
BIN=${BIN:?set BIN to a release build of dind-injector}
WORK=$(mktemp -d)
SERVER_PID=
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
"$BIN" certs --out "$WORK/certs" 2>/dev/null
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URL=https://127.0.0.1:$PORT

start_server() {
    "$BIN" serve --addr "127.0.0.1:$PORT" --metrics-addr 127.0.0.1:0 \
        --tls-cert "$WORK/certs/tls.crt" --tls-key "$WORK/certs/tls.key" \
        --log-format json --shutdown-delay 2s --cert-reload-interval 1s \
        >>"$WORK/server.out" 2>>"$WORK/server.err" &
    SERVER_PID=$!
    for _ in $(seq 100); do
        curl -sk -o /dev/null "$URL/healthz" && return 0
        sleep 0.1
    done
    echo "server did not start"; tail "$WORK/server.err"; exit 1
}
rss() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$SERVER_PID/status"; }

# One load segment: "served failed p99_ms".
load() { # seconds rate-per-client
    h2load -t 1 -c "$CLIENTS" -m 4 -D "$1" --rps="$2" -H 'content-type: application/json' \
        -d "$REVIEW" --log-file="$WORK/seg.log" "$URL/mutate" >"$WORK/seg.h2load" 2>&1 || true
    python3 - "$WORK/seg.log" "$WORK/seg.h2load" <<'PY'
import re, sys
try:
    lat = sorted(int(l.split("\t")[2]) for l in open(sys.argv[1]) if l.strip() and l.split("\t")[1] == "200")
except FileNotFoundError:
    lat = []
text = open(sys.argv[2]).read()
m = re.search(r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored", text)
ok, failed = (int(m.group(2)), int(m.group(3)) + int(m.group(4))) if m else (0, 1)
p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))] / 1000 if lat else float("nan")
print(ok, failed, f"{p99:.2f}")
PY
}

# Hostile clients, all at once, for a few seconds: 50 idle TLS connections,
# a slowloris head, 4 bodies over the limit, 4 worst-case bodies.
hostile() {
    python3 - "$PORT" <<'PY' &
import socket, ssl, sys, threading, time
port = int(sys.argv[1])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
def conn():
    return ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
held = []
for _ in range(50):
    try: held.append(conn())
    except OSError: pass
def slow():
    try:
        s = conn(); s.sendall(b"POST /mutate HTTP/1.1\r\nHost: x\r\n"); time.sleep(12)
    except OSError: pass
def body(size, fill):
    try:
        s = conn()
        head = f"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
        s.sendall(head.encode()); s.sendall(fill[:size]); s.recv(100)
    except OSError: pass
big = b"[" + b"0," * (2 * 1024 * 1024) + b"0]"
worst = b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","object":{"z":[' + b"0," * 1_500_000 + b'0]}}}'
threads = [threading.Thread(target=slow)]
threads += [threading.Thread(target=body, args=(len(big), big)) for _ in range(4)]
threads += [threading.Thread(target=body, args=(min(len(worst), 3 * 1024 * 1024 - 10), worst)) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
time.sleep(3)
PY
}

start_server
echo "==> capacity: saturation for 10s"
h2load -t 1 -c "$CLIENTS" -m 8 -D 10 -H 'content-type: application/json' -d "$REVIEW" "$URL/mutate" >"$WORK/sat.h2load"
CAP=$(grep -oE 'finished in [0-9.]+\w+, [0-9.]+ req/s' "$WORK/sat.h2load" | grep -oE '[0-9.]+ req/s' | cut -d' ' -f1)
RATE=$(python3 -c "print(max(1, int($CAP / 2 / $CLIENTS)))")
SEGMENTS=$((MINUTES * 60 / SEGMENT))
RESTART_AT=$((SEGMENTS / 2))
RSS_START=$(rss); LAST_RSS=$RSS_START; RSS_BEFORE=; RSS_AFTER=
echo "capacity $CAP req/s; load $((RATE * CLIENTS)) req/s ($CLIENTS clients); $SEGMENTS segments of ${SEGMENT}s; RSS at start $RSS_START MiB"
echo "segment minute served failed p99_ms rss_mib events"
TOTAL_OK=0; FAIL_OUT=0; FAIL_RESTART=0
for seg in $(seq 1 "$SEGMENTS"); do
    events=""
    second=$(( (seg - 1) * SEGMENT ))
    if [ $((second % 60)) -eq 0 ] && [ "$seg" -gt 1 ]; then
        "$BIN" certs --out "$WORK/certs" 2>/dev/null; events="$events rotation"
    fi
    if [ $((second % (BURST_EVERY * 60))) -eq 0 ] && [ "$seg" -gt 1 ]; then
        hostile; events="$events hostile"
    fi
    if [ "$seg" -eq "$RESTART_AT" ]; then
        ( sleep $((SEGMENT / 2)); kill -TERM "$SERVER_PID" ) &
        events="$events sigterm+restart"
    fi
    read -r ok failed p99 < <(load "$SEGMENT" "$RATE")
    if [ "$seg" -eq "$RESTART_AT" ]; then
        wait "$SERVER_PID" || true
        RSS_BEFORE=$LAST_RSS
        start_server
        RESTARTED=1
        FAIL_RESTART=$((FAIL_RESTART + failed))
    else
        FAIL_OUT=$((FAIL_OUT + failed))
    fi
    TOTAL_OK=$((TOTAL_OK + ok))
    LAST_RSS=$(rss)
    [ "${RESTARTED:-0}" = 1 ] && { RSS_AFTER=$LAST_RSS; RESTARTED=2; }
    echo "$seg $((second / 60)) $ok $failed $p99 $LAST_RSS$events"
done
RSS_END=$(rss)
cat <<SUMMARY

soak: $MINUTES min at $((RATE * CLIENTS)) req/s (half of $CAP); served $TOTAL_OK;
failed outside the restart's segment: $FAIL_OUT; failed in it: $FAIL_RESTART;
RSS: first process $RSS_START MiB after warm-up, $RSS_BEFORE MiB before its SIGTERM;
second process $RSS_AFTER MiB after its first segment, $RSS_END MiB at the end.
SUMMARY
[ "$FAIL_OUT" -eq 0 ]
