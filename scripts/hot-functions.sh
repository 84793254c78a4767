#!/usr/bin/env bash
# Regenerates link/hot-functions.txt: the functions `dind-injector serve`
# runs — starting, answering both benchmark reviews over HTTP/2 and
# HTTP/1.1 (in bursts from h2load, and at a steady rate from a rustls client,
# examples/steady_load.rs), the metrics and probes, stopping — and then those the in-pod
# helpers run (init, supervise, sidecar), as linker symbols, found by
# running the release builds under callgrind, and, for serving, by
# sampling them with perf on this machine's CPU (see `sampled`). build.rs hands the file to
# the linker (lld's --symbol-ordering-file), which places those functions
# side by side at the start of .text: serving then maps about 2 MiB of the
# executable instead of most of its 11 MiB (docs/performance.md).
#
# Symbol names carry a hash of the build's configuration, so the file holds
# the names of both release builds that matter: the static one that ships
# (`make static`) and the host one that `make bench-load` measures. Names
# the linker does not find are skipped; `tests/static/resident.sh` (part of
# `make test`) fails when too few are found, which is when to run this
# again: `make hot-functions` (a dependency, version or toolchain change).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/serve-locally.sh
OUT=link/hot-functions.txt
STATIC_BIN=${STATIC_BIN:?the static release binary (make static)}
HOST_BIN=${HOST_BIN:?the host release binary (cargo build --release --bin dind-injector)}
# The steady load of `make bench-load`, a rustls client (as the client of
# the apiserver is Go's, not OpenSSL's: see steady() below).
cargo build --release --locked --example steady_load
STEADY=${CARGO_TARGET_DIR:-target}/release/examples/steady_load
command -v valgrind >/dev/null || apt-get install -y -qq valgrind >/dev/null
command -v curl >/dev/null || apt-get install -y -qq curl >/dev/null
command -v h2load >/dev/null || apt-get install -y -qq nghttp2-client >/dev/null
command -v perf >/dev/null || apt-get install -y -qq linux-perf >/dev/null || true

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
python3 benches/review-with-pod.py examples/admission-review.json tests/fixtures/bench-runner-pod.json "$WORK/pod10k.json"

review() { # body url h2load-options...: the body as an AdmissionReview, as the benchmark sends it
    local body=$1 url=$2
    shift 2
    h2load -t 1 "$@" -H 'content-type: application/json' -d "$body" "$url"
}

steady() { # body url rate seconds: the body at a steady rate over 2 connections of 2
    # streams, from a rustls client. Its handshake is not OpenSSL's: it asks
    # for OCSP stapling (status_request), as Go's client (the apiserver's)
    # does, and rustls' server parses that in functions nothing else runs;
    # each of them, left out of the list, was a cold page and the 64 KiB
    # the kernel maps around a fault (docs/performance.md, "Sixth round").
    # Requests spaced out, with the server idle between them, also run the
    # runtime's parking and waking as h2load's full pipes seldom do.
    local body=$1 url=$2 rate=$3 seconds=$4 failed
    failed=$("$STEADY" "$url" "$WORK/certs/ca.crt" "$body" 2 2 "$rate" "$seconds" 0 | awk '{print $5}') \
        || { echo "hot-functions.sh: steady load failed" >&2; exit 1; }
    [ "$failed" = 0 ] || { echo "hot-functions.sh: $failed of the steady load's reviews failed" >&2; exit 1; }
}

functions() { # binary → the mangled names of the functions it ran, in first-seen order
    local bin=$1 cg=$WORK/callgrind.out
    serve_locally "$WORK" "$bin" valgrind --tool=callgrind --demangle=no --callgrind-out-file="$cg"
    local webhook=$WEBHOOK metrics=$METRICS
    # Concurrent HTTP/2 streams as the apiserver sends them (flow control,
    # several connections, the runtime's other worker), then HTTP/1.1.
    for body in examples/admission-review.json "$WORK/pod10k.json"; do
        review "$body" "$webhook" -c 4 -m 8 -n 4000 | grep -q ' 4000 succeeded' \
            || { echo "hot-functions.sh: reviews failed" >&2; exit 1; }
        curl -sS --fail --http1.1 --cacert "$WORK/certs/ca.crt" -H 'Content-Type: application/json' \
            --data-binary @"$body" "$webhook" -o /dev/null
        # The benchmark's loads end mid-request: h2load -D stops with
        # streams open (resets, connection errors), which -n never does.
        for load in "-c 16 -m 1" "-c 8 -m 8"; do
            # shellcheck disable=SC2086
            review "$body" "$webhook" $load -D 3 >/dev/null || true
        done
        steady "$body" "$webhook" 50 2
    done
    # Go's client hello also asks for certificate timestamps (SCT). -ct
    # needs a list of CT logs, and an empty one will do: nothing is checked.
    echo 'enabled_logs =' >"$WORK/ct-logs.cnf"
    openssl s_client -connect "$(echo "$webhook" | sed -E 's|https://([^/]*)/.*|\1|')" -alpn h2 \
        -ct -ctlogfile "$WORK/ct-logs.cnf" -CAfile "$WORK/certs/ca.crt" </dev/null >/dev/null 2>&1 \
        || echo "hot-functions.sh: openssl s_client -ct failed; its hello's functions may be missing" >&2
    curl -sS --fail "$metrics" -o /dev/null
    curl -sS --fail "${metrics%/metrics}/readyz" -o /dev/null
    curl -sS --fail "${metrics%/metrics}/healthz" -o /dev/null
    kill -TERM "$SERVE_PID"
    wait "$SERVE_PID" || true
    names "$cg"*
    rm -f "$cg"*
}

