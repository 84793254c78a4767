#!/usr/bin/env bash
# Builds the e2e node's container runtime — containerd, its runc shim and ctr —
# from the containerd Go module at the pinned version, once, into the cache
# directory, and prints the directory holding the three executables.
#
# CGO_ENABLED=0 leaves out btrfs (it needs cgo and kernel headers) and makes
# static executables. The shim stays its own file: it re-executes
# os.Executable() to daemonise, so it cannot share a multi-call binary.
# runc and the CNI plugins come from Debian (make deps): runc needs cgo and
# libseccomp to build, and Debian's work with this containerd.
set -euo pipefail

version=${CONTAINERD_VERSION:-v2.3.7}
cache=${CACHE_DIR:-$HOME/.cache/dind-injector}/e2e
module=github.com/containerd/containerd/v2
ldflags="-s -w -X $module/version.Version=${version#v} -X $module/version.Revision=release"
key=$( { echo "$version $ldflags"; GOTOOLCHAIN=local go version; } | sha256sum | cut -c1-12)
out=$cache/containerd-$version-$key

if [ -x "$out/containerd" ] && [ -x "$out/containerd-shim-runc-v2" ] && [ -x "$out/ctr" ]; then
  echo "containerd: $version (cached: $out)" >&2
  echo "$out"
  exit 0
fi

echo "containerd: building containerd, containerd-shim-runc-v2 and ctr $version (first run only, a few minutes)" >&2
mkdir -p "$cache"
start=$(date +%s)
tmp=$out.tmp.$$
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp"
# `go install mod@version` builds in module mode with containerd's own go.mod
# and go.sum (checked against the checksum database), outside any work tree.
GOTOOLCHAIN=local CGO_ENABLED=0 GOBIN="$tmp" GOFLAGS=-buildvcs=false \
  go install -trimpath -ldflags "$ldflags" \
  "$module/cmd/containerd@$version" "$module/cmd/containerd-shim-runc-v2@$version" "$module/cmd/ctr@$version"
rm -rf "$out"
mv "$tmp" "$out"
find "$cache" -maxdepth 1 -name 'containerd-*' ! -name "${out##*/}" -exec rm -rf {} +
echo "containerd: built in $(( $(date +%s) - start )) s: $out" >&2
echo "$out"
