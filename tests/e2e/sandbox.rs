//! The run's own corner of the machine: the suite re-executes itself in new
//! network, mount and PID namespaces, so that everything a real node does —
//! interfaces, iptables rules, mounts, containers, shims — happens where the
//! run alone can see it and ends with it.
//!
//! - Network: only loopback and a veth pair carrying the node's address;
//!   nothing routes off the machine, so a stray pull or DNS query goes nowhere.
//! - Mount: `/` is made shared inside (the kubelet needs mount propagation)
//!   without touching the host's; `/run` is a fresh tmpfs and `/var/log` the
//!   run's directory, so containerd's and the kubelet's fixed paths stay ours.
//! - PID: `tini` is PID 1 and reaps the shims containerd leaves to it; when
//!   the run ends the kernel kills whatever is left in the namespace.
//!
//! The outer process waits and then checks, from the host's side, that the
//! run left nothing behind: no process, mount, cgroup, interface or iptables
//! rule. Cgroups are the one thing namespaces do not contain here (cgroup v1
//! has no cgroup namespace for the kubelet to use), so the node removes its
//! cgroup root itself and the outer check holds it to that.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, ensure, Context, Result};

/// Set in the re-executed suite; its value is the run's directory.
const INSIDE: &str = "DIND_E2E_SANDBOX_DIR";

/// The run's directory, if this process is the suite inside the sandbox.
pub fn inside() -> Option<PathBuf> {
    std::env::var_os(INSIDE).map(PathBuf::from)
}

/// The name of the run's cgroup root, in every v1 hierarchy.
pub fn cgroup_name(dir: &Path) -> String {
    let run = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("{run}.slice")
}

/// The hierarchies the node's cgroups appear in (one directory each under
/// /sys/fs/cgroup): the v1 ones the kubelet uses (`systemd` is the named
/// hierarchy cAdvisor reads) and, on a hybrid host, `unified`, where runc
/// mirrors every container's cgroup; a hierarchy the host lacks is skipped.
pub const CGROUP_HIERARCHIES: &[&str] = &[
    "blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "memory", "pids", "systemd",
    "unified",
];