names() { # callgrind outputs → the functions they name
    grep -hE '^c?fn=\([0-9]+\) ' "$@" | sed -E 's/^[^ ]+ //'
}

sampled() { # binary → the functions perf's samples saw serving the
    # benchmark's loads natively. Under valgrind the CPU has fewer features,
    # so code chosen at run time by what the CPU has (ring's AES-GCM and
    # P-256/X25519 variants, the C library's string functions) differs from
    # what runs on the machine, and each such function natively ran in a
    # 64 KiB window of its own. Sampling finds the ones that run often.
    local bin=$1 data=$WORK/perf.data
    if ! command -v perf >/dev/null || ! perf record -q -e cpu-clock -o "$data" true 2>/dev/null; then
        echo "hot-functions.sh: perf cannot sample here; natively chosen variants left out" >&2
        return 0
    fi
    serve_locally "$WORK" "$bin" perf record -q -F 20000 -e cpu-clock -o "$data" --
    local load body
    for body in examples/admission-review.json "$WORK/pod10k.json"; do
        for load in "-c 1 -m 1" "-c 16 -m 1" "-c 8 -m 8" "-c 64 -m 1"; do
            # shellcheck disable=SC2086
            review "$body" "$WEBHOOK" $load -D 2 >/dev/null
        done
        steady "$body" "$WEBHOOK" 5000 2
    done
    kill -INT "$SERVE_PID"
    wait "$SERVE_PID" || true
    # User-space symbols with samples; not addresses, not the PLT, not the
    # C library's versioned names (host builds: not in the executable).
    perf report -i "$data" --no-children --no-demangle --sort sym --stdio 2>/dev/null \
        | awk '$2 == "[.]" && $3 !~ /^0x/ && $3 !~ /@/ { print $3 }'
    rm -f "$data"
}

helpers() { # static binary → the functions the in-pod helpers ran: init,
    # then supervise and sidecar for a runner that exits, and a supervised
    # runner stopped by SIGTERM (drain, SIGINT); dockerd is openssl s_server
    # answering /_ping over TLS with init's certificates
    local bin=$1 h=$WORK/helpers
    rm -rf "$h"; mkdir -p "$h/run" "$h/run2" "$h/www"
    local cg="valgrind --tool=callgrind --demangle=no"
    $cg --callgrind-out-file="$h/cg.init" "$bin" init --bin-dir "$h/bin" --certs-dir "$h/certs" 2>"$h/err"
    local port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    printf 'HTTP/1.0 200 OK\r\n\r\nOK' >"$h/www/_ping"
    (cd "$h/www" && exec openssl s_server -quiet -HTTP -accept "127.0.0.1:$port" \
        -cert ../certs/server/cert.pem -key ../certs/server/key.pem >/dev/null 2>&1) &
    local docker=$!
    $cg --callgrind-out-file="$h/cg.sidecar" "$bin" sidecar --run-dir "$h/run" --certs-dir "$h/certs" \
        --docker-host "tcp://127.0.0.1:$port" --mtu off -- sleep 1000 2>>"$h/err" &
    local sidecar=$!
    $cg --callgrind-out-file="$h/cg.supervise" "$bin" supervise --run-dir "$h/run" --docker-wait=60 \
        -- sh -c 'sleep 2' 2>>"$h/err"
    wait "$sidecar"
    $cg --callgrind-out-file="$h/cg.drain" "$bin" supervise --run-dir "$h/run2" --docker-wait=0 \
        -- sleep 1000 2>>"$h/err" &
    local supervise=$!
    for _ in $(seq 100); do [ -e "$h/run2/runner.pid" ] && break; sleep 0.1; done
    kill -TERM "$supervise"
    wait "$supervise" || true
    kill "$docker" 2>/dev/null || true
    for f in init sidecar supervise drain; do
        [ -s "$h/cg.$f" ] || { cat "$h/err" >&2; echo "hot-functions.sh: $f did not run" >&2; exit 1; }
    done
    names "$h"/cg.*
}

# Three blocks: what serving and the in-pod helpers both run (the
# runtime's start, formatting, allocation...), what only serving runs, what
# only the helpers run. Each process then maps the first block and its own,
# not windows all over the other's.
{
    functions "$STATIC_BIN"
    functions "$HOST_BIN"
    sampled "$STATIC_BIN"
    sampled "$HOST_BIN"
} | awk '!seen[$0]++' >"$WORK/serve.txt"
helpers "$STATIC_BIN" | awk '!seen[$0]++' >"$WORK/helpers.txt"
{
    echo "# Generated by scripts/hot-functions.sh; see there."
    awk 'NR == FNR { helper[$0] = 1; next } ($0 in helper)' "$WORK/helpers.txt" "$WORK/serve.txt"
    awk 'NR == FNR { helper[$0] = 1; next } !($0 in helper)' "$WORK/helpers.txt" "$WORK/serve.txt"
    awk 'NR == FNR { serve[$0] = 1; next } !($0 in serve)' "$WORK/serve.txt" "$WORK/helpers.txt"
} >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "==> $OUT: $(grep -vc '^#' "$OUT") functions"
