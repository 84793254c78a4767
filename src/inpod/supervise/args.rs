//! `dind-injector supervise -- CMD…`: the runner container's entrypoint
//! wrapper's flags (see [`crate::inpod::supervise`]).

use std::path::PathBuf;

use super::{rewrite, Rewrite};
use crate::contract::{cmdline, path};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The run directory shared with the dind container.
    #[arg(long, env = "DIND_INJECTOR_RUN_DIR", value_name = "DIR", default_value = path::RUN_DIR)]
    pub run_dir: PathBuf,
    /// Signal rewrite FROM:TO, repeatable (later rules win).
    #[arg(long = "rewrite", env = "DIND_INJECTOR_REWRITE", value_name = "SIG:SIG",
          value_delimiter = ',', default_value = "TERM:INT", value_parser = rewrite::parse)]
    pub rewrites: Vec<Rewrite>,
    /// What the engine writes into the pod (drain, Docker wait, CMD).
    #[command(flatten)]
    pub spec: cmdline::Supervise,
}
