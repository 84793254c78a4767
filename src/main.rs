//! The command line: a table of contents. Each subcommand lives in its own
//! module of the library and can be read alone.

use clap::{Parser, Subcommand};

/// Reviews are allocation-heavy JSON work; see Cargo.toml.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "dind-injector",
    version,
    about = "Docker-in-Docker for CI runner pods, done right"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTPS AdmissionReview endpoint (POST /mutate).
    Serve(Box<dind_injector::cmd::serve::Args>),
    /// Print manifests with runner pods injected (offline, no cluster needed).
    Inject(dind_injector::cmd::inject::Args),
    /// Write a dev CA and a serving certificate (for make run and tests).
    Certs(dind_injector::cmd::certs::Args),
}

fn main() -> std::process::ExitCode {
    // One crypto provider for the whole process (ring; see docs/design.md).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => dind_injector::cmd::serve::run(*args),
        Command::Inject(args) => dind_injector::cmd::inject::run(args),
        Command::Certs(args) => dind_injector::cmd::certs::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dind-injector: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
