#!/usr/bin/env bash
# How much of the release executable a serving webhook, and a waiting
# `supervise`, keep resident: the functions each runs are linked side by
# side (link/hot-functions.txt, build.rs), so a process should have mapped
# a few MiB of .text, not most of it. Fails above the budget, which is what
# a stale link/hot-functions.txt looks like (a dependency, version or
# toolchain change renamed the functions): run `make hot-functions`.
# Usage: tests/static/resident.sh PATH/TO/dind-injector   (root: pagemap)
set -euo pipefail
bin=$(readlink -f "${1:?usage: $0 BINARY}")
# .text resident after the reviews, MiB. Measured: about 3 with the order
# applied, 7-9 without (docs/performance.md).
BUDGET_MIB=${BUDGET_MIB:-5}
# The same for `supervise` waiting: about 1.1 ordered, 2.7 without.
SUPERVISE_BUDGET_MIB=${SUPERVISE_BUDGET_MIB:-2}
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
SERVE_PID=
trap '[ -n "$SERVE_PID" ] && kill "$SERVE_PID" 2>/dev/null; rm -rf "$work"' EXIT

check() { # label pid budget_mib: the executable's code resident in pid, against the budget
    python3 - "$1" "$2" "$bin" "$3" <<'PY'
import struct, sys
label, pid, binary, budget = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
resident = size = 0
for line in open(f"/proc/{pid}/maps"):
    f = line.split()
    if len(f) >= 6 and f[5] == binary and f[1] == "r-xp":
        start, end = (int(x, 16) for x in f[0].split("-"))
        with open(f"/proc/{pid}/pagemap", "rb") as pm:
            pm.seek(start // 4096 * 8)
            data = pm.read((end - start) // 4096 * 8)
        size += end - start
        resident += sum(struct.unpack_from("<Q", data, i * 8)[0] >> 63 for i in range((end - start) // 4096)) * 4096
if size == 0:
    sys.exit(f"FAIL: no executable mapping of {binary} in /proc/{pid}/maps")
mib = lambda b: b / 1048576
print(f"{label}: {mib(resident):.1f} MiB of the executable's {mib(size):.1f} MiB of code resident (budget {budget:g})")
if mib(resident) > budget:
    sys.exit("FAIL: above the budget: link/hot-functions.txt no longer matches the build (run `make hot-functions`),"
             " or the build did not apply it (build.rs then printed a cargo warning: another linker)")
PY
}

source scripts/serve-locally.sh
serve_locally "$work" "$bin"

# 200 reviews over HTTP/2, 8 at a time, then a few over HTTP/1.1.
for _ in $(seq 200); do
    printf 'url = "%s"\noutput = "/dev/null"\n' "$WEBHOOK"
done >"$work/curl.conf"
curl -sS --no-progress-meter --fail --http2 -Z --parallel-max 8 --cacert "$work/certs/ca.crt" \
    -H 'Content-Type: application/json' --data-binary @examples/admission-review.json -K "$work/curl.conf"
for _ in 1 2 3; do
    curl -sS --fail --http1.1 --cacert "$work/certs/ca.crt" -H 'Content-Type: application/json' \
        --data-binary @examples/admission-review.json "$WEBHOOK" -o /dev/null
done

check "serving (200 reviews)" "$SERVE_PID" "$BUDGET_MIB"

# The runner's supervisor in every CI pod, waiting for its runner.
mkdir "$work/run"
"$bin" supervise --run-dir "$work/run" --docker-wait=0 -- sleep 60 2>/dev/null &
supervise=$!
for _ in $(seq 100); do [ -e "$work/run/runner.pid" ] && break; sleep 0.1; done
sleep 0.5
check "supervise (waiting)" "$supervise" "$SUPERVISE_BUDGET_MIB"
# SIGTERM becomes SIGINT for the runner, and supervise exits as it does.
kill "$supervise"
wait "$supervise" || true
