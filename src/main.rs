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
    /// Print manifests with runner pods injected (offline, no cluster needed).
    Inject(dind_injector::cmd::inject::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inject(args) => dind_injector::cmd::inject::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dind-injector: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
