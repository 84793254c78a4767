//! `dind-injector wait-docker --timeout=N`: the native `dind` container's
//! postStart hook. The kubelet runs a postStart hook synchronously after
//! starting the container and treats a restartable init container as
//! started (so starts the runner) only after the hook returned; this makes
//! "started" mean "Docker answers" without a probe period in the way (see
//! docs/design.md, "Native sidecar start"). The kubelet gives exec hooks no
//! timeout, so the wait is bounded here: after `--timeout` it fails, the
//! kubelet kills the container (FailedPostStartHook) and restarts it with
//! back-off, and the runner is never started.
//!
//! Plain synchronous code, like the other in-pod helpers: it starts in a
//! few milliseconds and holds almost no memory while it waits.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::contract::{cmdline, path};
use crate::inpod::rundir::{RunDir, DOCKER_READY};

/// How often `docker.ready` is looked for: it is what the runner's start
/// waits on, and a stat is cheap.
const POLL: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The run directory the sidecar writes docker.ready into.
    #[arg(long, env = "DIND_INJECTOR_RUN_DIR", value_name = "DIR", default_value = path::RUN_DIR)]
    pub run_dir: PathBuf,
    /// What the engine writes into the pod (the bound).
    #[command(flatten)]
    pub spec: cmdline::WaitDocker,
}

pub fn run(args: Args) -> Result<u8> {
    let run_dir = RunDir::new(&args.run_dir);
    let start = Instant::now();
    if run_dir.wait_for(DOCKER_READY, args.spec.timeout.duration(), POLL) {
        eprintln!(
            "dind-injector wait-docker: Docker is ready after {:.2}s",
            start.elapsed().as_secs_f64()
        );
        return Ok(0);
    }
    bail!(
        "Docker did not become ready within {}s: {} does not exist; \
         the dind container's log says why dockerd did not start",
        args.spec.timeout,
        run_dir.file(DOCKER_READY).display()
    )
}
