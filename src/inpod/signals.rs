//! Signals as events in a synchronous loop: a self-pipe.
//!
//! The handlers (installed by `signal-hook`, async-signal-safe) only set a
//! flag and write one byte to a socket; the loop sleeps in `poll(2)` on that
//! socket with a timeout and then reads the flags. No signal is lost (the
//! flag is set before the byte is written) and nothing runs in handler
//! context. Handlers, unlike ignored dispositions, are reset by `execve`, so
//! children never inherit them (see [`crate::inpod::spawn`] for the rest).

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustix::event::{poll, PollFd, PollFlags, Timespec};

pub struct SignalPipe {
    read: UnixStream,
    // Kept open for the handlers, which write to its raw fd.
    _write: UnixStream,
    flags: Vec<(i32, Arc<AtomicBool>)>,
}

impl SignalPipe {
    /// Installs handlers for `signals`.
    pub fn new(signals: &[i32]) -> std::io::Result<Self> {
        let (read, write) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        let mut flags = Vec::new();
        for &sig in signals {
            let flag = Arc::new(AtomicBool::new(false));
            // Order matters: flag first, then the wake-up byte.
            signal_hook::flag::register(sig, Arc::clone(&flag))?;
            signal_hook::low_level::pipe::register_raw(sig, write.as_raw_fd())?;
            flags.push((sig, flag));
        }
        Ok(Self {
            read,
            _write: write,
            flags,
        })
    }

    /// Waits until a signal arrives or `timeout` passes; returns the signals
    /// received since the last call, in registration order.
    pub fn wait(&self, timeout: Duration) -> Vec<i32> {
        self.wait_with(None, timeout)
    }

    /// Like [`wait`](Self::wait), but also wakes when `extra` is readable
    /// (a pidfd: the process it refers to has ended).
    pub fn wait_with(&self, extra: Option<&OwnedFd>, timeout: Duration) -> Vec<i32> {
        if !self.any_pending() {
            let ts = Timespec {
                tv_sec: timeout.as_secs().min(i64::MAX as u64) as i64,
                tv_nsec: i64::from(timeout.subsec_nanos()),
            };
            let mut fds = vec![PollFd::new(&self.read, PollFlags::IN)];
            if let Some(fd) = extra {
                fds.push(PollFd::new(fd, PollFlags::IN));
            }
            // EINTR (a signal arrived) is a normal wake-up.
            let _ = poll(&mut fds, Some(&ts));
        }
        self.drain();
        self.take()
    }

    fn any_pending(&self) -> bool {
        self.flags.iter().any(|(_, f)| f.load(Ordering::SeqCst))
    }

    fn drain(&self) {
        let mut buf = [0u8; 64];
        while let Ok(n) = std::io::Read::read(&mut &self.read, &mut buf) {
            if n == 0 {
                break;
            }
        }
    }

    fn take(&self) -> Vec<i32> {
        self.flags
            .iter()
            .filter(|(_, f)| f.swap(false, Ordering::SeqCst))
            .map(|(sig, _)| *sig)
            .collect()
    }
}

/// `TERM`, `SIGTERM`, `15` → 15.
pub fn parse(name: &str) -> Option<i32> {
    if let Ok(n) = name.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    NAMES.iter().find(|(n, _)| *n == bare).map(|(_, s)| *s)
}

/// 15 → `SIGTERM` (or the number).
pub fn name(sig: i32) -> String {
    NAMES
        .iter()
        .find(|(_, s)| *s == sig)
        .map(|(n, _)| format!("SIG{n}"))
        .unwrap_or_else(|| sig.to_string())
}

const NAMES: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("USR2", libc::SIGUSR2),
    ("TERM", libc::SIGTERM),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("WINCH", libc::SIGWINCH),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(parse("TERM"), Some(15));
        assert_eq!(parse("sigint"), Some(2));
        assert_eq!(parse("9"), Some(9));
        assert_eq!(parse("NOPE"), None);
        assert_eq!(parse("0"), None);
        assert_eq!(name(2), "SIGINT");
    }
}
