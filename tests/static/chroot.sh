#!/usr/bin/env bash
# Proves the static binary needs nothing from the image it runs in: copy it
# alone into an empty directory (no libc, no /etc, no loader) and run it
# there with chroot. `init` runs too (it needs /proc for its own path, as in
# any container), which exercises rustls, ring and rcgen in the static build.
# Usage: tests/static/chroot.sh PATH/TO/dind-injector   (root)
set -euo pipefail
bin=${1:?usage: $0 BINARY}
root=$(mktemp -d /tmp/dind-static-chroot.XXXXXX)
trap 'umount "$root/proc" 2>/dev/null || true; rm -rf "$root"' EXIT

# The chroot itself is the proof (a dynamic binary finds no loader there);
# `file` only makes the log readable.
command -v file >/dev/null && file -b "$bin"
cp "$bin" "$root/dind-injector"
echo "chroot contents: $(cd "$root" && find . -mindepth 1 | tr '\n' ' ')"

version=$(chroot "$root" /dind-injector --version)
echo "chroot $root /dind-injector --version -> $version"

mkdir "$root/proc"
unshare --mount --fork sh -c "
  mount -t proc proc '$root/proc' &&
  chroot '$root' /dind-injector init --bin-dir=/bin-volume --certs-dir=/certs
"
for f in bin-volume/dind-injector certs/server/ca.pem certs/server/cert.pem certs/server/key.pem \
         certs/client/ca.pem certs/client/cert.pem certs/client/key.pem; do
  [ -s "$root/$f" ] || { echo "FAIL: init in the chroot did not write /$f"; exit 1; }
done
openssl verify -CAfile "$root/certs/server/ca.pem" "$root/certs/server/cert.pem" "$root/certs/client/cert.pem"
echo "OK: static binary runs with no libc (version and init in an empty chroot)"
