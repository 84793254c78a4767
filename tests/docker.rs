//! A real Docker daemon under `sidecar`, a runner under `supervise` that
//! uses it over TCP with TLS and the certificates written by `init` — in a
//! simulated pod (see `common/procs.rs`).
//!
//! Debian's `docker.io` (dockerd 20.10) runs on loopback with its own data
//! root, exec root, pidfile and unix socket, and without iptables, bridge
//! or overlayfs (`--iptables=false --ip6tables=false --bridge=none
//! --storage-driver=vfs`) so it needs nothing from the host but root.
//! dockerd 20.10 does not know `--default-network-opt` (the `docker:28`
//! dind image does): the sidecar must ask it before adding MTU flags. If
//! dockerd cannot run here the tests FAIL with a loud message: `make deps`
//! installs it.

mod common;

use std::time::Duration;

use common::procs::Pod;

const RUNNER: &str = r#"#!/bin/sh
set -eu
export DOCKER_HOST="tcp://127.0.0.1:$PORT" DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH="$CERTS/client"
echo "$(date +%s.%N) runner-start" >> "$T/events"
docker version > "$T/docker-version.out" 2>&1
# A tiny image: a busybox-static root filesystem, imported over TCP+TLS.
tar -C "$T/rootfs" -c . | docker import - dind-injector-test/tiny:1 > /dev/null
echo "written by the runner" > "$WORK/probe"
docker run --rm --network none -v "$WORK:$WORK" dind-injector-test/tiny:1 \
  sh -c "cat $WORK/probe; echo written by the container > $WORK/back" > "$T/container.out"
echo "$(date +%s.%N) runner-done" >> "$T/events"
"#;

fn busybox() -> Option<std::path::PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
}

/// A pod for the real daemon: checks that dockerd and busybox are here
/// and builds the busybox root filesystem the runner imports.
fn docker_pod(name: &str) -> Pod {
    let dockerd_found = std::process::Command::new("dockerd")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        dockerd_found,
        "\n\n!!!!!!!! dockerd is not installed: the real-daemon test cannot run.\n\
         !!!!!!!! Run `make deps` (apt-get install docker.io busybox-static).\n"
    );
    let busybox = busybox()
        .expect("\n\n!!!!!!!! busybox is not installed: run `make deps` (busybox-static).\n");

    let p = Pod::new(name);
    p.script("runner.sh", RUNNER);
    let rootfs = p.path("rootfs/bin");
    std::fs::create_dir_all(&rootfs).expect("mkdir rootfs");
    std::fs::copy(&busybox, rootfs.join("busybox")).expect("copy busybox");
    for applet in ["sh", "cat", "echo", "ls"] {
        std::os::unix::fs::symlink("busybox", rootfs.join(applet)).expect("symlink");
    }
    for d in ["work", "data", "exec"] {
        std::fs::create_dir_all(p.path(d)).expect("mkdir");
    }
    p
}

/// The kubelet script: the real dockerd under `sidecar SIDECAR_FLAGS`, on
/// loopback, with `DOCKERD_NET` for its networking flags; a supervised runner.
fn kubelet(sidecar_flags: &str, dockerd_net: &str, prologue: &str) -> String {
    format!(
        r#"
{prologue}
export WORK="$T/work"
"$BIN" sidecar --run-dir "$RUN" --certs-dir "$CERTS" --docker-host "tcp://127.0.0.1:$PORT" \
  --stop-timeout 20 --runner-start-timeout 120 {sidecar_flags} -- \
  dockerd --data-root "$T/data" --exec-root "$T/exec" --pidfile "$T/docker.pid" \
    -H "unix://$T/docker.sock" -H "tcp://127.0.0.1:$PORT" \
    --tlsverify --tlscacert "$CERTS/server/ca.pem" \
    --tlscert "$CERTS/server/cert.pem" --tlskey "$CERTS/server/key.pem" \
    --iptables=false --ip6tables=false {dockerd_net} --storage-driver=vfs \
  > "$T/sidecar.log" 2>&1 &
SIDECAR=$!
"$BIN" supervise --run-dir "$RUN" --docker-wait=60 --drain-timeout=0 -- "$T/runner.sh" \
  > "$T/supervise.log" 2>&1 &
SUP=$!
finish
"#
    )
}

