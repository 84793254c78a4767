//! Why a pod is refused.

use std::borrow::Cow;

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
    /// The pod's (or its namespace's) `dind-injector.io/profile` names no
    /// configured profile.
    UnknownProfile,
    /// A shared directory is outside the configured prefixes, or the runner
    /// mounts there a volume that is not plain storage (it would be mounted
    /// into the privileged daemon as is).
    SharedDirNotAllowed,
}

impl DenyReason {
    pub const ALL: [DenyReason; 8] = [
        Self::InvalidAnnotation,
        Self::HostNetwork,
        Self::RunnerNotFound,
        Self::ReservedMountPath,
        Self::DrainExceedsGrace,
        Self::SharedDirConflict,
        Self::UnknownProfile,
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
            Self::UnknownProfile => "unknown-profile",
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

/// Denial messages quote the pod (annotation values, container names),
/// which can be as large as the request: past this many characters they
/// are cut, so an answer and its log line stay small whatever was sent.
pub const MAX_MESSAGE_CHARS: usize = 512;

impl Denial {
    pub fn new(reason: DenyReason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: cut(&message.into(), MAX_MESSAGE_CHARS).into_owned(),
        }
    }
}

/// `s` cut to at most `max` characters (on a character boundary), the last
/// one `…` when something was cut. Borrowed when nothing is: the review's
/// log line and warnings cut every field, and almost none is long.
pub fn cut(s: &str, max: usize) -> Cow<'_, str> {
    match s.char_indices().nth(max.saturating_sub(1)) {
        Some((end, _)) if s[end..].chars().nth(1).is_some() => {
            Cow::Owned(format!("{}…", &s[..end]))
        }
        _ => Cow::Borrowed(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        assert_eq!(cut("short", 10), "short");
        assert_eq!(cut("exactly10!", 10), "exactly10!");
        assert_eq!(cut("exactly11!!", 10), "exactly11…");
        let long = "é".repeat(100_000);
        let denial = Denial::new(DenyReason::InvalidAnnotation, long);
        assert_eq!(denial.message.chars().count(), MAX_MESSAGE_CHARS);
        assert!(denial.message.ends_with('…'));
    }
}
