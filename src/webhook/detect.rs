//! Does this cluster have native sidecars? Decided from version strings.
//!
//! Sidecar containers (init containers with `restartPolicy: Always`) are on
//! by default from Kubernetes 1.29 (beta). Both sides must have them: the
//! apiserver (or it drops the field, and `dind` becomes an init container
//! that never ends) and every kubelet (or the pod never starts). Providers
//! decorate versions (`v1.29.0-eks-5e0fdde`, `v1.28.15+k3s1`,
//! `v1.30.2-gke.1587003`); only major and minor count.

use std::fmt;

/// The first release with sidecar containers on by default.
pub const NATIVE_SIDECARS_SINCE: Version = Version {
    major: 1,
    minor: 29,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// `v1.29.0-eks-…`, `1.28.15+k3s1`, `v1.30` → major.minor; `None` when the
/// string does not start with two numbers.
pub fn parse(version: &str) -> Option<Version> {
    let v = version.trim().strip_prefix('v').unwrap_or(version.trim());
    let mut parts = v.split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    // Minor versions like "29+" (GKE's /version `minor` field) lose the '+'.
    let minor = parts.next()?.trim_end_matches('+').parse().ok()?;
    Some(Version { major, minor })
}

/// What `sidecarMode: auto` resolves to, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detected {
    Native {
        apiserver: Version,
        oldest_kubelet: Option<Version>,
    },
    Classic {
        reason: String,
    },
}

/// Decides from the apiserver's `gitVersion` and the nodes' kubelet versions.
/// A cluster without nodes is judged by its apiserver alone (no pod can run
/// there yet; the next periodic check sees the nodes).
pub fn decide(apiserver: &str, kubelets: &[&str]) -> Detected {
    let Some(api) = parse(apiserver) else {
        return Detected::Classic {
            reason: format!("cannot read the apiserver version {apiserver:?}"),
        };
    };
    if api < NATIVE_SIDECARS_SINCE {
        return Detected::Classic {
            reason: format!("apiserver {api} is older than {NATIVE_SIDECARS_SINCE}"),
        };
    }
    let mut oldest: Option<Version> = None;
    for kubelet in kubelets {
        let Some(v) = parse(kubelet) else {
            return Detected::Classic {
                reason: format!("cannot read the kubelet version {kubelet:?}"),
            };
        };
        if v < NATIVE_SIDECARS_SINCE {
            return Detected::Classic {
                reason: format!(
                    "a node runs kubelet {kubelet}, older than {NATIVE_SIDECARS_SINCE}"
                ),
            };
        }
        oldest = Some(oldest.map_or(v, |o| o.min(v)));
    }
    Detected::Native {
        apiserver: api,
        oldest_kubelet: oldest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_versions_parse() {
        let cases = [
            ("v1.29.0-eks-5e0fdde", Some((1, 29))),
            ("v1.28.15+k3s1", Some((1, 28))),
            ("v1.30.2-gke.1587003", Some((1, 30))),
            ("1.31.0", Some((1, 31))),
            ("v1.34", Some((1, 34))),
            (" v1.29.1 ", Some((1, 29))),
            ("v2.0.0-alpha.1", Some((2, 0))),
            ("", None),
            ("v1", None),
            ("vX.29", None),
            ("latest", None),
        ];
        for (s, want) in cases {
            let got = parse(s).map(|v| (v.major, v.minor));
            assert_eq!(got, want, "{s:?}");
        }
    }

    #[test]
    fn native_only_when_every_part_is_new_enough() {
        assert_eq!(
            decide("v1.29.0-eks-5e0fdde", &["v1.29.3-eks-1", "v1.30.0-eks-2"]),
            Detected::Native {
                apiserver: Version {
                    major: 1,
                    minor: 29
                },
                oldest_kubelet: Some(Version {
                    major: 1,
                    minor: 29
                })
            }
        );
        assert_eq!(
            decide("v1.31.1", &[]),
            Detected::Native {
                apiserver: Version {
                    major: 1,
                    minor: 31
                },
                oldest_kubelet: None
            }
        );
        let classic =
            |apiserver: &str, kubelets: &[&str], why: &str| match decide(apiserver, kubelets) {
                Detected::Classic { reason } => assert!(reason.contains(why), "{reason}"),
                other => panic!("{apiserver} {kubelets:?}: {other:?}"),
            };
        classic(
            "v1.28.15+k3s1",
            &["v1.28.15+k3s1"],
            "apiserver 1.28 is older than 1.29",
        );
        // Mixed versions during an upgrade: one old node is enough for classic.
        classic(
            "v1.30.0",
            &["v1.30.0", "v1.28.9-eks-1", "v1.30.0"],
            "kubelet v1.28.9-eks-1",
        );
        classic("weird", &[], "cannot read the apiserver version");
        classic(
            "v1.30.0",
            &["v1.30.0", ""],
            "cannot read the kubelet version",
        );
    }
}
