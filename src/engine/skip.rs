//! Why a pod is left alone.

use super::view::{Container, PodView};
use crate::contract::{self, annotation};

/// Why the engine allowed a pod without changing it. The labels are stable:
/// they become the `reason` label of the `skipped` metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// The object is not a Pod.
    NotAPod,
    /// The pod does not carry `runner=true`.
    NotRunner,
    /// A static pod's mirror: the kubelet owns its spec.
    MirrorPod,
    /// `dind-injector.io/inject: "false"`.
    OptedOut,
    /// Injected before (status annotation or one of our containers).
    AlreadyInjected,
    /// The pod runs a Docker daemon of its own.
    OwnDaemon,
    /// The pod is malformed; the apiserver's validation will say how.
    InvalidPod,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotAPod => "not-a-pod",
            Self::NotRunner => "not-a-runner",
            Self::MirrorPod => "mirror-pod",
            Self::OptedOut => "opted-out",
            Self::AlreadyInjected => "already-injected",
            Self::OwnDaemon => "own-daemon",
            Self::InvalidPod => "invalid-pod",
        }
    }

    pub const ALL: [SkipReason; 7] = [
        Self::NotAPod,
        Self::NotRunner,
        Self::MirrorPod,
        Self::OptedOut,
        Self::AlreadyInjected,
        Self::OwnDaemon,
        Self::InvalidPod,
    ];
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

const OUR_CONTAINERS: [&str; 3] = [
    contract::container::DIND,
    contract::container::INIT,
    contract::container::EXTERNALS,
];

/// Whether this pod carries an earlier injection. Any of our container names
/// counts: adding a second one would make the apiserver refuse the pod.
pub fn already_injected(pod: &PodView) -> bool {
    pod.annotation(annotation::STATUS).is_some()
        || pod
            .all_containers()
            .any(|c| OUR_CONTAINERS.contains(&&*c.name))
}

/// The first container that runs a Docker daemon of its own, if any: an image
/// that is a DinD image, or a command that starts dockerd.
pub fn own_daemon<'v>(pod: &'v PodView) -> Option<&'v str> {
    pod.all_containers()
        .find(|c| runs_dockerd(c))
        .map(|c| &*c.name)
}

fn runs_dockerd(container: &Container) -> bool {
    let image = container.image.as_deref().unwrap_or("");
    let repo = crate::engine::image::repository(image);
    let repo_name = repo.rsplit('/').next().unwrap_or(repo);
    let tag = crate::engine::image::tag(image).unwrap_or("");
    let dind_image = repo_name.contains("dind") || (repo_name == "docker" && tag.contains("dind"));
    let program = Container::strings(&container.command)
        .or_else(|| Container::strings(&container.args))
        .and_then(|cmd| cmd.first().copied())
        .map(|p| p.rsplit('/').next().unwrap_or(p));
    dind_image || matches!(program, Some("dockerd" | "dockerd-entrypoint.sh"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn pod_with(container: Value) -> Value {
        json!({"metadata": {}, "spec": {"containers": [{"name": "runner", "image": "ubuntu"}, container]}})
    }

    #[test]
    fn dind_images_and_dockerd_commands_are_own_daemons() {
        for c in [
            json!({"name": "d", "image": "docker:dind"}),
            json!({"name": "d", "image": "docker:27.3-dind-rootless"}),
            json!({"name": "d", "image": "docker.io/library/docker:28-dind@sha256:ab"}),
            json!({"name": "d", "image": "ghcr.io/org/actions-runner-dind:1"}),
            json!({"name": "d", "image": "debian", "command": ["/usr/bin/dockerd"]}),
            json!({"name": "d", "image": "debian", "args": ["dockerd-entrypoint.sh"]}),
        ] {
            let pod = pod_with(c.clone());
            assert_eq!(own_daemon(&PodView::from_value(&pod)), Some("d"), "{c}");
        }
    }

    #[test]
    fn docker_clients_are_not_daemons() {
        for c in [
            json!({"name": "d", "image": "docker:28-cli"}),
            json!({"name": "d", "image": "docker:28"}),
            json!({"name": "d", "image": "registry:5000/dind-tools/cli:1"}),
            json!({"name": "d", "image": "debian", "command": ["docker", "dockerd"]}),
        ] {
            let pod = pod_with(c.clone());
            assert_eq!(own_daemon(&PodView::from_value(&pod)), None, "{c}");
        }
    }

    #[test]
    fn our_container_names_mark_an_injection() {
        let injected = pod_with(json!({"name": "dind-injector-init"}));
        assert!(already_injected(&PodView::from_value(&injected)));
        let other = pod_with(json!({"name": "dind2"}));
        assert!(!already_injected(&PodView::from_value(&other)));
    }
}
