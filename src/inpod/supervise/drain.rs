//! "Is a job running?": a process with the drain name (`Runner.Worker`)
//! among the supervisor's descendants. The supervisor is a subreaper, so a
//! worker whose parent died is still found (it is re-parented to us).

use crate::inpod::procfs;

/// The PID of a running drain process below `root`, if any.
pub fn find_worker(root: i32, name: &str) -> Option<i32> {
    let all = procfs::processes();
    procfs::descendants(root, &all)
        .into_iter()
        .find(|p| procfs::has_name(p, name))
        .map(|p| p.pid)
}
