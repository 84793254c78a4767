//! `sidecar --watch-runner=NAME`: the runner is not supervised (its command
//! is unknown, so nothing writes `runner.pid` or `runner.exit`), yet the
//! daemon must stop when it ends or a Job never completes.
//!
//! The pod shares its PID namespace, so the runner container's processes
//! are visible here; what tells them apart is their cgroup (one per
//! container). The engine sets [`RUNNER_MARKER_ENV`]`=NAME` on the runner
//! container only; the first process seen with it names the cgroup, and
//! the runner has ended when no live process is left in that cgroup. The
//! container's own command may change its environment later (the marker is
//! only needed once), and its children need not carry it.

use crate::contract::RUNNER_MARKER_ENV;
use crate::inpod::procfs;

/// What a look at `/proc` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// No process with the marker yet.
    NotYet,
    /// The runner container has `processes` live processes.
    Running { processes: usize },
    /// The runner container had processes and has none any more.
    Ended,
}

/// The runner container, found by its marker and followed by its cgroup.
#[derive(Debug)]
pub struct ContainerWatch {
    name: String,
    /// This container's cgroups (`/proc/self/cgroup`): its processes (and
    /// dockerd's containers, below it) are never the runner.
    own: Option<String>,
    /// The runner container's cgroups ([`key`]) and the process it was
    /// found by.
    found: Option<(String, i32)>,
}

impl ContainerWatch {
    pub fn new(name: &str) -> Self {
        let own = procfs::cgroup(std::process::id() as i32).ok();
        Self {
            name: name.to_string(),
            own,
            found: None,
        }
    }

    /// The runner container's name (the marker's value).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cgroup it was found in, and the first process seen.
    pub fn found(&self) -> Option<(&str, i32)> {
        self.found.as_ref().map(|(c, pid)| (c.as_str(), *pid))
    }

    /// Reads `/proc` once.
    pub fn look(&mut self) -> Seen {
        let processes: Vec<(i32, String)> = procfs::processes()
            .into_iter()
            .filter(|p| p.state != 'Z')
            .filter_map(|p| {
                let raw = procfs::cgroup(p.pid).ok()?;
                Some((p.pid, raw))
            })
            .collect();
        if self.found.is_none() {
            self.found = processes
                .iter()
                .filter(|(_, cgroup)| !self.own.as_deref().is_some_and(|o| inside(o, cgroup)))
                .find(|(pid, _)| {
                    procfs::environ(*pid)
                        .is_ok_and(|env| has_var(&env, RUNNER_MARKER_ENV, &self.name))
                })
                .and_then(|(pid, cgroup)| Some((key(cgroup)?, *pid)));
        }
        let Some((cgroup, _)) = &self.found else {
            return Seen::NotYet;
        };
        match processes
            .iter()
            .filter(|(_, c)| key(c).as_ref() == Some(cgroup))
            .count()
        {
            0 => Seen::Ended,
            processes => Seen::Running { processes },
        }
    }
}

/// Whether a NUL-separated environment holds exactly `name=value`.
pub fn has_var(environ: &[u8], name: &str, value: &str) -> bool {
    environ.split(|&b| b == 0).any(|entry| {
        entry
            .strip_prefix(name.as_bytes())
            .and_then(|r| r.strip_prefix(b"="))
            == Some(value.as_bytes())
    })
}

/// `/proc/PID/cgroup`'s lines as (hierarchy, path): `0:` + `` for cgroup
/// v2's unified hierarchy, `N:controllers` for each v1 one (a container has
/// its own path in every hierarchy; hybrid hosts list both kinds).
fn hierarchies(raw: &str) -> impl Iterator<Item = (&str, &str)> {
    raw.lines().filter_map(|l| {
        let (id, rest) = l.split_once(':')?;
        let (controllers, path) = rest.split_once(':')?;
        Some((&l[..id.len() + 1 + controllers.len()], path))
    })
}

