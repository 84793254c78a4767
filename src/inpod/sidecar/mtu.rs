//! The daemon's MTU. Docker's bridge defaults to 1500 whatever the pod
//! network uses; on an overlay with a smaller MTU (VXLAN 1450, WireGuard
//! 1420, …) big packets from job containers are silently dropped and
//! `apt-get` or `git clone` hang. So the pod interface's MTU is passed on,
//! unless the daemon's arguments already set it.

use std::path::Path;

use super::dockerd::{Accepted, ProbeError};

/// `--mtu auto|off|N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mtu {
    /// The MTU of the interface that carries the default route.
    Auto,
    /// Leave the daemon's arguments alone.
    Off,
    Value(u32),
}

pub fn parse(s: &str) -> Result<Mtu, String> {
    match s {
        "auto" => Ok(Mtu::Auto),
        "off" => Ok(Mtu::Off),
        n => match n.parse::<u32>() {
            Ok(v) if (68..=65535).contains(&v) => Ok(Mtu::Value(v)),
            _ => Err(format!("{s:?} is not auto, off or an MTU from 68 to 65535")),
        },
    }
}

/// The interface of the IPv4 (else IPv6) default route, never `lo`.
pub fn default_route_interface(proc_net: &Path) -> Option<String> {
    if let Ok(route) = std::fs::read_to_string(proc_net.join("route")) {
        for line in route.lines().skip(1) {
            let f: Vec<&str> = line.split_ascii_whitespace().collect();
            // Iface Destination Gateway Flags …; flag 1 = RTF_UP.
            let up = f
                .get(3)
                .and_then(|x| u32::from_str_radix(x, 16).ok())
                .is_some_and(|x| x & 1 == 1);
            if f.len() > 3 && f[1] == "00000000" && up && f[0] != "lo" {
                return Some(f[0].to_string());
            }
        }
    }
    let v6 = std::fs::read_to_string(proc_net.join("ipv6_route")).ok()?;
    v6.lines().find_map(|line| {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        let iface = *f.last()?;
        (f.len() >= 10 && f[0].bytes().all(|b| b == b'0') && f[1] == "00" && iface != "lo")
            .then(|| iface.to_string())
    })
}

