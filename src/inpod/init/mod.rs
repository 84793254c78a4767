//! `dind-injector init`: the injected init container. Copies this binary
//! into the shared bin volume and writes the pod's Docker TLS material.

use std::path::PathBuf;

use anyhow::Result;

use crate::contract::path;
mod material;

use material::{ensure_tls, install_binary, TlsOutcome};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to copy this executable (as `dind-injector`, mode 0555).
    #[arg(long, env = "DIND_INJECTOR_BIN_DIR", value_name = "DIR", default_value = path::BIN_DIR)]
    pub bin_dir: PathBuf,
    /// Where to write `server/` and `client/` TLS material (DOCKER_TLS_CERTDIR).
    #[arg(long, env = "DIND_INJECTOR_CERTS_DIR", value_name = "DIR", default_value = path::CERTS_DIR)]
    pub certs_dir: PathBuf,
}

pub fn run(args: Args) -> Result<u8> {
    let binary = install_binary(&args.bin_dir)?;
    eprintln!("dind-injector init: installed {}", binary.display());
    let outcome = ensure_tls(&args.certs_dir)?;
    let what = match outcome {
        TlsOutcome::Kept => "kept the valid TLS material already in",
        TlsOutcome::Generated => "wrote new TLS material to",
    };
    eprintln!("dind-injector init: {what} {}", args.certs_dir.display());
    Ok(0)
}
