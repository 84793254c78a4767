//! `supervise -- CMD…`: the runner container's entrypoint wrapper.
//!
//! It does what PID 1 of the runner container should do and the runner's
//! own scripts do not: it is a subreaper and reaps every zombie; it starts
//! the runner in its own process group with clean signal state; it turns
//! the kubelet's SIGTERM into the signal the runner understands (SIGINT),
//! but only after a running job (`Runner.Worker`) has finished or the drain
//! timeout has passed; and it tells the `dind` container, through the run
//! directory, that the runner lives (`runner.pid`) and when it has ended
//! (`runner.exit`).

pub mod args;
mod drain;
pub mod rewrite;

use std::time::{Duration, Instant};

use rustix::process::{getpid, kill_process, kill_process_group, Pid, Signal};

use crate::inpod::rundir::{self, RunDir, RunnerRecord};
use crate::inpod::signals::{self, SignalPipe};
use crate::inpod::{reaper, spawn};

pub use args::Args;
pub use rewrite::Rewrite;

/// Exit code when the supervisor itself failed (Docker never became ready,
/// the run directory is unusable): like `docker run` and `env`, 125.
pub const EXIT_SUPERVISOR_FAILED: u8 = 125;

/// Signals the supervisor catches. Everything but SIGCHLD is passed on.
const CAUGHT: &[i32] = &[
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
    libc::SIGCHLD,
];
/// Signals that ask the runner to stop: a runner ending with 130/143 after
/// one of these was a clean stop.
const STOP_REQUESTS: &[i32] = &[libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot become a child subreaper: {0}")]
    Subreaper(std::io::Error),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("cannot read this process's start time: {0}")]
    Stat(std::io::Error),
    #[error(transparent)]
    RunDir(#[from] rundir::Error),
}

fn log(msg: std::fmt::Arguments<'_>) {
    eprintln!("dind-injector supervise: {msg}");
}

/// Runs the supervisor; returns the exit code. A supervisor that cannot
/// set itself up (the run directory cannot be written, no signal handlers)
/// never starts the runner: it says why and exits
/// [`EXIT_SUPERVISOR_FAILED`], the documented code. `runner.exit` is written
/// whatever happens after `runner.pid` was.
pub fn run(args: &Args) -> u8 {
    let (run_dir, sigs) = match set_up(args) {
        Ok(ready) => ready,
        Err(e) => {
            log(format_args!(
                "{e}; the runner was not started (exit {EXIT_SUPERVISOR_FAILED})"
            ));
            return EXIT_SUPERVISOR_FAILED;
        }
    };
    let code = supervise(args, &run_dir, &sigs);
    if let Err(e) = run_dir.write(rundir::RUNNER_EXIT, &format!("{code}\n")) {
        log(format_args!("{e}"));
    }
    code
}

/// Subreaper, signal handlers, and `runner.pid` in the run directory.
fn set_up(args: &Args) -> Result<(RunDir, SignalPipe), Error> {
    rustix::process::set_child_subreaper(Some(getpid())).map_err(|e| Error::Subreaper(e.into()))?;
    let sigs = SignalPipe::new(CAUGHT).map_err(Error::Signals)?;
    let run_dir = RunDir::new(&args.run_dir);
    run_dir.ensure()?;
    // A previous run of this container (restartPolicy OnFailure) may have
    // left its exit code: it is not ours.
    run_dir.remove(rundir::RUNNER_EXIT);
    let me = RunnerRecord::current().map_err(Error::Stat)?;
    run_dir.write(rundir::RUNNER_PID, &me.format())?;
    Ok((run_dir, sigs))
}

fn supervise(args: &Args, run_dir: &RunDir, sigs: &SignalPipe) -> u8 {
    if !args.spec.docker_wait.duration().is_zero() {
        match wait_for_docker(args, run_dir, sigs) {
            Ok(()) => {}
            Err(code) => return code,
        }
    }

    let child = match spawn::spawn(&args.spec.command, true) {
        Ok(pid) => pid,
        Err(e) => {
            log(format_args!("{e}"));
            return e.exit_code();
        }
    };
    let status = wait_for_child(args, sigs, child);
    let mut code = spawn::exit_code(status.status);
    stop_leftovers(child);
    if status.we_asked && (code == 130 || code == 143) {
        log(format_args!(
            "runner stopped on our request (exit {code}): clean stop, exit 0"
        ));
        code = 0;
    } else {
        log(format_args!("runner exited with code {code}"));
    }
    (code & 0xff) as u8
}

/// Waits for `docker.ready`. `Err(code)` when Docker never came up or the
/// pod was stopped before it did.
fn wait_for_docker(args: &Args, run_dir: &RunDir, sigs: &SignalPipe) -> Result<(), u8> {
    let start = Instant::now();
    let deadline = start + args.spec.docker_wait.duration();
    let ready = run_dir.file(rundir::DOCKER_READY);
    let exited = run_dir.file(rundir::DOCKER_EXITED);
    loop {
        if ready.exists() {
            log(format_args!(
                "Docker is ready after {:.1}s",
                start.elapsed().as_secs_f64()
            ));
            return Ok(());
        }
        if let Ok(code) = std::fs::read_to_string(&exited) {
            log(format_args!(
                "dockerd exited (code {}) before it was ready: the runner was never started. \
                 The dind container's logs say why dockerd stopped.",
                code.trim()
            ));
            return Err(EXIT_SUPERVISOR_FAILED);
        }
        if Instant::now() >= deadline {
            log(format_args!(
                "Docker did not become ready within {}s: {} does not exist. \
                 Is the dind container running? Its logs say why dockerd did not start.",
                args.spec.docker_wait.duration().as_secs(),
                ready.display()
            ));
            return Err(EXIT_SUPERVISOR_FAILED);
        }
        let got = sigs.wait(Duration::from_millis(100));
        reaper::reap_all(None);
        if let Some(sig) = got.iter().find(|s| STOP_REQUESTS.contains(s)) {
            log(format_args!(
                "{} before Docker was ready: the runner was never started, exit 0",
                signals::name(*sig)
            ));
            return Err(0);
        }
    }
}

