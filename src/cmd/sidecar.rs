//! `dind-injector sidecar -- dockerd-entrypoint.sh …`: the dind container's
//! entrypoint wrapper (see [`crate::sidecar`]).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::contract::{path, DOCKER_HOST};
use crate::sidecar::{self, mtu, Mtu};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// No coordination with a supervised runner: run the daemon, pass
    /// SIGTERM/SIGINT on, exit as it does (native sidecars, unsupervised
    /// runners). docker.ready is still written to the run directory.
    #[arg(long, env = "DIND_INJECTOR_STANDALONE")]
    pub standalone: bool,
    /// The run directory shared with the runner container.
    #[arg(long, env = "DIND_INJECTOR_RUN_DIR", value_name = "DIR", default_value = path::RUN_DIR)]
    pub run_dir: PathBuf,
    /// DOCKER_TLS_CERTDIR: the readiness ping uses its client/ certificates.
    #[arg(long, env = "DIND_INJECTOR_CERTS_DIR", value_name = "DIR", default_value = path::CERTS_DIR)]
    pub certs_dir: PathBuf,
    /// The endpoint the runner uses; pinged with GET /_ping to write docker.ready.
    #[arg(long, env = "DIND_INJECTOR_DOCKER_HOST", value_name = "URL", default_value = DOCKER_HOST)]
    pub docker_host: String,
    /// How long dockerd may take to stop after SIGTERM before SIGKILL.
    #[arg(
        long,
        env = "DIND_INJECTOR_STOP_TIMEOUT",
        value_name = "SECS",
        default_value_t = 20
    )]
    pub stop_timeout: u64,
    /// Stop the daemon if no runner.pid appeared within this time.
    #[arg(
        long,
        env = "DIND_INJECTOR_RUNNER_START_TIMEOUT",
        value_name = "SECS",
        default_value_t = 600
    )]
    pub runner_start_timeout: u64,
    /// dockerd's MTU: `auto` (the default-route interface's), `off`, or a number.
    #[arg(long, env = "DIND_INJECTOR_MTU", value_name = "auto|off|N", default_value = "auto", value_parser = mtu::parse)]
    pub mtu: Mtu,
    /// The daemon's command (dockerd-entrypoint.sh or dockerd) and arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

pub fn run(args: Args) -> Result<u8> {
    let config = sidecar::Config {
        run_dir: args.run_dir,
        certs_dir: args.certs_dir,
        docker_host: args.docker_host,
        stop_timeout: Duration::from_secs(args.stop_timeout),
        runner_start_timeout: Duration::from_secs(args.runner_start_timeout),
        mtu: args.mtu,
        standalone: args.standalone,
        command: args.command,
    };
    sidecar::run(&config).context("sidecar")
}
