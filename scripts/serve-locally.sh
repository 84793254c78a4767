# Sourced by tests/static/resident.sh and scripts/hot-functions.sh, which
# both run a release build's `serve` on loopback to see what serving does.
#
# serve_locally DIR BIN [WRAPPER...]: BIN's `serve` (behind WRAPPER, e.g.
# valgrind) on 127.0.0.1 ports it picks, with a dev certificate in
# DIR/certs and its output in DIR/serve.out and DIR/serve.err. Once it
# listens, SERVE_PID, WEBHOOK (https://…/mutate) and METRICS
# (http://…/metrics) are set; if it exits or does not listen within 60 s
# (a wrapper such as valgrind starts slowly), it fails with its stderr.
serve_locally() {
    local dir=$1 bin=$2
    shift 2
    "$bin" certs --out "$dir/certs" >/dev/null 2>&1
    "$@" "$bin" serve --addr 127.0.0.1:0 --metrics-addr 127.0.0.1:0 \
        --tls-cert "$dir/certs/tls.crt" --tls-key "$dir/certs/tls.key" --log-format json \
        >"$dir/serve.out" 2>"$dir/serve.err" &
    SERVE_PID=$!
    for _ in $(seq 600); do
        grep -q listening "$dir/serve.out" 2>/dev/null && break
        kill -0 "$SERVE_PID" 2>/dev/null || break
        sleep 0.1
    done
    # (No match is an empty value, not a failure under `set -e -o pipefail`.)
    WEBHOOK=$(grep -o 'webhook=[^ ]*' "$dir/serve.out" | cut -d= -f2 || true)
    METRICS=$(grep -o 'metrics=[^ ]*' "$dir/serve.out" | cut -d= -f2 || true)
    if [ -z "$WEBHOOK" ]; then
        cat "$dir/serve.err" >&2
        echo "FAIL: $bin serve did not start" >&2
        return 1
    fi
}
