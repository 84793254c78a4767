//! Why a pod is refused.

/// Why the engine refused a pod. The labels are stable: they become the
/// `reason` label of the `denied` metric and of the review log line, and
/// `docs/configuration.md` lists them (`tests/contract.rs` checks it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyReason {
    /// A `dind-injector.io/*` annotation with a value we cannot use, or an
    /// unknown one (a typo must not be silently ignored).
    InvalidAnnotation,
    /// `hostNetwork: true` would put the daemon's port on the node.
    HostNetwork,
    /// The `runner-container` annotation names no container of the pod.
    RunnerNotFound,
    /// The runner already mounts a path the injection needs.
    ReservedMountPath,
    /// The drain does not leave the stop margin of the grace period.
    DrainExceedsGrace,
    /// The work directory and the externals directory are the same path.
    SharedDirConflict,
    /// A shared directory is outside the configured prefixes, or the runner
    /// mounts there a volume that is not plain storage (it would be mounted
    /// into the privileged daemon as is).
    SharedDirNotAllowed,
}

impl DenyReason {
    pub const ALL: [DenyReason; 7] = [
        Self::InvalidAnnotation,
        Self::HostNetwork,
        Self::RunnerNotFound,
        Self::ReservedMountPath,
        Self::DrainExceedsGrace,
        Self::SharedDirConflict,
        Self::SharedDirNotAllowed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidAnnotation => "invalid-annotation",
            Self::HostNetwork => "host-network",
            Self::RunnerNotFound => "runner-not-found",
            Self::ReservedMountPath => "reserved-mount-path",
            Self::DrainExceedsGrace => "drain-exceeds-grace",
            Self::SharedDirConflict => "shared-dir-conflict",
            Self::SharedDirNotAllowed => "shared-dir-not-allowed",
        }
    }
}

impl std::fmt::Display for DenyReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal: the stable reason, and the user-facing message (it ends up in
/// `kubectl` output, so it names what to change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub reason: DenyReason,
    pub message: String,
}

impl Denial {
    pub fn new(reason: DenyReason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}
