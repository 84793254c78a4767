#!/usr/bin/env bash
# Builds the images the e2e node runs — localhost/e2e/pause:1,
# localhost/e2e/runner:1 (and runner-entrypoint:1, the same with an
# ENTRYPOINT instead of a CMD), localhost/e2e/dind:1 — once per input, into the
# cache directory, and prints that directory on stdout. It holds one
# docker-archive per image (for `ctr -n k8s.io images import FILE`, or
# `docker load -i FILE`) and images.txt, `<file> <image reference>` lines.
# job.tar (localhost/e2e/job:1, also inside the runner image) is there too,
# for local checks; it is not a node image.
#
# No registry, no Docker daemon: the root filesystems are put together from
# this machine's Debian packages (binaries and the shared libraries `ldd`
# names) and our sources under images/, and written as reproducible
# one-layer archives by images/docker-archive.py. The key is a hash of every
# input: the sources, this script, and the versions of the Debian packages
# the files come from, so an upgraded docker.io rebuilds and nothing else
# does. Progress goes to stderr. See images/README.md.
set -euo pipefail
umask 022

here=$(cd "$(dirname "$0")" && pwd)
src=$here/images
cache=${CACHE_DIR:-$HOME/.cache/dind-injector}/e2e

say() { echo "images: $*" >&2; }
die() { say "$*"; exit 1; }

# --- what goes in, from which package ------------------------------------

# Packages the files are copied from (make deps installs them).
packages=(busybox-static docker.io containerd runc tini iptables gcc libc6-dev)
for tool in gcc busybox python3 dpkg-query ldd; do
  command -v "$tool" > /dev/null || die "$tool not found: run 'make deps'"
done
missing=$(dpkg-query -W -f '${db:Status-Abbrev} ${Package}\n' "${packages[@]}" 2>&1 | awk '$1 != "ii" { print $NF }') || true
[ -z "$missing" ] || die "Debian packages missing: $(echo $missing): run 'make deps'"

busybox=/bin/busybox
# docker.io's CLI: /usr/local/bin/docker may be another one on this machine.
runner_bins=(/usr/bin/docker)
dind_bins=(/usr/sbin/dockerd /usr/bin/docker /usr/bin/containerd /usr/bin/containerd-shim-runc-v2
  /usr/sbin/runc /usr/sbin/docker-proxy /usr/sbin/xtables-nft-multi)
xtables=/usr/lib/x86_64-linux-gnu/xtables  # iptables extensions, loaded at run time
docker_init=/usr/bin/tini-static           # what docker.io's /usr/bin/docker-init points to
for f in "$busybox" "${runner_bins[@]}" "${dind_bins[@]}" "$docker_init"; do
  [ -x "$f" ] || die "$f not found: run 'make deps'"
done
[ -d "$xtables" ] || die "$xtables not found: run 'make deps' (iptables)"
mapfile -t xtables_libs < <(find "$xtables" -name '*.so' | sort)

# The shared libraries (and the loader) of the given ELF files.
libs_of() {
  ldd "$@" 2> /dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// && $1 !~ /:$/ { print $1 }' | sort -u
}
mapfile -t runner_libs < <(libs_of "${runner_bins[@]}")
mapfile -t dind_libs < <(libs_of "${dind_bins[@]}" "${xtables_libs[@]}")

# The packages owning the libraries: dpkg knows a file under either /lib or
# /usr/lib (merged /usr), so ask for both.
lib_packages=$(
  for l in "${runner_libs[@]}" "${dind_libs[@]}"; do echo "$l"; echo "/usr${l#/usr}"; done |
    sort -u | { xargs dpkg-query -S 2> /dev/null || :; } | sed 's/: .*//; s/, /\n/g' | sed 's/:.*//' | sort -u
)

# --- the key --------------------------------------------------------------

key=$( {
  (cd "$src" && find . -type f ! -name "*.md" | LC_ALL=C sort | xargs sha256sum)  # not the docs
  sha256sum < "$0"
  dpkg-query -W -f '${Package} ${Version}\n' "${packages[@]}" $lib_packages | sort -u
} | sha256sum | cut -c1-12)
out=$cache/images-$key

if [ -s "$out/images.txt" ]; then
  # In use: the clean-up below keeps recent builds (parallel branches).
  touch "$out"
  say "cached: $out"
  echo "$out"
  exit 0
fi