fn check_dockerd_started(p: &Pod, outcome: &common::procs::Outcome) -> String {
    let log = p.read("sidecar.log").unwrap_or_default();
    if !log.contains("dockerd answers") {
        p.check(
            false,
            &format!(
                "\n\n!!!!!!!! dockerd did NOT start on this machine (the test fails, it does not skip).\n\
                 !!!!!!!! It needs root, /sys/fs/cgroup and a kernel that allows mounts in a new\n\
                 !!!!!!!! mount namespace. Its log is sidecar.log below.\n\
                 elapsed {:?}, status {:?}",
                outcome.elapsed, outcome.status
            ),
        );
    }
    log
}

#[test]
fn real_dockerd_under_sidecar_serves_a_supervised_runner_over_tls() {
    let p = docker_pod("dockerd");
    // MTU 1500, as on most pod networks: before the sidecar asked the
    // daemon, it appended --default-network-opt and dockerd 20.10 refused
    // to start ("unknown flag").
    let outcome = p.run(
        &kubelet("--mtu 1500", "--bridge=none", ""),
        Duration::from_secs(180),
    );
    let log = check_dockerd_started(&p, &outcome);
    p.check(
        p.code("supervise") == Some(0),
        "the runner's docker commands all worked (supervise exit 0)",
    );
    let version = p.read("docker-version.out").unwrap_or_default();
    p.check(
        version.contains("Server:"),
        "docker version reached the server over TCP+TLS",
    );
    let out = p.read("container.out").unwrap_or_default();
    p.check(
        out.contains("written by the runner"),
        "the container saw the work dir bind mount",
    );
    let back = p.read("work/back").unwrap_or_default();
    p.check(
        back.contains("written by the container"),
        "the runner sees what the container wrote",
    );
    p.check(p.code("sidecar") == Some(0), "sidecar exit 0");
    p.check(
        log.contains("the runner exited (runner.exit: 0)"),
        "sidecar stopped dockerd because the runner ended",
    );
    p.check(
        log.contains("daemon stopped (exit 0)"),
        "dockerd stopped cleanly on SIGTERM",
    );
    p.check(
        !p.path("docker.pid").exists(),
        "dockerd removed its pidfile (clean shutdown)",
    );
    p.check(
        log.contains("pod MTU 1500 is Docker's default: no MTU flag needed"),
        "nothing added for Docker's own MTU",
    );
    p.assert_no_leftovers();
}

/// What the runner runs in the MTU test: a container on the default
/// bridge reports its interface's MTU, and the bridge network its option.
const MTU_RUNNER: &str = r#"#!/bin/sh
set -eu
export DOCKER_HOST="tcp://127.0.0.1:$PORT" DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH="$CERTS/client"
tar -C "$T/rootfs" -c . | docker import - dind-injector-test/tiny:1 > /dev/null
docker run --rm dind-injector-test/tiny:1 cat /sys/class/net/eth0/mtu > "$T/container-mtu"
docker network inspect bridge --format '{{index .Options "com.docker.network.driver.mtu"}}' > "$T/bridge-mtu"
"#;

#[test]
fn real_dockerd_20_10_gets_the_mtu_flag_it_knows_and_its_bridge_uses_it() {
    let p = docker_pod("dockerd-mtu");
    p.script("runner.sh", MTU_RUNNER);
    // A network namespace of its own (PID 1 re-executes itself in it), so
    // that dockerd's docker0 bridge and veths never touch the host's network.
    let prologue = r#"
if [ -z "${IN_NETNS:-}" ]; then IN_NETNS=1 exec unshare --net sh "$0"; fi
ip link set lo up
"#;
    let outcome = p.run(
        &kubelet("--mtu 1450", "", prologue),
        Duration::from_secs(180),
    );
    let log = check_dockerd_started(&p, &outcome);
    p.check(
        log.contains("this dockerd has no --default-network-opt, not added"),
        "the sidecar asked dockerd 20.10 and left out the flag it does not know",
    );
    p.check(
        log.contains(r#"pod MTU 1450: ["--mtu=1450"]"#),
        "--mtu=1450 (which 20.10 knows) was added",
    );
    p.check(
        p.code("supervise") == Some(0),
        "the runner's docker commands all worked (supervise exit 0)",
    );
    p.check(
        p.read("container-mtu").as_deref().map(str::trim) == Some("1450"),
        "a container on the default bridge has MTU 1450",
    );
    p.check(
        p.read("bridge-mtu").as_deref().map(str::trim) == Some("1450"),
        "the bridge network's MTU option is 1450",
    );
    p.check(p.code("sidecar") == Some(0), "sidecar exit 0");
    p.assert_no_leftovers();
}
