//! `dind-injector supervise -- CMD…`: the runner container's entrypoint
//! wrapper (see [`crate::inpod::supervise`]).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};

use super::{rewrite, Rewrite};
use crate::contract::{path, DEFAULT_DRAIN_PROCESS};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run directory shared with the dind container.
    #[arg(long, env = "DIND_INJECTOR_RUN_DIR", value_name = "DIR", default_value = path::RUN_DIR)]
    pub run_dir: PathBuf,
    /// Signal rewrite FROM:TO, repeatable (later rules win).
    #[arg(long = "rewrite", env = "DIND_INJECTOR_REWRITE", value_name = "SIG:SIG",
          value_delimiter = ',', default_value = "TERM:INT", value_parser = rewrite::parse)]
    pub rewrites: Vec<Rewrite>,
    /// A job is running while a process of this name is below the supervisor.
    #[arg(long, env = "DIND_INJECTOR_DRAIN_PROCESS", value_name = "NAME", default_value = DEFAULT_DRAIN_PROCESS)]
    pub drain_process: String,
    /// How long a running job may take to finish after SIGTERM (0 = no drain).
    #[arg(
        long,
        env = "DIND_INJECTOR_DRAIN_TIMEOUT",
        value_name = "SECS",
        default_value_t = 3300
    )]
    pub drain_timeout: u64,
    /// How long to wait for docker.ready before starting CMD (0 = don't wait).
    #[arg(
        long,
        env = "DIND_INJECTOR_DOCKER_WAIT",
        value_name = "SECS",
        default_value_t = 300
    )]
    pub docker_wait: u64,
    /// The runner's command and arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

pub fn run(args: Args) -> Result<u8> {
    let config = super::Config {
        run_dir: args.run_dir,
        rewrites: args.rewrites,
        drain_process: args.drain_process,
        drain_timeout: Duration::from_secs(args.drain_timeout),
        docker_wait: Duration::from_secs(args.docker_wait),
        command: args.command,
    };
    super::run(&config).context("supervise")
}
