//! `dind-injector init`: the injected init container. Copies this binary
//! into the shared bin volume and writes the pod's Docker TLS material.

use anyhow::Result;

mod material;

use material::{ensure_tls, install_binary, TlsOutcome};

/// `init` has only the flags the engine writes: its arguments are the contract's.
pub use crate::contract::cmdline::Init as Args;

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
