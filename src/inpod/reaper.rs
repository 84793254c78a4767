//! Zombie reaping, for both helpers: as a subreaper the supervisor inherits
//! every orphan below it, and the sidecar's daemon may leave children of
//! its own (dockerd-entrypoint.sh); each must collect them all, not only
//! the child it watches (`wait(2)` = any child; rustix's `waitpid(None)`
//! would mean our own group only).

use rustix::process::{wait, Pid, WaitOptions, WaitStatus};

/// Reaps every exited child; returns the status of `watched` if it was
/// among them.
pub fn reap_all(watched: Option<Pid>) -> Option<WaitStatus> {
    let mut found = None;
    while let Ok(Some((pid, status))) = wait(WaitOptions::NOHANG) {
        if Some(pid) == watched {
            found = Some(status);
        }
    }
    found
}