/// The key a process's cgroups are compared by: all of them, so that
/// hosts whose containers differ in only some hierarchies (v1, hybrid)
/// still tell containers apart. `None` for an empty or malformed file.
pub fn key(raw: &str) -> Option<String> {
    let lines: Vec<String> = hierarchies(raw).map(|(h, p)| format!("{h}:{p}")).collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// Whether the process with cgroups `theirs` is in `own`'s cgroups or
/// below them in every hierarchy (dockerd's containers are below `dind`'s).
pub fn inside(own: &str, theirs: &str) -> bool {
    let mut lines = hierarchies(theirs).peekable();
    lines.peek().is_some()
        && lines.all(|(h, path)| {
            hierarchies(own)
                .find(|(o, _)| *o == h)
                .is_some_and(|(_, own)| path_inside(own, path))
        })
}

/// Whether cgroup `path` is `own` or below it. In a cgroup namespace `own`
/// is `/` and other containers' cgroups show as `/../…`.
fn path_inside(own: &str, path: &str) -> bool {
    if own == "/" {
        return !path.starts_with("/..");
    }
    path == own
        || path
            .strip_prefix(own)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_must_match_exactly() {
        let env = b"PATH=/bin\0DIND_INJECTOR_RUNNER=runner\0HOME=/root\0";
        assert!(has_var(env, "DIND_INJECTOR_RUNNER", "runner"));
        assert!(!has_var(env, "DIND_INJECTOR_RUNNER", "run"));
        assert!(!has_var(env, "DIND_INJECTOR_RUNNE", "R=runner"));
        assert!(!has_var(
            b"XDIND_INJECTOR_RUNNER=runner\0",
            "DIND_INJECTOR_RUNNER",
            "runner"
        ));
        assert!(!has_var(b"", "DIND_INJECTOR_RUNNER", ""));
    }

    #[test]
    fn every_hierarchy_is_part_of_the_key() {
        assert_eq!(
            key("0::/kubepods/pod1/abc\n").as_deref(),
            Some("0::/kubepods/pod1/abc")
        );
        assert_ne!(
            key("4:memory:/k/a\n0::/\n"),
            key("4:memory:/k/b\n0::/\n"),
            "hybrid: containers differ only in the v1 hierarchies"
        );
        assert_eq!(key(""), None);
        assert_eq!(key("garbage"), None);
    }

    #[test]
    fn own_cgroups_and_below_are_not_the_runner() {
        // A cgroup namespace (cgroup v2's default in containerd).
        assert!(inside("0::/\n", "0::/\n"));
        assert!(inside("0::/\n", "0::/docker/abc\n"));
        assert!(!inside("0::/\n", "0::/../runner-ctr\n"));
        // Real paths.
        assert!(inside("0::/k/pod/dind\n", "0::/k/pod/dind/docker/abc\n"));
        assert!(!inside("0::/k/pod/dind\n", "0::/k/pod/dind2\n"));
        assert!(!inside("0::/k/pod/dind\n", "0::/k/pod/runner\n"));
        // Hybrid, unified hierarchy unused: the v1 ones decide.
        let own = "4:memory:/k/pod/dind\n1:cpu:/k/pod/dind\n0::/\n";
        assert!(inside(
            own,
            "4:memory:/k/pod/dind/docker/x\n1:cpu:/k/pod/dind/docker/x\n0::/\n"
        ));
        assert!(!inside(
            own,
            "4:memory:/k/pod/runner\n1:cpu:/k/pod/runner\n0::/\n"
        ));
        // A hierarchy we are not in, or nothing readable: not ours.
        assert!(!inside(own, "9:pids:/k/pod/dind\n"));
        assert!(!inside(own, ""));
    }

    #[test]
    fn this_process_has_a_cgroup() {
        let raw = procfs::cgroup(std::process::id() as i32).unwrap();
        assert!(key(&raw).is_some(), "{raw}");
        assert!(inside(&raw, &raw), "{raw}");
    }
}