say "building into $out"
start=$(date +%s)
mkdir -p "$cache"
work=$(mktemp -d "$cache/.images-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
dest=$work/out
mkdir -p "$dest"

# --- helpers --------------------------------------------------------------

# copy ROOT FILE [PATH]: FILE's content (symlinks followed) at PATH (default:
# FILE's own path) inside ROOT, with the source's permission bits.
copy() {
  local root=$1 file=$2 path=${3:-$2}
  mkdir -p "$root$(dirname "$path")"
  cp -L "$file" "$root$path"
  chmod "$(stat -L -c %a "$file")" "$root$path"
}

# base ROOT: the directories every image has, and busybox with all its
# applets as symlinks in /bin (so /bin/sh and the coreutils exist).
base() {
  local root=$1
  mkdir -p "$root"/{bin,etc,root,run,usr/bin,usr/sbin,usr/local/bin,var}
  install -d -m 1777 "$root/tmp"
  ln -s ../run "$root/var/run"
  copy "$root" "$busybox" /bin/busybox
  local applet
  for applet in $(busybox --list); do
    [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$root/etc/passwd"
  printf 'root:x:0:\ndocker:x:999:\nnogroup:x:65534:\n' > "$root/etc/group"
  printf 'hosts: files dns\n' > "$root/etc/nsswitch.conf"
  # Kubernetes and docker mount their own; a bare runtime (ctr run) does not,
  # and the Go resolver of docker's CLI then cannot find `localhost`.
  printf '127.0.0.1 localhost\n::1 localhost\n' > "$root/etc/hosts"
}

archive() { # archive ROOT FILE REF [docker-archive.py flags]
  local root=$1 file=$2 ref=$3
  shift 3
  python3 "$src/docker-archive.py" "$root" "$dest/$file" --tag "$ref" "$@"
  say "$ref: $(du -m "$dest/$file" | cut -f1) MB ($file)"
}

path_env=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# --- pause ----------------------------------------------------------------

root=$work/pause
mkdir -p "$root"
# No timestamps or paths of ours end up in the binary: same sources and
# toolchain, same bytes.
gcc -static -Os -s -Wall -Wextra -o "$root/pause" "$src/pause/pause.c"
archive "$root" pause.tar localhost/e2e/pause:1 --entrypoint '["/pause"]'

# --- job (inside the runner) ----------------------------------------------

root=$work/job
base "$root"
archive "$root" job.tar localhost/e2e/job:1 --cmd '["/bin/sh"]' --env "$path_env"

# --- runner ---------------------------------------------------------------

root=$work/runner
base "$root"
for f in "${runner_bins[@]}" "${runner_libs[@]}"; do copy "$root" "$f"; done
install -D -m 0755 "$src/runner/run.sh" "$root/home/runner/run.sh"
install -D -m 0755 "$src/runner/bin/Runner.Worker" "$root/home/runner/bin/Runner.Worker"
install -D -m 0644 "$src/runner/bin/lib.sh" "$root/home/runner/bin/lib.sh"
install -m 0644 "$dest/job.tar" "$root/home/runner/job-image.tar"
mkdir -p "$root/home/runner/_work"
archive "$root" runner.tar localhost/e2e/runner:1 --cmd '["/home/runner/run.sh"]' \
  --env "$path_env" --env HOME=/home/runner --workdir /home/runner
# The same files with only an ENTRYPOINT, like a custom runner image built
# FROM a runner image (issue 16): a pod that sets no command runs it
# unsupervised. One layer, the same bytes: containerd stores it once.
archive "$root" runner-entrypoint.tar localhost/e2e/runner-entrypoint:1 \
  --entrypoint '["/home/runner/run.sh"]' \
  --env "$path_env" --env HOME=/home/runner --workdir /home/runner

# --- dind -----------------------------------------------------------------

root=$work/dind
base "$root"
for f in "${dind_bins[@]}" "${dind_libs[@]}" "${xtables_libs[@]}"; do copy "$root" "$f"; done
copy "$root" "$docker_init" /usr/bin/docker-init
ln -s ../sbin/runc "$root/usr/bin/runc"
for t in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
  ln -s xtables-nft-multi "$root/usr/sbin/$t"
done
install -m 0755 "$src/dind/dockerd-entrypoint.sh" "$root/usr/local/bin/dockerd-entrypoint.sh"
mkdir -p "$root/var/lib/docker" "$root/certs"
archive "$root" dind.tar localhost/e2e/dind:1 --entrypoint '["dockerd-entrypoint.sh"]' --cmd '[]' \
  --env "$path_env" --env DOCKER_TLS_CERTDIR=/certs

printf '%s\n' "pause.tar localhost/e2e/pause:1" "runner.tar localhost/e2e/runner:1" \
  "runner-entrypoint.tar localhost/e2e/runner-entrypoint:1" \
  "dind.tar localhost/e2e/dind:1" > "$dest/images.txt"
rm -rf "$out"
mv "$dest" "$out"
# Older builds are a few hundred MB each and nothing uses them any more;
# one used in the last hours may be another branch's, in a run right now.
find "$cache" -maxdepth 1 -name 'images-*' ! -name "${out##*/}" -mmin +240 -exec rm -rf {} +
say "built in $(( $(date +%s) - start )) s: $out"
echo "$out"