pub fn interface_mtu(sys_class_net: &Path, iface: &str) -> Option<u32> {
    std::fs::read_to_string(sys_class_net.join(iface).join("mtu"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The MTU to pass on, if any.
pub fn resolve(setting: Mtu) -> Option<u32> {
    match setting {
        Mtu::Off => None,
        Mtu::Value(v) => Some(v),
        Mtu::Auto => {
            let iface = default_route_interface(Path::new("/proc/net"))?;
            interface_mtu(Path::new("/sys/class/net"), &iface)
        }
    }
}

/// Whether `argv` starts dockerd (directly or through its entrypoint), so
/// that dockerd flags may be appended.
pub fn runs_dockerd(argv: &[String]) -> bool {
    let base = |s: &String| {
        Path::new(s)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    argv.first().is_some_and(|a| base(a).starts_with("dockerd"))
}

const NETWORK_OPT: &str = "com.docker.network.driver.mtu";

/// Docker's own MTU for the default bridge and for user-defined networks:
/// passing it changes nothing, so nothing is added and no probe is run.
pub const DOCKER_DEFAULT_MTU: u32 = 1500;

/// The daemon flags that set `mtu`, each with the flag name the daemon must
/// accept, leaving out what the arguments already set.
pub fn wanted_mtu_args(argv: &[String], mtu: u32) -> Vec<(&'static str, String)> {
    let args = argv.get(1..).unwrap_or_default();
    let mut out = Vec::new();
    if !args.iter().any(|a| a == "--mtu" || a.starts_with("--mtu=")) {
        out.push(("--mtu", format!("--mtu={mtu}")));
    }
    if !args.iter().any(|a| a.contains(NETWORK_OPT)) {
        out.push((
            "--default-network-opt",
            format!("--default-network-opt=bridge={NETWORK_OPT}={mtu}"),
        ));
    }
    out
}

/// What the sidecar appends for the pod's MTU, and why (for the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MtuArgs {
    pub args: Vec<String>,
    pub notes: Vec<String>,
}

/// Decides the MTU flags for `argv` (a dockerd command): only flags the
/// daemon was seen to accept are added, so a daemon that cannot be asked
/// gets none and still starts. `accepted` runs the probe; it is called
/// only when there is a flag to add.
pub fn decide(
    argv: &[String],
    mtu: u32,
    accepted: impl FnOnce() -> Result<Accepted, ProbeError>,
) -> MtuArgs {
    if mtu == DOCKER_DEFAULT_MTU {
        return MtuArgs {
            args: Vec::new(),
            notes: vec![format!(
                "pod MTU {mtu} is Docker's default: no MTU flag needed"
            )],
        };
    }
    let wanted = wanted_mtu_args(argv, mtu);
    if wanted.is_empty() {
        return MtuArgs {
            args: Vec::new(),
            notes: vec![format!(
                "pod MTU {mtu}: the daemon's arguments already set it"
            )],
        };
    }
    let accepted = match accepted() {
        Ok(a) => a,
        Err(e) => {
            let all: Vec<String> = wanted.into_iter().map(|(_, a)| a).collect();
            return MtuArgs {
                args: Vec::new(),
                notes: vec![format!(
                    "pod MTU {mtu}: cannot tell which flags the daemon accepts ({e}); \
                     adding none of {all:?} so that it starts (set them in dockerdArgs)"
                )],
            };
        }
    };
    let mut out = MtuArgs {
        args: Vec::new(),
        notes: Vec::new(),
    };
    for (flag, arg) in wanted {
        if accepted.has(flag) {
            out.args.push(arg);
        } else {
            out.notes.push(format!(
                "pod MTU {mtu}: this dockerd has no {flag}, not added{}",
                if flag == "--default-network-opt" {
                    " (networks created by jobs keep MTU 1500; dockerd >= 25 has it)"
                } else {
                    ""
                }
            ));
        }
    }
    if !out.args.is_empty() {
        out.notes
            .insert(0, format!("pod MTU {mtu}: {:?}", out.args));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn args(wanted: Vec<(&str, String)>) -> Vec<String> {
        wanted.into_iter().map(|(_, a)| a).collect()
    }

    #[test]
    fn wants_only_what_is_missing() {
        assert_eq!(
            wanted_mtu_args(&v(&["dockerd-entrypoint.sh"]), 1450),
            vec![
                ("--mtu", "--mtu=1450".to_string()),
                (
                    "--default-network-opt",
                    "--default-network-opt=bridge=com.docker.network.driver.mtu=1450".to_string()
                )
            ]
        );
        assert_eq!(
            args(wanted_mtu_args(&v(&["dockerd", "--mtu", "1400"]), 1450)),
            v(&["--default-network-opt=bridge=com.docker.network.driver.mtu=1450"])
        );
        assert_eq!(
            args(wanted_mtu_args(
                &v(&[
                    "dockerd",
                    "--mtu=1400",
                    "--default-network-opt=bridge=com.docker.network.driver.mtu=1400"
                ]),
                1450
            )),
            Vec::<String>::new()
        );
    }

    const HELP_20_10: &str = include_str!("../../../tests/fixtures/dockerd/help-20.10.24.txt");
    const HELP_28_2: &str = include_str!("../../../tests/fixtures/dockerd/help-28.2.2.txt");

    fn help(text: &'static str) -> impl FnOnce() -> Result<Accepted, ProbeError> {
        move || Ok(super::super::dockerd::parse_help(text))
    }

    #[test]
    fn dockerd_28_gets_both_flags() {
        let d = decide(&v(&["dockerd-entrypoint.sh"]), 1450, help(HELP_28_2));
        assert_eq!(
            d.args,
            v(&[
                "--mtu=1450",
                "--default-network-opt=bridge=com.docker.network.driver.mtu=1450"
            ])
        );
    }

    #[test]
    fn dockerd_20_10_gets_mtu_only_and_the_log_says_why() {
        let d = decide(&v(&["dockerd-entrypoint.sh"]), 1450, help(HELP_20_10));
        assert_eq!(d.args, v(&["--mtu=1450"]));
        assert!(
            d.notes
                .iter()
                .any(|n| n.contains("no --default-network-opt")),
            "{:?}",
            d.notes
        );
    }

    #[test]
    fn a_failed_probe_adds_nothing() {
        let d = decide(&v(&["dockerd-entrypoint.sh"]), 1450, || {
            Err(ProbeError::NotOnPath("PATH=/bin".into()))
        });
        assert_eq!(d.args, Vec::<String>::new());
        assert!(d.notes[0].contains("no dockerd on PATH"), "{:?}", d.notes);
    }

    #[test]
    fn no_probe_when_there_is_nothing_to_add() {
        let never = || -> Result<Accepted, ProbeError> { panic!("probed") };
        assert!(decide(&v(&["dockerd"]), 1500, never).args.is_empty());
        let set = v(&[
            "dockerd",
            "--mtu=1400",
            "--default-network-opt=bridge=com.docker.network.driver.mtu=1400",
        ]);
        assert!(decide(&set, 1450, never).args.is_empty());
    }

    #[test]
    fn parses_setting() {
        assert_eq!(parse("auto"), Ok(Mtu::Auto));
        assert_eq!(parse("off"), Ok(Mtu::Off));
        assert_eq!(parse("1450"), Ok(Mtu::Value(1450)));
        assert!(parse("10").is_err());
        assert!(runs_dockerd(&v(&["/usr/local/bin/dockerd-entrypoint.sh"])));
        assert!(!runs_dockerd(&v(&["sh", "-c", "dockerd"])));
    }

    #[test]
    fn reads_the_default_route() {
        let dir = std::env::temp_dir().join(format!("mtu-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("net/eth0")).unwrap();
        std::fs::write(
            dir.join("route"),
            "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n\
             lo\t00000000\t00000000\t0001\t0\t0\t0\t00000000\n\
             eth0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\n",
        )
        .unwrap();
        std::fs::write(dir.join("net/eth0/mtu"), "1450\n").unwrap();
        assert_eq!(default_route_interface(&dir).as_deref(), Some("eth0"));
        assert_eq!(interface_mtu(&dir.join("net"), "eth0"), Some(1450));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
