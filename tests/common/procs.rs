//! A pod without Kubernetes, for the lifecycle tests: a new PID namespace
//! (`unshare --pid --fork --mount-proc`, tests run as root) stands in for
//! the pod with `shareProcessNamespace`, temp directories for the emptyDir
//! volumes, a shell script for the kubelet. `supervise` and `sidecar` run
//! as siblings in it, around a fake runner and a fake dockerd (a TLS
//! server that answers `GET /_ping` and records its arguments and signals).
//!
//! Every process writes what happened to `events` (`<seconds> <what>`), so
//! tests can assert order and timing. When the kubelet script ends it lists
//! the processes still alive in the namespace (`leftovers`): the pod's PID
//! 1 exiting kills them, so that list is the only proof nothing leaked.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{bin, temp_dir};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

pub fn write_script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, body).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// Shell helpers every kubelet script starts with.
const PRELUDE: &str = r#"
set -u
now() { date +%s.%N; }
event() { echo "$(now) $*" >> "$T/events"; }
start_sidecar() {
  "$BIN" sidecar --run-dir "$RUN" --certs-dir "$CERTS" \
    --docker-host "tcp://127.0.0.1:$PORT" --stop-timeout 5 --mtu 1400 "$@" \
    -- "$T/fake/dockerd" --fake-flag >>"$T/sidecar.log" 2>&1 &
  SIDECAR=$!
}
start_supervise() {
  "$BIN" supervise --run-dir "$RUN" "$@" >>"$T/supervise.log" 2>&1 &
  SUP=$!
}
wait_file() { i=0; while [ ! -e "$1" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; }
finish() {
  if [ -n "${SUP:-}" ]; then wait "$SUP"; echo $? > "$T/supervise.code"; fi
  if [ -n "${SIDECAR:-}" ]; then wait "$SIDECAR"; echo $? > "$T/sidecar.code"; fi
  sleep 0.3
  : > "$T/leftovers"
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    [ "$p" = 1 ] && continue
    [ "$p" = "$$" ] && continue
    read -r c < "$d/comm" 2>/dev/null || continue
    echo "$p $c" >> "$T/leftovers"
  done
}
"#;

/// The fake dockerd: answers `--help` like Docker 28 (the flags the sidecar
/// asks about), otherwise `openssl s_server -HTTP` serves `www/_ping` as a
/// complete HTTP response over TLS with the server certificates from
/// `init`, requiring a client certificate, like dockerd with --tlsverify.
const FAKE_DOCKERD: &str = r#"#!/bin/sh
# The sidecar asks `dockerd --help` which flags it accepts: a current dockerd's.
if [ "${1:-}" = --help ]; then
  echo "$(date +%s.%N) daemon-help" >> "$T/events"
  printf '      --default-network-opt mapmap            Default network options (default map[])\n'
  printf '      --mtu int                               Set the MTU for the default "bridge" network (default 1500)\n'
  exit 0
fi
trap 'echo "$(date +%s.%N) daemon-TERM" >> "$T/events"; [ -n "${child:-}" ] && { kill $child; wait $child; }; exit 0' TERM
echo "$*" > "$T/daemon.args"
echo "$(date +%s.%N) daemon-start" >> "$T/events"
cd "$T/www"
openssl s_server -quiet -HTTP -accept "127.0.0.1:$PORT" \
  -cert "$CERTS/server/cert.pem" -key "$CERTS/server/key.pem" \
  -CAfile "$CERTS/server/ca.pem" -Verify 1 >/dev/null 2>&1 &
child=$!
trap 'echo "$(date +%s.%N) daemon-INT" >> "$T/events"' INT
while kill -0 $child 2>/dev/null; do wait $child; done
"#;

pub struct Pod {
    pub dir: PathBuf,
    pub port: u16,
    keep: std::cell::Cell<bool>,
}

pub struct Outcome {
    pub elapsed: Duration,
    pub status: std::process::ExitStatus,
}

impl Pod {
    /// Volumes, certificates (written by the real `init`), the fake dockerd.
    pub fn new(name: &str) -> Pod {
        let dir = temp_dir(&format!("lifecycle-{name}"));
        for sub in ["run", "fake", "www", "bin"] {
            std::fs::create_dir_all(dir.join(sub)).expect("mkdir");
        }
        let out = Command::new(bin())
            .args(["init", "--bin-dir"])
            .arg(dir.join("bin"))
            .arg("--certs-dir")
            .arg(dir.join("certs"))
            .output()
            .expect("run init");
        assert!(out.status.success(), "init failed: {out:?}");
        std::fs::write(
            dir.join("www/_ping"),
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nOK",
        )
        .expect("write _ping");
        write_script(&dir.join("fake/dockerd"), FAKE_DOCKERD);
        Pod {
            dir,
            port: free_port(),
            keep: std::cell::Cell::new(false),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes an executable script into the pod's directory.
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.path(name);
        write_script(&path, body);
        path
    }

    /// Runs `kubelet` (shell) as PID 1 of a new PID namespace; panics if it
    /// takes longer than `limit`.
    pub fn run(&self, kubelet: &str, limit: Duration) -> Outcome {
        let script = format!("{PRELUDE}\n{kubelet}\n");
        let path = self.path("kubelet.sh");
        write_script(&path, &script);
        let start = Instant::now();
        let mut child = Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc", "--kill-child", "sh"])
            .arg(&path)
            .env("BIN", bin())
            .env("T", &self.dir)
            .env("RUN", self.path("run"))
            .env("CERTS", self.path("certs"))
            .env("PORT", self.port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                std::fs::File::create(self.path("kubelet.out")).expect("create"),
            ))
            .stderr(Stdio::from(
                std::fs::File::create(self.path("kubelet.err")).expect("create"),
            ))
            .spawn()
            .expect("unshare (util-linux) must be installed; tests run as root");
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return Outcome {
                    elapsed: start.elapsed(),
                    status,
                };
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                self.keep.set(true);
                panic!("the pod did not finish within {limit:?}\n{}", self.report());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn read(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.path(name)).ok()
    }

    pub fn code(&self, who: &str) -> Option<i32> {
        self.read(&format!("{who}.code"))?.trim().parse().ok()
    }

    /// `(seconds, what)` in the order written.
    pub fn events(&self) -> Vec<(f64, String)> {
        self.read("events")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (t, what) = l.split_once(' ')?;
                Some((t.parse().ok()?, what.to_string()))
            })
            .collect()
    }

    /// When `what` first happened; NaN if never, so that every comparison
    /// with it is false and the assertion fails.
    pub fn event_time(&self, what: &str) -> f64 {
        self.events()
            .into_iter()
            .find(|(_, w)| w == what)
            .map_or(f64::NAN, |(t, _)| t)
    }

    pub fn has_event(&self, what: &str) -> bool {
        !self.event_time(what).is_nan()
    }

    /// Everything a failing assertion should show.
    pub fn report(&self) -> String {
        let mut s = format!("pod dir: {}\n", self.dir.display());
        for f in [
            "events",
            "supervise.log",
            "sidecar.log",
            "supervise.code",
            "sidecar.code",
            "leftovers",
            "kubelet.out",
            "kubelet.err",
            "daemon.args",
            "runner.signals",
            "hook.log",
            "hook.code",
        ] {
            if let Some(text) = self.read(f) {
                s.push_str(&format!("--- {f}\n{text}\n"));
            }
        }
        if let Ok(entries) = std::fs::read_dir(self.path("run")) {
            for e in entries.flatten() {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                s.push_str(&format!(
                    "--- run/{}: {text}\n",
                    e.file_name().to_string_lossy()
                ));
            }
        }
        s
    }

    /// Asserts with the pod's files in the message; keeps them on failure.
    pub fn check(&self, ok: bool, what: &str) {
        if !ok {
            self.keep.set(true);
            panic!("{what}\n{}", self.report());
        }
    }

    pub fn assert_no_leftovers(&self) {
        let left = self
            .read("leftovers")
            .unwrap_or_else(|| "(not written)".into());
        self.check(
            left.trim().is_empty(),
            &format!("processes left behind: {left}"),
        );
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        if !self.keep.get() && !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
