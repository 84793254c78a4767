//! Zombie reaping: as a subreaper the supervisor inherits every orphan
//! below it, and must collect them all, not only its direct child
//! (`wait(2)` = any child; rustix's `waitpid(None)` would mean our own group only).

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
