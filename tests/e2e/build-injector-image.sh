#!/usr/bin/env bash
# Writes the injector's own image for the e2e node — the project's
# Dockerfile built around the static binary by scripts/image.sh, the same
# piece as `make image` — as a docker-archive, once per binary and
# Dockerfile, and prints the directory holding it and its images.txt (see
# build-images.sh).
#
# Usage: build-injector-image.sh STATIC_BINARY
set -euo pipefail

bin=${1:?usage: build-injector-image.sh STATIC_BINARY}
[ -x "$bin" ] || { echo "build-injector-image: $bin is not an executable (make static builds it)" >&2; exit 1; }
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cache=${CACHE_DIR:-$HOME/.cache/dind-injector}/e2e
key=$( { sha256sum < "$bin"; cat "$0" "$root/scripts/image.sh" "$root/Dockerfile"; } | sha256sum | cut -c1-12)
# Not `injector-*`: older copies of this script delete every other such
# directory, also one a concurrent run is about to import.
out=$cache/image-injector-$key
ref=localhost/e2e/dind-injector:1

if [ -f "$out/images.txt" ]; then
  touch "$out"  # in use: kept by the clean-up below
  echo "injector image: $ref (cached: $out)" >&2
  echo "$out"
  exit 0
fi
tmp=$out.tmp.$$
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp"
"$root/scripts/image.sh" "$bin" "$tmp/injector.tar" "$ref"
echo "injector.tar $ref" > "$tmp/images.txt"
rm -rf "$out"
mv "$tmp" "$out"
# Older images of other binaries go, but not while a concurrent run (of
# another worktree) may still import one.
find "$cache" -maxdepth 1 -name 'image-injector-*' ! -name "${out##*/}" -mmin +240 -exec rm -rf {} +
echo "injector image: $ref written to $out" >&2
echo "$out"
