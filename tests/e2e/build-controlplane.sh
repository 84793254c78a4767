#!/usr/bin/env bash
# Builds the e2e control plane and the node's kubelet (kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet and etcd in one
# executable, see controlplane/main.go) once per source, into the
# cache directory, and prints the executable's path on stdout.
#
# The cache key is a hash of every input that changes the binary (sources,
# flags, Go release), so editing go.mod (a new Kubernetes release) rebuilds,
# and nothing else does; Go's build cache makes a rebuild after a small change
# cheap. Progress goes to stderr: the cold build takes a quarter of an hour on
# two cores and must not look like a hang.
set -euo pipefail

src=$(cd "$(dirname "$0")/controlplane" && pwd)
cache=${CACHE_DIR:-$HOME/.cache/dind-injector}/e2e
mod_version() { awk -v m="$1" '$1 == m { print $2; exit }' "$src/go.mod"; }
k8s=$(mod_version k8s.io/kubernetes)
etcd=$(mod_version go.etcd.io/etcd/server/v3)
[ -n "$k8s" ] && [ -n "$etcd" ] || { echo "build-controlplane: cannot read the pinned versions from $src/go.mod" >&2; exit 1; }
minor=${k8s#v1.}; minor=${minor%%.*}
pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=$k8s -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
# Everything that changes the executable: the sources, the flags, the Go release.
key=$( { cat "$src/go.mod" "$src/go.sum" "$src/main.go"; echo "$ldflags"; GOTOOLCHAIN=local go version; } | sha256sum | cut -c1-12)
out=$cache/controlplane-$k8s-$key

if [ -x "$out" ]; then
  echo "control plane: kube-apiserver, kube-controller-manager, kube-scheduler, kubelet $k8s, etcd $etcd (cached: $out)" >&2
  echo "$out"
  exit 0
fi

echo "control plane: building kube-apiserver, kube-controller-manager, kube-scheduler, kubelet $k8s, etcd $etcd" >&2
echo "control plane: first build only, 15 to 25 minutes and 3 GB of memory on two cores; cached afterwards in $cache" >&2
mkdir -p "$cache"
start=$(date +%s)
# `go build` is silent for many minutes: say it is still at work.
# (Its stdout is not ours: the caller reads ours until every writer closes it.)
( while sleep 60; do echo "control plane: still compiling, $(( $(date +%s) - start )) s so far" >&2; done ) >/dev/null &
ticker=$!
trap 'kill $ticker 2>/dev/null; rm -f "$out.tmp.$$"' EXIT
(
  cd "$src"
  # -mod=readonly: go.sum is complete and committed, a build never edits it.
  GOTOOLCHAIN=local GOFLAGS=-mod=readonly go mod download
  echo "control plane: modules downloaded after $(( $(date +%s) - start )) s, compiling" >&2
  GOTOOLCHAIN=local GOFLAGS=-mod=readonly go build -trimpath -ldflags "$ldflags" -o "$out.tmp.$$" .
)
mv -f "$out.tmp.$$" "$out"
# Older builds are 140 MB each and nothing uses them any more.
find "$cache" -maxdepth 1 -name 'controlplane-*' ! -name "${out##*/}" -delete
echo "control plane: built in $(( $(date +%s) - start )) s: $out" >&2
echo "$out"
