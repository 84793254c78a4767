//! The command line: a table of contents. Each subcommand lives in its own
//! module of the library and can be read alone.

use clap::{Parser, Subcommand};

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
    /// Init container: copy this binary to the bin volume, write per-pod Docker TLS material.
    Init(dind_injector::cmd::init::Args),
    /// Runner entrypoint wrapper: reap, rewrite signals, drain jobs, report to the run dir.
    Supervise(dind_injector::cmd::supervise::Args),
    /// dind entrypoint wrapper: run dockerd, report readiness, stop it after the runner.
    Sidecar(dind_injector::cmd::sidecar::Args),
    /// Native dind postStart hook: wait (bounded) until the sidecar wrote docker.ready.
    WaitDocker(dind_injector::cmd::wait_docker::Args),
}

fn main() -> std::process::ExitCode {
    // One crypto provider for the whole process (ring; see docs/design.md).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => dind_injector::cmd::serve::run(*args).map(|()| 0),
        Command::Inject(args) => dind_injector::cmd::inject::run(args).map(|()| 0),
        Command::Certs(args) => dind_injector::cmd::certs::run(args).map(|()| 0),
        Command::Init(args) => dind_injector::cmd::init::run(args),
        Command::Supervise(args) => dind_injector::cmd::supervise::run(args),
        Command::Sidecar(args) => dind_injector::cmd::sidecar::run(args),
        Command::WaitDocker(args) => dind_injector::cmd::wait_docker::run(args),
    };
    match result {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("dind-injector: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
