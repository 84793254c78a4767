//! `dind-injector sidecar -- dockerd-entrypoint.sh …`: the dind container's
//! entrypoint wrapper's flags (see [`crate::inpod::sidecar`]).

use std::path::PathBuf;

use super::{mtu, Mtu};
use crate::contract::cmdline::{self, Seconds};
use crate::contract::{path, DOCKER_HOST};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
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
    #[arg(long, env = "DIND_INJECTOR_STOP_TIMEOUT", value_name = "SECS", default_value_t = Seconds(20))]
    pub stop_timeout: Seconds,
    /// Stop the daemon if no runner.pid appeared within this time.
    #[arg(long, env = "DIND_INJECTOR_RUNNER_START_TIMEOUT", value_name = "SECS", default_value_t = Seconds(600))]
    pub runner_start_timeout: Seconds,
    /// dockerd's MTU: `auto` (the default-route interface's), `off`, or a number.
    #[arg(long, env = "DIND_INJECTOR_MTU", value_name = "auto|off|N", default_value = "auto", value_parser = mtu::parse)]
    pub mtu: Mtu,
    /// What the engine writes into the pod (standalone or not, the daemon's CMD).
    #[command(flatten)]
    pub spec: cmdline::Sidecar,
}
