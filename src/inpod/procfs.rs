//! The few facts the helpers read from `/proc`: a process's parent, state,
//! start time and name. Plain file reads: no ptrace, no capabilities, works
//! in any container that shares the pod's PID namespace.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Fields of `/proc/PID/stat` the helpers use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub pid: i32,
    /// `comm`: the executable's name, truncated by the kernel to 15 bytes.
    pub comm: Vec<u8>,
    pub state: char,
    pub ppid: i32,
    /// Field 22: start time in clock ticks after boot.
    pub start_time: u64,
}

pub fn stat(pid: i32) -> std::io::Result<Stat> {
    let raw = std::fs::read(format!("/proc/{pid}/stat"))?;
    parse_stat(&raw).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("/proc/{pid}/stat is not in the expected format"),
        )
    })
}

/// Parses `/proc/PID/stat`. `comm` may contain spaces and parentheses, so
/// it ends at the *last* `)`.
pub fn parse_stat(raw: &[u8]) -> Option<Stat> {
    let open = raw.iter().position(|&b| b == b'(')?;
    let close = raw.iter().rposition(|&b| b == b')')?;
    let pid = std::str::from_utf8(&raw[..open])
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let comm = raw.get(open + 1..close)?.to_vec();
    let rest = std::str::from_utf8(raw.get(close + 1..)?).ok()?;
    // rest starts at field 3 (state).
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let ppid = fields.get(1)?.parse().ok()?;
    let start_time = fields.get(19)?.parse().ok()?;
    Some(Stat {
        pid,
        comm,
        state,
        ppid,
        start_time,
    })
}

/// `/proc/PID/cgroup`: which cgroup (v2) or cgroups (v1) the process is in.
pub fn cgroup(pid: i32) -> std::io::Result<String> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
}

/// `/proc/PID/environ`: the environment the process was started with
/// (readable by the same user, or with CAP_SYS_PTRACE as in `dind`).
pub fn environ(pid: i32) -> std::io::Result<Vec<u8>> {
    std::fs::read(format!("/proc/{pid}/environ"))
}

/// Every process visible now (processes that vanish while listing are skipped).
pub fn processes() -> Vec<Stat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let name = entry.ok()?.file_name();
        let pid: i32 = name.to_str()?.parse().ok()?;
        stat(pid).ok()
    })
    .collect()
}

/// The processes below `root` (children, grandchildren, …), not `root` itself.
pub fn descendants(root: i32, all: &[Stat]) -> Vec<&Stat> {
    let mut found: Vec<&Stat> = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for p in all.iter().filter(|p| p.ppid == parent && p.pid != root) {
            if !found.iter().any(|f| f.pid == p.pid) {
                found.push(p);
                frontier.push(p.pid);
            }
        }
    }
    found
}

/// Whether process `p` is called `name`: its `comm` (compared on the 15
/// bytes the kernel keeps) or the base name of its `argv[0]` (which is what
/// a .NET or script process is often known by).
pub fn has_name(p: &Stat, name: &str) -> bool {
    let want = name.as_bytes();
    let truncated = &want[..want.len().min(15)];
    if p.comm == truncated && p.state != 'Z' {
        return true;
    }
    if p.state == 'Z' {
        return false;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{}/cmdline", p.pid)) else {
        return false;
    };
    let arg0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
    Path::new(OsStr::from_bytes(arg0))
        .file_name()
        .is_some_and(|n| n.as_bytes() == want)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_comm_with_spaces_and_parentheses() {
        let raw =
            b"1234 (a b) c)) S 1 1234 1234 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 1000 10";
        let s = parse_stat(raw).unwrap();
        assert_eq!(s.pid, 1234);
        assert_eq!(s.comm, b"a b) c)");
        assert_eq!(s.state, 'S');
        assert_eq!(s.ppid, 1);
        assert_eq!(s.start_time, 987654);
    }

    #[test]
    fn reads_this_process() {
        let me = stat(std::process::id() as i32).unwrap();
        assert_eq!(me.pid, std::process::id() as i32);
        assert!(me.start_time > 0);
    }
}
