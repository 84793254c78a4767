//! What the daemon's own `dockerd` accepts, asked before any flag is added.
//!
//! The dind image decides the daemon's version, not us: `docker:28-dind`
//! knows `--default-network-opt`, Debian's dockerd 20.10 refuses to start
//! with it ("unknown flag"). So the sidecar asks the binary: `dockerd
//! --help` lists every flag it parses. That is better evidence than
//! `dockerd --version`, which would need a table of the versions each flag
//! appeared in (docker/cli documents `--default-network-opt` from 25.0, the
//! code had it earlier) and cannot read distribution builds
//! (`20.10.24+dfsg1`), forks or development builds (`dev`). Both cost the
//! same: one start of a large Go binary (about 0.1 s and 64 MB for a moment
//! on the test machine), which is why the sidecar probes only when it has a
//! flag to add.
//!
//! The sidecar usually runs `dockerd-entrypoint.sh`, which is not dockerd
//! and must not be run twice (it checks and writes certificates), so the
//! probe runs the `dockerd` that the entrypoint will run: the one on PATH.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rustix::process::{pidfd_open, pidfd_send_signal, Pid, PidfdFlags, Signal};

/// A probe that takes longer than this is killed; no flag is added then.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("no dockerd on PATH ({0})")]
    NotOnPath(String),
    #[error("cannot run {program} --help: {source}")]
    Spawn {
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("{program} --help failed ({status})")]
    Failed {
        program: PathBuf,
        status: std::process::ExitStatus,
    },
    #[error("{program} --help did not finish within {}s (killed)", PROBE_TIMEOUT.as_secs())]
    Timeout { program: PathBuf },
    #[error("{program} --help lists no flags: not a dockerd help text")]
    NoFlags { program: PathBuf },
}

/// The long flags a daemon's help lists (`--mtu`, `--default-network-opt`…).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accepted(BTreeSet<String>);

impl Accepted {
    /// Whether the daemon parses `flag` (`--name`, exactly: `--mtu` is not
    /// `--network-control-plane-mtu`).
    pub fn has(&self, flag: &str) -> bool {
        self.0.contains(flag)
    }
}

/// Reads the flag names out of a cobra/pflag help text.
///
/// A flag entry starts near the left margin with the flag
/// (`      --mtu int   Set the…`, `  -b, --bridge string …`); wrapped
/// descriptions are indented far deeper and are not read, so a description
/// that mentions another flag never counts as that flag.
pub fn parse_help(text: &str) -> Accepted {
    let mut flags = BTreeSet::new();
    for line in text.lines() {
        let rest = line.trim_start();
        let indent = line.len() - rest.len();
        if indent > 6 || !rest.starts_with('-') {
            continue;
        }
        for word in rest.split_ascii_whitespace() {
            let word = word.trim_end_matches(',');
            if !word.starts_with('-') {
                break;
            }
            if let Some(name) = word.strip_prefix("--") {
                // `--flag=value` forms do not appear in help, but be exact.
                let name = name.split('=').next().unwrap_or_default();
                if !name.is_empty() {
                    flags.insert(format!("--{name}"));
                }
            }
        }
    }
    Accepted(flags)
}

/// The `dockerd` the daemon command will run: the command itself when it is
/// a dockerd, else (`dockerd-entrypoint.sh`) the first `dockerd` on `path`.
pub fn probe_target(command: &[String], path: Option<&str>) -> Result<PathBuf, ProbeError> {
    let first = command.first().map(String::as_str).unwrap_or_default();
    if first.contains('/') && Path::new(first).file_name().is_some_and(|n| n == "dockerd") {
        return Ok(PathBuf::from(first));
    }
    let path = path.unwrap_or_default();
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join("dockerd"))
        .find(|p| is_executable(p))
        .ok_or_else(|| ProbeError::NotOnPath(format!("PATH={path}")))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs `program --help` (bounded by `timeout`) and reads its flags.
