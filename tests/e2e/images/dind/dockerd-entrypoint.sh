#!/bin/sh
# dockerd-entrypoint.sh of localhost/e2e/dind:1: the interface of the
# docker:dind image's entrypoint (docker-library/docker), our own code, for
# Debian's dockerd 20.10.
#
# - No arguments, or the first starts with `-`: start dockerd, with the
#   arguments as extra dockerd flags. Anything else is run as given.
# - DOCKER_TLS_CERTDIR set (the image sets /certs, as docker:dind does):
#   dockerd listens on the unix socket and on tcp://0.0.0.0:2376 with
#   --tlsverify and $DOCKER_TLS_CERTDIR/server/{ca,cert,key}.pem (the
#   client's are under client/, for the runner). Certificates are used as
#   they are, never generated: `dind-injector init` writes them (the layout
#   docker:dind treats as user-managed), and a missing file is an error that
#   names it, so a broken init cannot hide behind certificates made up here.
#   No openssl in the image for the same reason.
# - DOCKER_TLS_CERTDIR empty: plain tcp://0.0.0.0:2375 besides the socket.
# - The socket is unix:///var/run/docker.sock, or DOCKER_HOST if that is a
#   unix:// address.
set -eu

if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
  socket=unix:///var/run/docker.sock
  case "${DOCKER_HOST:-}" in unix://*) socket=$DOCKER_HOST ;; esac

  # Arguments reach dockerd as given, like docker:dind's: a flag this
  # dockerd (20.10) lacks makes it refuse to start. `dind-injector sidecar`
  # must only add flags the daemon supports; the node scenarios show it.

  if [ -n "${DOCKER_TLS_CERTDIR:-}" ]; then
    dir=$DOCKER_TLS_CERTDIR
    for f in server/ca.pem server/cert.pem server/key.pem; do
      if [ ! -s "$dir/$f" ]; then
        echo "dockerd-entrypoint.sh: DOCKER_TLS_CERTDIR=$dir but $dir/$f is missing or empty." >&2
        echo "dockerd-entrypoint.sh: this image does not generate certificates (run 'dind-injector init --certs-dir $dir'), or set DOCKER_TLS_CERTDIR= for plain TCP on 2375." >&2
        exit 1
      fi
    done
    set -- dockerd --host="$socket" --host=tcp://0.0.0.0:2376 --tlsverify \
      --tlscacert "$dir/server/ca.pem" --tlscert "$dir/server/cert.pem" \
      --tlskey "$dir/server/key.pem" "$@"
  else
    set -- dockerd --host="$socket" --host=tcp://0.0.0.0:2375 "$@"
  fi
fi

if [ "$1" = dockerd ]; then
  # A pidfile left by a daemon that was killed makes the next one refuse
  # to start (the container restarts with the same /var/run in a pod).
  find /run /var/run -iname 'docker*.pid' -delete 2> /dev/null || :
  # The part of docker:dind's `dind` wrapper that matters on a cgroup v1
  # node: a shared / (the runtime makes it private), so that inner
  # containers can ask for shared or slave bind-mount propagation; and
  # securityfs, where dockerd looks for AppArmor.
  mount --make-rshared / 2> /dev/null || :
  if [ -d /sys/kernel/security ] && ! awk '$5 == "/sys/kernel/security" { found = 1 } END { exit !found }' /proc/self/mountinfo; then
    mount -t securityfs none /sys/kernel/security 2> /dev/null || :
  fi
fi

exec "$@"
