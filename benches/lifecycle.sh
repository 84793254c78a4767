#!/usr/bin/env bash
# Lifecycle figures for docs/performance.md ("Lifecycle"). Run as root:
#   make bench-lifecycle            (builds the static release binary first)
#   benches/lifecycle.sh PATH/TO/dind-injector
# 1. `init` wall time vs the stock entrypoint's three `openssl genrsa 4096`;
# 2. sidecar start -> docker.ready with a real dockerd and init's certs;
# 3. VmRSS of supervise and sidecar while they wait, vs bash loops doing
#    the same waiting.
set -euo pipefail
bin=${1:?usage: $0 BINARY}
bin=$(readlink -f "$bin")
w=$(mktemp -d /tmp/dind-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.5; rm -rf "$w"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss() { awk '/^VmRSS/ {print $2" kB"}' "/proc/$1/status"; }

echo "## machine: $(nproc) cores, $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "## binary: $bin ($(du -h "$bin" | cut -f1), $(file -b "$bin" | cut -d, -f1-2 | xargs))"

echo; echo "## 1. init vs openssl genrsa 4096 x3"
hyperfine --style basic --warmup 2 --runs 30 \
  --prepare "rm -rf $w/init" \
  -n "dind-injector init (copy binary + ECDSA P-256 CA, server, client)" \
  "$bin init --bin-dir $w/init/bin --certs-dir $w/init/certs"
hyperfine --style basic --runs 5 \
  -n "openssl genrsa 4096 x3 (the stock dockerd-entrypoint.sh keys only)" \
  "openssl genrsa -out $w/ca.key 4096 2>/dev/null && openssl genrsa -out $w/server.key 4096 2>/dev/null && openssl genrsa -out $w/client.key 4096 2>/dev/null"

echo; echo "## 2. sidecar start -> docker.ready (real dockerd 20.10, vfs, no iptables)"
"$bin" init --bin-dir "$w/b" --certs-dir "$w/certs" 2>/dev/null
for i in 1 2 3 4 5; do
  d="$w/d$i"; mkdir -p "$d/run" "$d/data" "$d/exec"; port=$(free_port)
  t0=$(date +%s.%N)
  "$bin" sidecar --run-dir "$d/run" --certs-dir "$w/certs" --docker-host "tcp://127.0.0.1:$port" \
    --mtu off --runner-start-timeout 600 -- \
    dockerd --data-root "$d/data" --exec-root "$d/exec" --pidfile "$d/docker.pid" \
      -H "unix://$d/docker.sock" -H "tcp://127.0.0.1:$port" --tlsverify \
      --tlscacert "$w/certs/server/ca.pem" --tlscert "$w/certs/server/cert.pem" --tlskey "$w/certs/server/key.pem" \
      --iptables=false --ip6tables=false --bridge=none --storage-driver=vfs > "$d/log" 2>&1 &
  sp=$!
  until [ -e "$d/run/docker.ready" ]; do sleep 0.01; done
  t1=$(date +%s.%N)
  awk -v i="$i" -v a="$t0" -v b="$t1" 'BEGIN { printf "run %d: %.2f s\n", i, b - a }'
  echo 0 > "$d/run/runner.exit"; wait "$sp"
done

echo; echo "## 3. resident memory while waiting"
d="$w/rss"; mkdir -p "$d/run" "$d/www"; port=$(free_port)
printf 'HTTP/1.0 200 OK\r\n\r\nOK' > "$d/www/_ping"
( cd "$d/www" && exec openssl s_server -quiet -HTTP -accept "127.0.0.1:$port" \
    -cert "$w/certs/server/cert.pem" -key "$w/certs/server/key.pem" >/dev/null 2>&1 ) &
pids+=($!)
"$bin" supervise --run-dir "$d/run" --docker-wait=0 -- sleep 1000 2>/dev/null & sup=$!; pids+=($sup)
"$bin" sidecar --run-dir "$d/run" --certs-dir "$w/certs" --docker-host "tcp://127.0.0.1:$port" --mtu off -- sleep 1000 2>/dev/null & side=$!; pids+=($side)
# bash doing the same waiting: a TERM-forwarding wrapper, and a run-dir poll loop.
bash -c 'trap "kill \$c" TERM; sleep 1000 & c=$!; wait $c' & bsup=$!; pids+=($bsup)
bash -c 'while [ ! -e "$1/runner.exit" ] && kill -0 "$2" 2>/dev/null; do sleep 0.2; done' _ "$d/run" "$sup" & bside=$!; pids+=($bside)
until [ -e "$d/run/docker.ready" ]; do sleep 0.05; done; sleep 1
echo "supervise (waiting for its child)         VmRSS $(rss $sup)"
echo "sidecar (daemon ready, watching runner)   VmRSS $(rss $side)"
echo "bash wrapper forwarding TERM (wait)        VmRSS $(rss $bsup)"
echo "bash loop polling run dir every 200 ms     VmRSS $(rss $bside)"