pub fn probe(program: &Path, timeout: Duration) -> Result<Accepted, ProbeError> {
    let mut child = Command::new(program)
        .arg("--help")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| ProbeError::Spawn {
            program: program.to_path_buf(),
            source,
        })?;
    // A pidfd names this very process even after it ends, so the kill on
    // timeout cannot hit a process that reused its PID.
    let pidfd =
        Pid::from_raw(child.id() as i32).and_then(|pid| pidfd_open(pid, PidfdFlags::empty()).ok());
    let mut stdout = child.stdout.take();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = Vec::new();
        if let Some(s) = stdout.as_mut() {
            let _ = s.read_to_end(&mut out);
        }
        let _ = tx.send((out, child.wait()));
    });
    match rx.recv_timeout(timeout) {
        Ok((out, Ok(status))) if status.success() => {
            let accepted = parse_help(&String::from_utf8_lossy(&out));
            if accepted.0.is_empty() {
                return Err(ProbeError::NoFlags {
                    program: program.to_path_buf(),
                });
            }
            Ok(accepted)
        }
        Ok((_, Ok(status))) => Err(ProbeError::Failed {
            program: program.to_path_buf(),
            status,
        }),
        Ok((_, Err(source))) => Err(ProbeError::Spawn {
            program: program.to_path_buf(),
            source,
        }),
        Err(_) => {
            if let Some(fd) = &pidfd {
                let _ = pidfd_send_signal(fd, Signal::KILL);
            }
            Err(ProbeError::Timeout {
                program: program.to_path_buf(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `dockerd --help` of Debian 12's docker.io 20.10.24+dfsg1 (the daemon
    /// the lifecycle tests run), captured on the test machine.
    const HELP_20_10: &str = include_str!("../../../tests/fixtures/dockerd/help-20.10.24.txt");
    /// `dockerd --help` of Docker 28.2.2: the usage block of
    /// docs/reference/dockerd.md at tag v28.2.2 of github.com/docker/cli
    /// (identical at v28.5.2; that file is generated from the daemon's flags).
    const HELP_28_2: &str = include_str!("../../../tests/fixtures/dockerd/help-28.2.2.txt");

    #[test]
    fn dockerd_20_10_has_mtu_but_not_default_network_opt() {
        let a = parse_help(HELP_20_10);
        assert!(a.has("--mtu"));
        assert!(!a.has("--default-network-opt"));
        assert!(a.has("--bridge"), "short and long form on one line");
        assert!(a.has("--network-control-plane-mtu"));
        // Wrapped description lines are not flags.
        assert!(!a.has("--OCI"));
    }

    #[test]
    fn dockerd_28_has_both() {
        let a = parse_help(HELP_28_2);
        assert!(a.has("--mtu"));
        assert!(a.has("--default-network-opt"));
        assert!(!a.has("--default-network"), "names are matched whole");
    }

    #[test]
    fn a_version_text_or_garbage_lists_no_flag() {
        let version = include_str!("../../../tests/fixtures/dockerd/version-20.10.24.txt");
        assert_eq!(parse_help(version), Accepted::default());
        assert_eq!(parse_help(""), Accepted::default());
        assert!(!parse_help("see --mtu below\n      description --mtu").has("--mtu"));
    }

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_target_is_the_dockerd_the_command_runs() {
        let dir = std::env::temp_dir().join(format!("probe-target-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let dockerd = dir.join("dockerd");
        std::fs::write(&dockerd, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dockerd, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!("/nonexistent:{}", dir.display());
        // The entrypoint: the dockerd on PATH.
        assert_eq!(
            probe_target(&v(&["dockerd-entrypoint.sh", "--tls"]), Some(&path)).unwrap(),
            dockerd
        );
        // Not executable: not found.
        std::fs::set_permissions(&dockerd, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            probe_target(&v(&["dockerd-entrypoint.sh"]), Some(&path)),
            Err(ProbeError::NotOnPath(_))
        ));
        // A path to dockerd: that one.
        assert_eq!(
            probe_target(&v(&["/opt/x/dockerd"]), Some(&path)).unwrap(),
            PathBuf::from("/opt/x/dockerd")
        );
        assert!(probe_target(&v(&["dockerd"]), Some("")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn probe_failures_are_errors_not_guesses() {
        let dir = std::env::temp_dir().join(format!("probe-run-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = |name: &str, body: &str| {
            use std::os::unix::fs::PermissionsExt;
            let p = dir.join(name);
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            p
        };
        let good = script("good", "echo '      --mtu int   Set the MTU'");
        assert!(probe(&good, PROBE_TIMEOUT).unwrap().has("--mtu"));
        let failing = script("failing", "echo '      --mtu int'; exit 2");
        assert!(matches!(
            probe(&failing, PROBE_TIMEOUT),
            Err(ProbeError::Failed { .. })
        ));
        let silent = script("silent", "echo 'Docker version 1.0'");
        assert!(matches!(
            probe(&silent, PROBE_TIMEOUT),
            Err(ProbeError::NoFlags { .. })
        ));
        let hanging = script("hanging", "exec sleep 30");
        let start = std::time::Instant::now();
        assert!(matches!(
            probe(&hanging, Duration::from_millis(200)),
            Err(ProbeError::Timeout { .. })
        ));
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "killed, not waited for"
        );
        assert!(matches!(
            probe(&dir.join("missing"), PROBE_TIMEOUT),
            Err(ProbeError::Spawn { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
