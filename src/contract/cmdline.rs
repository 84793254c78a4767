//! The in-pod helpers' command lines: what the engine writes into the pod
//! and what the helpers parse, defined once.
//!
//! Each struct here is both: the helper's parser (`#[command(flatten)]` in
//! its `Args`, so clap reads these very fields) and the engine's renderer
//! ([`Init::argv`], [`Supervise::argv`], [`Sidecar::argv`],
//! [`WaitDocker::argv`]). A flag the engine writes therefore has one name,
//! one type and one default. The helpers' other flags (run dir, rewrite
//! table, MTU, timeouts the engine never sets) live with the helper. `tests/contract.rs` parses every helper command line
//! of every golden file with the helpers' own parser and renders it back.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::path;

/// Subcommand names, as the engine writes them and `main.rs` declares them.
pub const INIT: &str = "init";
pub const SUPERVISE: &str = "supervise";
pub const SIDECAR: &str = "sidecar";
pub const WAIT_DOCKER: &str = "wait-docker";

/// Long names of the flags the engine writes.
pub mod flag {
    pub const BIN_DIR: &str = "bin-dir";
    pub const CERTS_DIR: &str = "certs-dir";
    pub const DRAIN_TIMEOUT: &str = "drain-timeout";
    pub const DOCKER_WAIT: &str = "docker-wait";
    pub const DRAIN_PROCESS: &str = "drain-process";
    pub const STANDALONE: &str = "standalone";
    pub const WATCH_RUNNER: &str = "watch-runner";
    pub const TIMEOUT: &str = "timeout";
}

/// How long a running job may finish after SIGTERM: the config's default
/// and the helper's.
pub const DEFAULT_DRAIN_TIMEOUT: Seconds = Seconds(3300);
/// How long the supervisor waits for Docker: in classic mode `dind` is the
/// last container, so this covers its image pull.
pub const DEFAULT_DOCKER_WAIT: Seconds = Seconds(300);
/// The process whose presence means "a job is running" in an actions runner.
pub const DEFAULT_DRAIN_PROCESS: &str = "Runner.Worker";

/// Whole seconds, as written on a helper's command line (`--docker-wait=300`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Seconds(pub u32);

impl Seconds {
    pub fn duration(self) -> Duration {
        Duration::from_secs(u64::from(self.0))
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Seconds {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        s.parse()
            .map(Seconds)
            .map_err(|_| format!("{s:?} is not a whole number of seconds"))
    }
}

fn long(name: &str, value: impl fmt::Display) -> String {
    format!("--{name}={value}")
}

/// `init`'s whole command line (it has no other flags).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct Init {
    /// Where to copy this executable (as `dind-injector`, mode 0555).
    #[arg(long = flag::BIN_DIR, env = "DIND_INJECTOR_BIN_DIR", value_name = "DIR", default_value = path::BIN_DIR)]
    pub bin_dir: PathBuf,
    /// Where to write `server/` and `client/` TLS material (DOCKER_TLS_CERTDIR).
    #[arg(long = flag::CERTS_DIR, env = "DIND_INJECTOR_CERTS_DIR", value_name = "DIR", default_value = path::CERTS_DIR)]
    pub certs_dir: PathBuf,
}

impl Init {
    /// `[binary, init, --bin-dir=…, --certs-dir=…]`: both explicit.
    pub fn argv(&self, binary: &str) -> Vec<String> {
        vec![
            binary.into(),
            INIT.into(),
            long(flag::BIN_DIR, self.bin_dir.display()),
            long(flag::CERTS_DIR, self.certs_dir.display()),
        ]
    }
}

/// What the engine writes on `supervise`'s command line. Every setting is
/// explicit, so the pod shows how it runs whatever the helper's defaults.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct Supervise {
    /// How long a running job may take to finish after SIGTERM (0 = no drain).
    #[arg(long = flag::DRAIN_TIMEOUT, env = "DIND_INJECTOR_DRAIN_TIMEOUT", value_name = "SECS", default_value_t = DEFAULT_DRAIN_TIMEOUT)]
    pub drain_timeout: Seconds,
    /// How long to wait for docker.ready before starting CMD (0 = don't wait).
    #[arg(long = flag::DOCKER_WAIT, env = "DIND_INJECTOR_DOCKER_WAIT", value_name = "SECS", default_value_t = DEFAULT_DOCKER_WAIT)]
    pub docker_wait: Seconds,
    /// A job is running while a process of this name is below the supervisor.
    #[arg(long = flag::DRAIN_PROCESS, env = "DIND_INJECTOR_DRAIN_PROCESS", value_name = "NAME", default_value = DEFAULT_DRAIN_PROCESS)]
    pub drain_process: String,
    /// The runner's command and arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

impl Supervise {
    /// `[binary, supervise, --drain-timeout=N, --docker-wait=N,
    /// --drain-process=NAME, --, CMD…]`.
    pub fn argv(&self) -> Vec<String> {
        let mut argv = vec![
            path::BINARY.into(),
            SUPERVISE.into(),
            long(flag::DRAIN_TIMEOUT, self.drain_timeout),
            long(flag::DOCKER_WAIT, self.docker_wait),
            long(flag::DRAIN_PROCESS, &self.drain_process),
            "--".into(),
        ];
        argv.extend(self.command.iter().cloned());
        argv
    }
}

/// What the engine writes on `sidecar`'s command line.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct Sidecar {
    /// No coordination with a supervised runner: run the daemon, pass
    /// SIGTERM/SIGINT on, exit as it does (native sidecars, unsupervised
    /// runners). docker.ready is still written to the run directory.
    #[arg(long = flag::STANDALONE, env = "DIND_INJECTOR_STANDALONE", conflicts_with = "watch_runner")]
    pub standalone: bool,
    /// A runner that is not supervised (its command is unknown) in classic
    /// mode: find its container by the marker variable
    /// ([`crate::contract::RUNNER_MARKER_ENV`]`=NAME`) and stop the daemon
    /// once none of that container's processes is left, so the pod completes.
    #[arg(long = flag::WATCH_RUNNER, env = "DIND_INJECTOR_WATCH_RUNNER", value_name = "NAME")]
    pub watch_runner: Option<String>,
    /// The daemon's command (dockerd-entrypoint.sh or dockerd) and arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

impl Sidecar {
    /// `[binary, sidecar, (--standalone | --watch-runner=NAME), --, CMD…]`.
    pub fn argv(&self) -> Vec<String> {
        let mut argv = vec![path::BINARY.into(), SIDECAR.into()];
        if self.standalone {
            argv.push(format!("--{}", flag::STANDALONE));
        }
        if let Some(name) = &self.watch_runner {
            argv.push(long(flag::WATCH_RUNNER, name));
        }
        argv.push("--".into());
        argv.extend(self.command.iter().cloned());
        argv
    }
}

/// What the engine writes on `wait-docker`'s command line (the native
/// `dind` container's postStart hook).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct WaitDocker {
    /// Fail when docker.ready has not appeared within this time.
    #[arg(long = flag::TIMEOUT, env = "DIND_INJECTOR_WAIT_DOCKER_TIMEOUT", value_name = "SECS", default_value_t = DEFAULT_DOCKER_WAIT)]
    pub timeout: Seconds,
}

impl WaitDocker {
    /// `[binary, wait-docker, --timeout=N]`.
    pub fn argv(&self) -> Vec<String> {
        vec![
            path::BINARY.into(),
            WAIT_DOCKER.into(),
            long(flag::TIMEOUT, self.timeout),
        ]
    }
}
