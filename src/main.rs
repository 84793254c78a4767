//! The command line: a table of contents. Each subcommand lives in its own
//! module of the library and can be read alone.

use clap::{Parser, Subcommand};
use dind_injector::{engine, inpod, webhook};

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
    // === the webhook side ===
    /// Serve the HTTPS AdmissionReview endpoint (POST /mutate).
    Serve(Box<webhook::serve::Args>),
    /// Write a dev CA and a serving certificate (for make run and tests).
    Certs(webhook::certs::Args),
    // === the engine, offline ===
    /// Print manifests with runner pods injected (offline, no cluster needed;
    /// --from-cluster uses the installed configuration).
    Inject(engine::inject::Args),
    /// Print the injection as admission policies (MutatingAdmissionPolicy,
    /// ValidatingAdmissionPolicy and bindings): delivery without a webhook.
    Policy(engine::policy::Args),
    // === the pod side: init, supervise, sidecar, wait-docker ===
    #[command(flatten)]
    InPod(inpod::Helper),
}

fn main() -> std::process::ExitCode {
    // One crypto provider for the whole process (ring; see docs/design.md).
    dind_injector::crypto::install_default_provider();
    let result = match Cli::parse().command {
        Command::Serve(args) => webhook::serve::run(*args).map(|()| 0),
        Command::Certs(args) => webhook::certs::run(args).map(|()| 0),
        Command::Inject(args) => webhook::cluster::inject(args).map(|()| 0),
        Command::Policy(args) => engine::policy::run(args).map(|()| 0),
        Command::InPod(helper) => helper.run(),
    };
    match result {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("dind-injector: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
