//! The shared run directory (`/run/dind-injector`): the only channel between
//! `supervise` (runner container) and `sidecar` (`dind` container).
//!
//! Every file is written atomically (temp name in the same directory, then
//! rename), so a reader in the other container sees either nothing or the
//! whole record, never half of it. Formats are one line of ASCII so that a
//! human with `cat` (and a shell readiness probe) can read them too:
//!
//! - `runner.pid`: `PID STARTTIME` (start time in clock ticks since boot,
//!   field 22 of `/proc/PID/stat`), written by `supervise` at start;
//! - `runner.exit`: the supervisor's exit code, written when it ends;
//! - `docker.ready`: the Docker host URL that answered `GET /_ping`,
//!   written by `sidecar` (in native mode too, where the dind container's
//!   postStart hook `wait-docker` waits for it);
//! - `docker.exited`: the daemon's exit code, written by `sidecar` when the
//!   daemon ended by itself in classic mode, so that a supervisor still
//!   waiting for Docker gives up at once instead of after `--docker-wait`.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::procfs;

pub const RUNNER_PID: &str = "runner.pid";
pub const RUNNER_EXIT: &str = "runner.exit";
pub const DOCKER_READY: &str = "docker.ready";
pub const DOCKER_EXITED: &str = "docker.exited";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create the run directory {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Writes `contents` to `path` atomically with the given mode: a temp file
/// next to it (same filesystem), fsync, chmod, then rename over `path`.
///
/// The run directory is shared with another container, whose processes may
/// plant files in it: the temp file gets a name nobody can predict (PID,
/// time and a counter; the supervisor is often PID 1) and is created with
/// `O_EXCL | O_NOFOLLOW`, so a symlink or file planted under its name makes
/// the write fail (then retried under a new name) instead of writing
/// through it. `rename` replaces a symlink at `path` itself, never its target.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), Error> {
    let err = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    let (tmp, mut file) = create_temp(path).map_err(err)?;
    let result = (|| {
        file.write_all(contents)?;
        // The umask must not decide who can read it: set the mode explicitly.
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
}

/// A new file next to `path`, under a name of its own (see [`write_atomic`]).
fn create_temp(path: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut last = None;
    for _ in 0..8 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = path.with_file_name(format!(".{name}.tmp.{}.{nanos:x}.{n}", std::process::id()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(0o600)
            .open(&tmp)
        {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free temp name")))
}

/// What `/proc` says of a [`RunnerRecord`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    /// Ended, a zombie, or its PID reused.
    Gone,
    /// `/proc/PID/stat` could not be read (why).
    Unknown(String),
}

/// The runner's identity: a PID alone can be reused by an unrelated process
/// once the runner is gone, the pair (PID, start time) cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunnerRecord {
    pub pid: i32,
    pub start_time: u64,
}

impl RunnerRecord {
    /// The record of the calling process.
    pub fn current() -> std::io::Result<Self> {
        let pid = std::process::id() as i32;
        let stat = procfs::stat(pid)?;
        Ok(Self {
            pid,
            start_time: stat.start_time,
        })
    }

    pub fn parse(text: &str) -> Option<Self> {
        let mut words = text.split_ascii_whitespace();
        let pid = words.next()?.parse().ok().filter(|p: &i32| *p > 0)?;
        let start_time = words.next()?.parse().ok()?;
        Some(Self { pid, start_time })
    }

    pub fn format(&self) -> String {
        format!("{} {}\n", self.pid, self.start_time)
    }

    /// Whether this very process still runs (a zombie counts as ended).
    pub fn is_alive(&self) -> bool {
        self.liveness() == Liveness::Alive
    }

    /// Whether this very process still runs, as `/proc` tells: only a
    /// missing entry means gone. An entry that cannot be read (`/proc`
    /// mounted with `hidepid`, the runner another user) says nothing, and
    /// taking it for an end would stop Docker under a live runner.
    pub fn liveness(&self) -> Liveness {
        match procfs::stat(self.pid) {
            Ok(stat) if stat.start_time == self.start_time && stat.state != 'Z' => Liveness::Alive,
            Ok(_) => Liveness::Gone,
            // hidepid=invisible hides other users' entries: ask the kernel.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESRCH)) => {
                let exists = rustix::process::Pid::from_raw(self.pid)
                    .map(rustix::process::test_kill_process);
                match exists {
                    Some(Err(rustix::io::Errno::SRCH)) | None => Liveness::Gone,
                    Some(_) => Liveness::Unknown(format!("{e}, yet the PID exists")),
                }
            }
            Err(e) => Liveness::Unknown(e.to_string()),
        }
    }
}

/// The run directory shared by the runner and `dind` containers.
#[derive(Debug, Clone)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Creates the directory if needed (outside a pod there is no emptyDir).
    pub fn ensure(&self) -> Result<(), Error> {
        std::fs::create_dir_all(&self.path).map_err(|source| Error::Create {
            path: self.path.clone(),
            source,
        })
    }

    pub fn write(&self, name: &str, contents: &str) -> Result<(), Error> {
        // World-readable: the containers may run as different users.
        write_atomic(&self.file(name), contents.as_bytes(), 0o644)
    }

    pub fn remove(&self, name: &str) {
        let _ = std::fs::remove_file(self.file(name));
    }

    pub fn exists(&self, name: &str) -> bool {
        self.file(name).exists()
    }

    /// Waits until `name` exists, checking every `poll`; `false` when
    /// `timeout` passed first. For helpers with nothing else to watch (the
    /// `wait-docker` hook): a stat every few milliseconds costs nothing
    /// next to the latency it saves.
    pub fn wait_for(&self, name: &str, timeout: Duration, poll: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let file = self.file(name);
        loop {
            if file.exists() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            std::thread::sleep(poll.min(deadline - now));
        }
    }

    /// `runner.pid`, if present and well formed.
    pub fn runner(&self) -> Option<RunnerRecord> {
        let text = std::fs::read_to_string(self.file(RUNNER_PID)).ok()?;
        RunnerRecord::parse(&text)
    }

    /// `runner.exit`, if present: the code, or `None` inside when unreadable.
    pub fn runner_exit(&self) -> Option<Option<i32>> {
        let text = std::fs::read_to_string(self.file(RUNNER_EXIT)).ok()?;
        Some(text.trim().parse().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip() {
        let r = RunnerRecord {
            pid: 42,
            start_time: 123456,
        };
        assert_eq!(RunnerRecord::parse(&r.format()), Some(r));
        assert_eq!(RunnerRecord::parse("42"), None);
        assert_eq!(RunnerRecord::parse("0 1"), None);
        assert_eq!(RunnerRecord::parse("x 1"), None);
    }

    #[test]
    fn current_process_is_alive_and_other_start_time_is_not() {
        let me = RunnerRecord::current().unwrap();
        assert!(me.is_alive());
        let reused = RunnerRecord {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(
            !reused.is_alive(),
            "same PID, other start time: not the runner"
        );
    }

    #[test]
    fn wait_for_sees_a_file_written_meanwhile_and_gives_up_at_the_bound() {
        let dir = std::env::temp_dir().join(format!("rundir-wait-{}", std::process::id()));
        let run = RunDir::new(&dir);
        run.ensure().unwrap();
        let start = Instant::now();
        assert!(!run.wait_for(
            DOCKER_READY,
            Duration::from_millis(100),
            Duration::from_millis(10)
        ));
        assert!(start.elapsed() >= Duration::from_millis(100));
        let writer = {
            let run = run.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                run.write(DOCKER_READY, "tcp://localhost:2376\n").unwrap();
            })
        };
        assert!(run.wait_for(
            DOCKER_READY,
            Duration::from_secs(5),
            Duration::from_millis(10)
        ));
        writer.join().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn atomic_write_leaves_no_temp_file() {
        let dir = std::env::temp_dir().join(format!("rundir-test-{}", std::process::id()));
        let run = RunDir::new(&dir);
        run.ensure().unwrap();
        run.write(RUNNER_EXIT, "3\n").unwrap();
        assert_eq!(run.runner_exit(), Some(Some(3)));
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(RUNNER_EXIT)]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
