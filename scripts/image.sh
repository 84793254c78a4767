#!/usr/bin/env bash
# Builds the project's image from its Dockerfile around a static binary, with
# buildah: no daemon, and nothing is pulled (the Dockerfile is FROM scratch).
# Writes a docker-archive (for `docker load`, `ctr import`, a kubelet's node)
# and, when PUSH is set (e.g. docker://127.0.0.1:5000/dind-injector:v0.1.0),
# pushes the same image to that registry (plain HTTP when TLS_VERIFY=false).
# `make image` and the e2e suite's build-injector-image.sh both use it.
#
# Usage: image.sh STATIC_BINARY OUT.tar REF [VERSION]
set -euo pipefail
bin=${1:?usage: image.sh STATIC_BINARY OUT.tar REF [VERSION]}
out=${2:?usage: image.sh STATIC_BINARY OUT.tar REF [VERSION]}
ref=${3:?usage: image.sh STATIC_BINARY OUT.tar REF [VERSION]}
version=${4:-$(sed -n 's/^version = "\(.*\)"$/\1/p' "$(dirname "$0")/../Cargo.toml" | head -1)}
root=$(cd "$(dirname "$0")/.." && pwd)

command -v buildah >/dev/null || { echo "image: buildah is not installed (make image-deps)" >&2; exit 1; }
[ -x "$bin" ] || { echo "image: $bin is not an executable (make static builds it)" >&2; exit 1; }
# A scratch image has no loader: the binary must be static.
if LC_ALL=C readelf -l "$bin" | grep -q 'Requesting program interpreter'; then
  echo "image: $bin is dynamically linked (make static builds the static one)" >&2
  exit 1
fi

# A private store per build (vfs: works in any container, nothing to mount),
# removed afterwards: the archive is the product.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/context"
cp "$bin" "$tmp/context/dind-injector"
store=(--root "$tmp/store" --runroot "$tmp/run" --storage-driver vfs)
buildah "${store[@]}" bud --quiet --layers=false --pull=false \
  --build-arg "VERSION=$version" -f "$root/Dockerfile" -t "$ref" "$tmp/context" >/dev/null
mkdir -p "$(dirname "$out")"
rm -f "$out"
buildah "${store[@]}" push --quiet "$ref" "docker-archive:$out:$ref"
if [ -n "${PUSH:-}" ]; then
  buildah "${store[@]}" push --quiet --tls-verify="${TLS_VERIFY:-true}" "$ref" "$PUSH"
fi
echo "image: $ref written to $out${PUSH:+, pushed to $PUSH}" >&2
