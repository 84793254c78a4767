//! The pod side: the helpers that run inside every injected pod, from the
//! binary `init` copied into the shared bin volume.
//!
//! `init` (the init container), `supervise` (the runner's entrypoint wrapper),
//! `sidecar` (the `dind` container's entrypoint wrapper) and `wait-docker`
//! (the native `dind` container's postStart hook) coordinate through files
//! in the run directory ([`rundir`]). They run in thousands of
//! CI pods a day, so they stay small and synchronous: no async runtime, no
//! webhook code (`tests/layout.rs` checks both).

pub mod init;
pub mod procfs;
pub mod reaper;
pub mod rundir;
pub mod sidecar;
pub mod signals;
pub mod sigreset;
pub mod spawn;
pub mod supervise;
pub mod wait_docker;

use anyhow::Context;

use crate::contract::cmdline;

/// The helpers' subcommands: the parser of every command line the engine
/// writes into a pod (`main.rs` flattens it into the binary's CLI).
#[derive(Debug, clap::Subcommand)]
pub enum Helper {
    /// Init container: copy this binary to the bin volume, write per-pod Docker TLS material.
    #[command(name = cmdline::INIT)]
    Init(init::Args),
    /// Runner entrypoint wrapper: reap, rewrite signals, drain jobs, report to the run dir.
    #[command(name = cmdline::SUPERVISE)]
    Supervise(supervise::Args),
    /// dind entrypoint wrapper: run dockerd, report readiness, stop it after the runner.
    #[command(name = cmdline::SIDECAR)]
    Sidecar(sidecar::Args),
    /// Native dind postStart hook: wait (bounded) until the sidecar wrote docker.ready.
    #[command(name = cmdline::WAIT_DOCKER)]
    WaitDocker(wait_docker::Args),
}

impl Helper {
    /// Runs the helper; the exit code is the container's.
    pub fn run(self) -> anyhow::Result<u8> {
        match self {
            Helper::Init(args) => init::run(args),
            Helper::Supervise(args) => Ok(supervise::run(&args)),
            Helper::Sidecar(args) => sidecar::run(&args).context("sidecar"),
            Helper::WaitDocker(args) => wait_docker::run(args),
        }
    }
}
