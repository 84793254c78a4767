//! `sidecar -- CMD…`: the `dind` container's entrypoint wrapper.
//!
//! In classic mode every container of a terminating pod gets SIGTERM at
//! the same moment, but the runner may be draining a job that still needs
//! Docker. So the sidecar starts dockerd as its child, reports when it
//! really answers (`docker.ready`), holds SIGTERM back while the runner
//! lives, and stops dockerd itself when the runner has ended — by its exit
//! file, by its disappearance (SIGKILL, OOM kill: no exit file ever comes),
//! or because no runner ever started. It reads the current state before it
//! waits, so a runner that ended before the sidecar looked is not missed.
//! A runner that is not supervised (its command is unknown) writes no
//! files; with `--watch-runner` the sidecar follows its container's
//! processes instead ([`container`]) and stops the daemon the same way.

pub mod args;
pub mod container;
pub mod dockerd;
pub mod mtu;
pub mod ping;

use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::process::{kill_process, pidfd_open, waitpid, Pid, PidfdFlags, Signal, WaitOptions};

use crate::inpod::rundir::{self, Liveness, RunDir, RunnerRecord};
use crate::inpod::signals::{self, SignalPipe};
use crate::inpod::{reaper, spawn};

pub use args::Args;
use container::{ContainerWatch, Seen};
pub use mtu::Mtu;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    RunDir(#[from] rundir::Error),
    #[error(transparent)]
    Spawn(#[from] spawn::SpawnError),
}

fn log(msg: std::fmt::Arguments<'_>) {
    eprintln!("dind-injector sidecar: {msg}");
}

const FORWARDED: &[i32] = &[libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT];
/// How often the state is re-read when nothing wakes the loop earlier.
const TICK: Duration = Duration::from_millis(200);
/// The same without a supervisor: a look at every process's cgroup, and
/// nothing (no pidfd) wakes the loop when the runner ends.
const WATCH_TICK: Duration = Duration::from_millis(500);

/// Runs the sidecar; returns the exit code.
pub fn run(config: &Args) -> Result<u8, Error> {
    let mut caught = FORWARDED.to_vec();
    caught.push(libc::SIGCHLD);
    let sigs = SignalPipe::new(&caught).map_err(Error::Signals)?;
    let argv = daemon_argv(config);

    // docker.ready is written in both modes: in native mode the dind
    // container's postStart hook (`wait-docker`) waits for it.
    let run_dir = RunDir::new(&config.run_dir);
    run_dir.ensure()?;
    // From a previous daemon (a restarted dind container): not this one.
    run_dir.remove(rundir::DOCKER_READY);
    run_dir.remove(rundir::DOCKER_EXITED);
    let started = Instant::now();
    let daemon = spawn::spawn(&argv, false)?;
    let readiness = ReadyReporter::start(config.clone(), run_dir.clone(), started);
    let code = if config.spec.standalone {
        standalone(&sigs, daemon)
    } else {
        coordinated(config, &run_dir, &sigs, daemon, started)
    };
    readiness.stop(&run_dir);
    Ok(code)
}

fn daemon_argv(config: &Args) -> Vec<String> {
    if !mtu::runs_dockerd(&config.spec.command) {
        return config.spec.command.clone();
    }
    let Some(m) = mtu::resolve(config.mtu) else {
        return config.spec.command.clone();
    };
    let decision = mtu::decide(&config.spec.command, m, || {
        let path = std::env::var("PATH").ok();
        let program = dockerd::probe_target(&config.spec.command, path.as_deref())?;
        let started = Instant::now();
        let accepted = dockerd::probe(&program, dockerd::PROBE_TIMEOUT);
        log(format_args!(
            "asked {} --help which flags it accepts ({:.0} ms)",
            program.display(),
            started.elapsed().as_secs_f64() * 1000.0
        ));
        accepted
    });
    for note in &decision.notes {
        log(format_args!("{note}"));
    }
    let mut argv = config.spec.command.clone();
    argv.extend(decision.args);
    argv
}

/// Native mode, or no supervised runner: pass signals on, exit as dockerd did.
fn standalone(sigs: &SignalPipe, daemon: Pid) -> u8 {
    loop {
        let got = sigs.wait(Duration::from_secs(1));
        if let Some(status) = reaper::reap_all(Some(daemon)) {
            let code = spawn::exit_code(status);
            log(format_args!("daemon exited with code {code}"));
            return (code & 0xff) as u8;
        }
        for sig in got.into_iter().filter(|s| *s != libc::SIGCHLD) {
            if let Some(s) = Signal::from_named_raw(sig) {
                log(format_args!(
                    "{}: passed on to the daemon",
                    signals::name(sig)
                ));
                let _ = kill_process(daemon, s);
            }
        }
    }
}

/// What the sidecar knows about the runner, and how it learns it.
enum Watch {
    /// The supervisor's files in the run directory.
    Protocol(ProtocolWatch),
    /// The runner container's processes (no supervisor).
    Container { watch: ContainerWatch, last: Seen },
}

impl Watch {
    fn new(config: &Args) -> Self {
        match &config.spec.watch_runner {
            Some(name) => Watch::Container {
                watch: ContainerWatch::new(name),
                last: Seen::NotYet,
            },
            None => Watch::Protocol(ProtocolWatch {
                record: None,
                pidfd: None,
                proc_unreadable: false,
            }),
        }
    }

    /// `Some(reason)` when the daemon must stop.
    fn check(&mut self, run_dir: &RunDir, config: &Args, started: Instant) -> Option<String> {
        let (watch, last) = match self {
            Watch::Protocol(p) => return p.check(run_dir, config, started),
            Watch::Container { watch, last } => (watch, last),
        };
        let seen = watch.look();
        if *last == Seen::NotYet {
            if let (Some((cgroup, pid)), Seen::Running { .. }) = (watch.found(), &seen) {
                log(format_args!(
                    "watching the runner container {:?} (pid {pid}, cgroups {}): \
                     not supervised, the daemon stops when its processes have ended",
                    watch.name(),
                    cgroup.replace('\n', " ")
                ));
            }
        }
        *last = seen.clone();
        match seen {
            Seen::Ended => Some(format!(
                "every process of the runner container {:?} has ended",
                watch.name()
            )),
            Seen::NotYet if started.elapsed() >= config.runner_start_timeout.duration() => {
                Some(format!(
                    "no runner started within {}s (no process with {}={})",
                    config.runner_start_timeout.duration().as_secs(),
                    crate::contract::RUNNER_MARKER_ENV,
                    watch.name()
                ))
            }
            _ => None,
        }
    }

    /// What wakes the loop when the runner ends, besides the tick.
    fn wake_fd(&self) -> Option<&OwnedFd> {
        match self {
            Watch::Protocol(p) => p.pidfd.as_ref(),
            Watch::Container { .. } => None,
        }
    }

    fn tick(&self) -> Duration {
        match self {
            Watch::Protocol(_) => TICK,
            Watch::Container { .. } => WATCH_TICK,
        }
    }

    /// The runner, described, while it runs.
    fn running(&mut self) -> Option<String> {
        match self {
            Watch::Protocol(p) => {
                let record = p.record;
                record
                    .filter(|r| p.alive(r))
                    .map(|r| format!("the runner (pid {})", r.pid))
            }
            Watch::Container { watch, last } => match last {
                Seen::Running { processes } => Some(format!(
                    "the runner container {:?} ({processes} processes)",
                    watch.name()
                )),
                _ => None,
            },
        }
    }

    /// Whether a runner was ever seen.
    fn seen(&self) -> bool {
        match self {
            Watch::Protocol(p) => p.record.is_some(),
            Watch::Container { last, .. } => *last != Seen::NotYet,
        }
    }
}

/// The supervisor's side of the protocol, as the sidecar reads it.
struct ProtocolWatch {
    record: Option<RunnerRecord>,
    pidfd: Option<OwnedFd>,
    /// `/proc` could not tell (said once in the log).
    proc_unreadable: bool,
}

impl ProtocolWatch {
    /// Whether the runner still runs. When `/proc` cannot tell (hidepid),
    /// its pidfd can: it turns readable when the process has exited. With
    /// neither, the runner is taken as alive: `runner.exit` or the pod's
    /// own end still stop the daemon, and stopping Docker under a live job
    /// is the worse mistake.
    fn alive(&mut self, record: &RunnerRecord) -> bool {
        match record.liveness() {
            Liveness::Alive => true,
            Liveness::Gone => false,
            Liveness::Unknown(why) => {
                if !self.proc_unreadable {
                    self.proc_unreadable = true;
                    log(format_args!(
                        "cannot read /proc/{}/stat ({why}): the runner's end is seen \
                         through its pidfd and runner.exit",
                        record.pid
                    ));
                }
                !self.pidfd.as_ref().is_some_and(exited)
            }
        }
    }

    /// Reads the run directory. `Some(reason)` when the daemon must stop.
    fn check(&mut self, run_dir: &RunDir, config: &Args, started: Instant) -> Option<String> {
        if let Some(code) = run_dir.runner_exit() {
            let code = code.map_or("unreadable".to_string(), |c| c.to_string());
            return Some(format!("the runner exited (runner.exit: {code})"));
        }
        match run_dir.runner() {
            Some(record) => {
                if self.record != Some(record) {
                    // A pidfd refers to the process that had the PID when it
                    // was opened; checking the start time after opening it
                    // closes the window in which the PID could be reused.
                    self.pidfd = Pid::from_raw(record.pid)
                        .and_then(|pid| pidfd_open(pid, PidfdFlags::empty()).ok());
                    self.record = Some(record);
                    if self.alive(&record) {
                        log(format_args!("watching the runner (pid {})", record.pid));
                    }
                }
                if !self.alive(&record) {
                    // It may have written runner.exit just before it ended.
                    if run_dir.runner_exit().is_some() {
                        return Some("the runner exited".to_string());
                    }
                    return Some(format!(
                        "the runner (pid {}, start time {}) is gone without runner.exit: \
                         killed (SIGKILL, OOM kill) or replaced",
                        record.pid, record.start_time
                    ));
                }
                None
            }
            None if started.elapsed() >= config.runner_start_timeout.duration() => Some(format!(
                "no runner started within {}s (no {})",
                config.runner_start_timeout.duration().as_secs(),
                run_dir.file(rundir::RUNNER_PID).display()
            )),
            None => None,
        }
    }
}

fn coordinated(
    config: &Args,
    run_dir: &RunDir,
    sigs: &SignalPipe,
    daemon: Pid,
    started: Instant,
) -> u8 {
    let mut watch = Watch::new(config);
    let mut held = false;
    loop {
        // State first, then wait: nothing that happened before we looked
        // is missed.
        if let Some(reason) = watch.check(run_dir, config, started) {
            log(format_args!("{reason}: stopping the daemon"));
            return stop_daemon(config, run_dir, sigs, daemon);
        }
        let got = sigs.wait_with(watch.wake_fd(), watch.tick());
        if let Some(status) = reaper::reap_all(Some(daemon)) {
            run_dir.remove(rundir::DOCKER_READY);
            let code = spawn::exit_code(status);
            log(format_args!(
                "the daemon exited by itself with code {code} while the runner may need it"
            ));
            // A supervisor still waiting for Docker must not wait out its
            // whole --docker-wait for a daemon that is gone.
            if let Err(e) = run_dir.write(rundir::DOCKER_EXITED, &format!("{code}\n")) {
                log(format_args!("{e}"));
            }
            return (code & 0xff) as u8;
        }
        for sig in got.into_iter().filter(|s| *s != libc::SIGCHLD) {
            // Decide on the state as it is now, not as it was before the
            // wait: the runner may have started (or ended) meanwhile.
            if let Some(reason) = watch.check(run_dir, config, started) {
                log(format_args!("{reason}: stopping the daemon"));
                return stop_daemon(config, run_dir, sigs, daemon);
            }
            match watch.running() {
                Some(runner) => {
                    if !held {
                        log(format_args!(
                            "{} held back: {runner} still runs; \
                             the daemon stops when it has ended",
                            signals::name(sig),
                        ));
                    }
                    held = true;
                }
                None if !watch.seen() => {
                    log(format_args!(
                        "{} and no runner has started: stopping the daemon",
                        signals::name(sig)
                    ));
                    return stop_daemon(config, run_dir, sigs, daemon);
                }
                // Ended: the next check says how.
                None => {}
            }
        }
    }
}

/// SIGTERM, up to `stop_timeout` for dockerd to stop its containers, then
/// SIGKILL. Exit 0: the pod's work is done.
fn stop_daemon(config: &Args, run_dir: &RunDir, sigs: &SignalPipe, daemon: Pid) -> u8 {
    run_dir.remove(rundir::DOCKER_READY);
    let _ = kill_process(daemon, Signal::TERM);
    let deadline = Instant::now() + config.stop_timeout.duration();
    loop {
        if let Some(status) = reaper::reap_all(Some(daemon)) {
            log(format_args!(
                "daemon stopped (exit {})",
                spawn::exit_code(status)
            ));
            return 0;
        }
        if Instant::now() >= deadline {
            log(format_args!(
                "daemon still running {}s after SIGTERM: SIGKILL",
                config.stop_timeout.duration().as_secs()
            ));
            let _ = kill_process(daemon, Signal::KILL);
            let _ = waitpid(Some(daemon), WaitOptions::empty());
            reaper::reap_all(Some(daemon));
            return 0;
        }
        sigs.wait(Duration::from_millis(100));
    }
}

/// The readiness poller: a thread, so a slow TLS handshake never delays
/// the reaction to a signal or to the runner's end.
struct ReadyReporter {
    stopped: Arc<Mutex<bool>>,
}

impl ReadyReporter {
    fn start(config: Args, run_dir: RunDir, started: Instant) -> Self {
        let stopped = Arc::new(Mutex::new(false));
        let flag = Arc::clone(&stopped);
        let client_dir = config.certs_dir.join("client");
        std::thread::spawn(move || {
            let mut next_report = Duration::from_secs(15);
            loop {
                let result = ping::ping(&config.docker_host, &client_dir);
                // The lock makes "not stopped, so write" one step: no
                // docker.ready can appear after the daemon was stopped.
                let Ok(stopped) = flag.lock() else { return };
                if *stopped {
                    return;
                }
                match result {
                    Ok(()) => {
                        let body = format!("{}\n", config.docker_host);
                        match run_dir.write(rundir::DOCKER_READY, &body) {
                            Ok(()) => log(format_args!(
                                "dockerd answers on {} after {:.2}s: wrote {}",
                                config.docker_host,
                                started.elapsed().as_secs_f64(),
                                run_dir.file(rundir::DOCKER_READY).display()
                            )),
                            Err(e) => log(format_args!("{e}")),
                        }
                        return;
                    }
                    Err(e) if started.elapsed() >= next_report => {
                        log(format_args!(
                            "dockerd does not answer on {} yet ({:.0}s): {e}",
                            config.docker_host,
                            started.elapsed().as_secs_f64()
                        ));
                        next_report += Duration::from_secs(15);
                    }
                    Err(_) => {}
                }
                drop(stopped);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Self { stopped }
    }

    fn stop(self, run_dir: &RunDir) {
        if let Ok(mut s) = self.stopped.lock() {
            *s = true;
        }
        run_dir.remove(rundir::DOCKER_READY);
    }
}

/// Whether the process behind `pidfd` has exited (the fd is readable).
fn exited(pidfd: &OwnedFd) -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(poll(&mut fds, Some(&now)), Ok(n) if n > 0)
}
