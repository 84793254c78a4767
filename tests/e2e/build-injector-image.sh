#!/usr/bin/env bash
# Writes the injector's own image for the e2e node — the static binary at
# the path the injected init container runs (contract::path::IMAGE_BINARY)
# — as a docker-archive, once per binary, and prints the directory holding
# it and its images.txt (see build-images.sh).
#
# Usage: build-injector-image.sh STATIC_BINARY
set -euo pipefail

bin=${1:?usage: build-injector-image.sh STATIC_BINARY}
[ -x "$bin" ] || { echo "build-injector-image: $bin is not an executable (make static builds it)" >&2; exit 1; }
here=$(cd "$(dirname "$0")" && pwd)
cache=${CACHE_DIR:-$HOME/.cache/dind-injector}/e2e
key=$( { sha256sum < "$bin"; cat "$0" "$here/images/docker-archive.py"; } | sha256sum | cut -c1-12)
out=$cache/injector-$key
ref=localhost/e2e/dind-injector:1

if [ -f "$out/images.txt" ]; then
  touch "$out"  # in use: kept by the clean-up below
  echo "injector image: $ref (cached: $out)" >&2
  echo "$out"
  exit 0
fi
tmp=$out.tmp.$$
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/rootfs/usr/local/bin"
install -m 0755 "$bin" "$tmp/rootfs/usr/local/bin/dind-injector"
python3 "$here/images/docker-archive.py" "$tmp/rootfs" "$tmp/injector.tar" \
  --tag "$ref" --entrypoint '["/usr/local/bin/dind-injector"]'
rm -rf "$tmp/rootfs"
echo "injector.tar $ref" > "$tmp/images.txt"
rm -rf "$out"
mv "$tmp" "$out"
# Not one built in the last hours: another branch's run (with its own
# binary) may be between this step and its import right now.
find "$cache" -maxdepth 1 -name 'injector-*' ! -name "${out##*/}" -mmin +240 -exec rm -rf {} +
echo "injector image: $ref written to $out" >&2
echo "$out"