/// Runs the suite again inside new namespaces and checks, once it is over,
/// that nothing of it is left on the host.
pub fn run_outside(dir: &Path) -> ExitCode {
    let before = match HostState::read() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("e2e: reading the host's state: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let status = Command::new("unshare")
        .args([
            "--net",
            "--mount",
            "--propagation=private",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "tini",
            "-s",
            "--",
        ])
        .arg(std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe")))
        .args(std::env::args_os().skip(1))
        .env(INSIDE, dir)
        .status();
    let code = match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => {
            eprintln!("e2e: the suite inside its namespaces ended with {s}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!(
                "e2e: cannot start the suite in new namespaces (unshare and tini, from util-linux and Debian's tini: `make deps`): {e}"
            );
            return ExitCode::FAILURE;
        }
    };
    match HostState::read().and_then(|after| before.left_behind(&after, dir)) {
        Ok(()) => {
            println!("e2e: nothing left behind on the host (processes, mounts, cgroups, interfaces, iptables rules)");
            code
        }
        Err(e) => {
            eprintln!("e2e: FAILED: the run left things behind on the host:\n{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What the run could leave behind, seen from the host.
struct HostState {
    links: Vec<String>,
    iptables: Vec<String>,
    /// Which of [`FIXED_PATHS`] exist.
    fixed_paths: Vec<&'static str>,
}

/// Where a kubelet, containerd and the CNI plugins write when nothing says
/// otherwise: inside the sandbox these are the run's own.
const FIXED_PATHS: &[&str] = &[
    "/run/containerd",
    "/run/nri",
    "/run/mount",
    "/var/run/netns",
    "/var/lib/kubelet",
    "/var/lib/containerd",
    "/var/lib/cni",
    "/var/log/pods",
    "/var/log/containers",
    "/etc/cni/net.d",
];

impl HostState {
    fn read() -> Result<HostState> {
        Ok(HostState {
            links: lines_of("ip", &["-o", "link", "show"])?
                .into_iter()
                .filter_map(|l| l.split(':').nth(1).map(|n| n.trim().to_string()))
                .collect(),
            iptables: ["iptables-save", "ip6tables-save"]
                .iter()
                .map(|tool| lines_of(tool, &[]))
                .collect::<Result<Vec<_>>>()?
                .concat()
                .into_iter()
                // Counters and the dump's own comments change by themselves.
                .filter(|l| !l.starts_with('#') && !l.starts_with(':'))
                .collect(),
            fixed_paths: FIXED_PATHS
                .iter()
                .copied()
                .filter(|p| Path::new(p).exists())
                .collect(),
        })
    }

    fn left_behind(&self, after: &HostState, dir: &Path) -> Result<()> {
        let mut problems = Vec::new();
        let needle = dir.display().to_string();
        let processes = crate::procs::processes_mentioning(&needle);
        if !processes.is_empty() {
            problems.push(format!("processes:\n{}", processes.join("\n")));
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
        let ours: Vec<&str> = mounts
            .lines()
            .filter(|l| l.contains(&needle) || l.contains("/kubelet/pods/"))
            .collect();
        if !ours.is_empty() {
            problems.push(format!("mounts:\n{}", ours.join("\n")));
        }
        let cgroup = cgroup_name(dir);
        let cgroups: Vec<String> = CGROUP_HIERARCHIES
            .iter()
            .map(|h| Path::new("/sys/fs/cgroup").join(h).join(&cgroup))
            .filter(|p| p.exists())
            .map(|p| p.display().to_string())
            .collect();
        if !cgroups.is_empty() {
            problems.push(format!("cgroups: {}", cgroups.join(", ")));
        }
        for (what, added) in [
            ("network interfaces", added(&self.links, &after.links)),
            ("iptables rules", added(&self.iptables, &after.iptables)),
        ] {
            if !added.is_empty() {
                problems.push(format!("{what}: {added:?}"));
            }
        }
        let paths = added(&self.fixed_paths, &after.fixed_paths);
        if !paths.is_empty() {
            problems.push(format!("files at the node's fixed paths: {paths:?}"));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            bail!("{}", problems.join("\n"))
        }
    }
}

/// What `after` has that `before` had not.
fn added<'a, T: PartialEq>(before: &[T], after: &'a [T]) -> Vec<&'a T> {
    after.iter().filter(|x| !before.contains(x)).collect()
}

fn lines_of(tool: &str, args: &[&str]) -> Result<Vec<String>> {
    Ok(output(tool, args)?.lines().map(String::from).collect())
}

/// Inside the namespaces, before anything starts: loopback up, `/` shared
/// within this mount namespace, fresh `/run`, `/var/log` in the run's
/// directory, and `/var/lib` an overlay whose writes land there too (the
/// kubelet's device-plugin socket has a fixed path under it).
pub fn prepare_inside(dir: &Path) -> Result<()> {
    run("ip", &["link", "set", "lo", "up"])?;
    mount(None, "/", None, None, libc::MS_REC | libc::MS_SHARED)?;
    mount(Some("tmpfs"), "/run", Some("tmpfs"), None, 0)?;
    let logs = dir.join("var-log");
    std::fs::create_dir_all(&logs)?;
    mount(
        Some(&logs.display().to_string()),
        "/var/log",
        None,
        None,
        libc::MS_BIND,
    )?;
    let (upper, work) = (dir.join("var-lib"), dir.join("var-lib.work"));
    std::fs::create_dir_all(&upper)?;
    std::fs::create_dir_all(&work)?;
    let options = format!(
        "lowerdir=/var/lib,upperdir={},workdir={}",
        upper.display(),
        work.display()
    );
    mount(
        Some("overlay"),
        "/var/lib",
        Some("overlay"),
        Some(&options),
        0,
    )?;
    Ok(())
}

pub fn run(tool: &str, args: &[&str]) -> Result<()> {
    output(tool, args).map(drop)
}

/// Runs `tool` to its end; its stdout, or an error with its stderr.
pub fn output(tool: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Result<String> {
    let tool = tool.as_ref();
    let out = Command::new(tool)
        .args(args)
        .output()
        .with_context(|| format!("running {}", tool.to_string_lossy()))?;
    ensure!(
        out.status.success(),
        "{} {}: {}",
        tool.to_string_lossy(),
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn mount(
    source: Option<&str>,
    target: &str,
    fstype: Option<&str>,
    options: Option<&str>,
    flags: u64,
) -> Result<()> {
    let c = |s: &str| CString::new(s).context("a NUL in a mount argument");
    let source = source.map(c).transpose()?;
    let fstype = fstype.map(c).transpose()?;
    let options = options.map(c).transpose()?;
    let target_c = c(target)?;
    // SAFETY: every pointer is a valid NUL-terminated string or null, and
    // they outlive the call.
    let rc = unsafe {
        libc::mount(
            source.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            target_c.as_ptr(),
            fstype.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            flags,
            options
                .as_ref()
                .map_or(std::ptr::null(), |s| s.as_ptr().cast()),
        )
    };
    if rc != 0 {
        bail!(
            "mount {target} ({source:?}, {fstype:?}): {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}