struct ChildEnd {
    status: rustix::process::WaitStatus,
    /// A stop request was passed on to the runner.
    we_asked: bool,
}

fn wait_for_child(args: &Args, sigs: &SignalPipe, child: Pid) -> ChildEnd {
    let mut runner = Runner {
        args,
        child,
        me: getpid().as_raw_nonzero().get(),
        we_asked: false,
        drain: None,
    };
    loop {
        let timeout = if runner.drain.is_some() {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(1)
        };
        let got = sigs.wait(timeout);
        if let Some(status) = reaper::reap_all(Some(child)) {
            return ChildEnd {
                status,
                we_asked: runner.we_asked,
            };
        }
        for sig in got.into_iter().filter(|s| *s != libc::SIGCHLD) {
            runner.on_signal(sig);
        }
        runner.check_drain();
    }
}

/// The running runner, as the supervisor's signal loop sees it.
struct Runner<'a> {
    args: &'a Args,
    child: Pid,
    /// The supervisor's PID: drain processes are searched below it.
    me: i32,
    /// A stop request was passed on (or is held back by a drain).
    we_asked: bool,
    /// While draining: when to give up, and the signal to send after.
    drain: Option<(Instant, i32)>,
}

impl Runner<'_> {
    /// SIGTERM while a job runs starts a drain; every other signal (and
    /// SIGTERM with no job, or with draining off) is passed on, rewritten.
    fn on_signal(&mut self, sig: i32) {
        let spec = &self.args.spec;
        let to = rewrite::apply(&self.args.rewrites, sig);
        if sig == libc::SIGTERM && !spec.drain_timeout.is_zero() {
            if self.drain.is_some() {
                log(format_args!("SIGTERM again: still draining"));
                return;
            }
            if let Some(worker) = drain::find_worker(self.me, &spec.drain_process) {
                log(format_args!(
                    "SIGTERM while a job runs ({} pid {worker}): draining, \
                     {} to the runner when it ends or in {}s",
                    spec.drain_process,
                    signals::name(to),
                    spec.drain_timeout
                ));
                self.drain = Some((Instant::now() + spec.drain_timeout.duration(), to));
                self.we_asked = true;
                return;
            }
        }
        if STOP_REQUESTS.contains(&sig) {
            self.we_asked = true;
        }
        log(format_args!(
            "{} received: sending {} to the runner",
            signals::name(sig),
            signals::name(to)
        ));
        self.deliver(to);
    }

    /// Ends a drain when the job has finished or the drain timeout passed.
    fn check_drain(&mut self) {
        let Some((deadline, to)) = self.drain else {
            return;
        };
        let spec = &self.args.spec;
        if drain::find_worker(self.me, &spec.drain_process).is_none() {
            log(format_args!(
                "job finished: sending {} to the runner",
                signals::name(to)
            ));
        } else if Instant::now() >= deadline {
            log(format_args!(
                "drain timeout ({}s) expired with {} still running: sending {} to the runner",
                spec.drain_timeout,
                spec.drain_process,
                signals::name(to)
            ));
        } else {
            return;
        }
        self.deliver(to);
        self.drain = None;
    }

    /// To the whole group: the runner's helpers stop with it. ESRCH
    /// (already gone) is fine.
    fn deliver(&self, sig: i32) {
        if let Some(s) = Signal::from_named_raw(sig) {
            let _ = kill_process_group(self.child, s);
        }
    }
}

/// After the runner has ended, its group and any orphan left below us get
/// SIGTERM, then SIGKILL after two seconds, and are reaped: the supervisor
/// leaves nothing behind.
fn stop_leftovers(child: Pid) {
    let me = getpid().as_raw_nonzero().get();
    let _ = kill_process_group(child, Signal::TERM);
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut termed = false;
    loop {
        reaper::reap_all(None);
        let all = crate::inpod::procfs::processes();
        let left: Vec<i32> = crate::inpod::procfs::descendants(me, &all)
            .into_iter()
            .filter(|p| p.state != 'Z')
            .map(|p| p.pid)
            .collect();
        if left.is_empty() {
            return;
        }
        let sig = if Instant::now() >= deadline {
            Signal::KILL
        } else if !termed {
            Signal::TERM
        } else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        termed = true;
        for pid in &left {
            if let Some(pid) = Pid::from_raw(*pid) {
                let _ = kill_process(pid, sig);
            }
        }
        if sig == Signal::KILL {
            std::thread::sleep(Duration::from_millis(50));
            reaper::reap_all(None);
            return;
        }
    }
}
