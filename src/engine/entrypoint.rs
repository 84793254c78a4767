//! The runner's command when its spec has none: what the engine asks the
//! webhook for, what it gets back, and how the command was found.
//!
//! The engine stays pure: it never reads a registry. It names the image it
//! would need ([`Query`]), and the caller answers from what it already
//! knows (the webhook: its cache of registry look-ups; `inject`: nothing).

use serde_json::Value;

use super::pod;
use super::view::{Container, PodView};

/// How the runner's command was found: the `command_source` of the log
/// line and the `source` label of `dind_injector_runner_commands_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandSource {
    /// The container spec's own `command`.
    Spec,
    /// The `dind-injector.io/entrypoint` annotation.
    Annotation,
    /// The configuration's `knownImages`.
    KnownImage,
    /// The image's ENTRYPOINT and CMD, read from its registry.
    Registry,
    /// Not found: the runner is not supervised (see `plan::SidecarRole`).
    None,
}

impl CommandSource {
    pub const ALL: [CommandSource; 5] = [
        CommandSource::Spec,
        CommandSource::Annotation,
        CommandSource::KnownImage,
        CommandSource::Registry,
        CommandSource::None,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CommandSource::Spec => "spec",
            CommandSource::Annotation => "annotation",
            CommandSource::KnownImage => "known-image",
            CommandSource::Registry => "registry",
            CommandSource::None => "none",
        }
    }
}

/// An image's `config.Entrypoint` and `config.Cmd` (either may be empty).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageCommand {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
}

/// The node platform an image index is resolved for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
}

impl Default for Platform {
    /// What the nodes run unless the pod pins another.
    fn default() -> Self {
        Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)
    }
}

/// What the engine needs looked up: the runner's image, for the platform
/// the pod will run on, and where the credentials for it may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub image: String,
    pub platform: Platform,
    /// `spec.imagePullSecrets[].name`.
    pub pull_secrets: Vec<String>,
    /// `spec.serviceAccountName`, else `default` (its imagePullSecrets count too).
    pub service_account: String,
}

/// The well-known node labels a pod pins its platform with.
const ARCH_LABEL: &str = "kubernetes.io/arch";
const OS_LABEL: &str = "kubernetes.io/os";

impl Query {
    pub fn of(pod: &Value, runner: &Value) -> Query {
        let spec = pod::spec(pod);
        let pull_secrets = spec
            .and_then(|s| s.get("imagePullSecrets"))
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|s| s.get("name").and_then(Value::as_str))
            .filter(|n| !n.is_empty())
            .map(String::from)
            .collect();
        let service_account = spec
            .and_then(|s| s.get("serviceAccountName"))
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .unwrap_or("default")
            .to_string();
        let default = Platform::default();
        Query {
            image: runner
                .get("image")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            platform: Platform {
                os: pinned(pod, OS_LABEL).unwrap_or(default.os),
                architecture: pinned(pod, ARCH_LABEL).unwrap_or(default.architecture),
            },
            pull_secrets,
            service_account,
        }
    }

    /// [`Query::of`] for a pod's view: the few fields it reads, made a
    /// `Value` (only a runner without a known command gets here).
    pub fn of_view(pod: &PodView, runner: &Container) -> Query {
        let mut spec = serde_json::Map::new();
        if let Some(s) = pod.spec() {
            for (key, raw) in [
                ("imagePullSecrets", &s.image_pull_secrets),
                ("serviceAccountName", &s.service_account_name),
                ("nodeSelector", &s.node_selector),
                ("affinity", &s.affinity),
            ] {
                if let Some(raw) = raw {
                    spec.insert(key.to_string(), raw.value());
                }
            }
        }
        let pod = serde_json::json!({"spec": spec});
        let runner = serde_json::json!({"image": runner.image.as_deref()});
        Query::of(&pod, &runner)
    }
}

/// The one value a pod pins `label` to: its nodeSelector, else a required
/// node affinity whose every term says `label In [value]` with that one value.
fn pinned(pod: &Value, label: &str) -> Option<String> {
    let spec = pod.get("spec")?;
    if let Some(v) = spec
        .pointer("/nodeSelector")
        .and_then(|s| s.get(label))
        .and_then(Value::as_str)
    {
        return Some(v.to_string());
    }
    let terms = spec
        .pointer("/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")?
        .as_array()?;
    let mut found: Option<&str> = None;
    for term in terms {
        let value = term
            .get("matchExpressions")
            .and_then(Value::as_array)?
            .iter()
            .find(|e| e.get("key").and_then(Value::as_str) == Some(label))
            .filter(|e| e.get("operator").and_then(Value::as_str) == Some("In"))
            .and_then(|e| e.get("values")?.as_array())
            .filter(|v| v.len() == 1)
            .and_then(|v| v[0].as_str())?;
        if found.is_some_and(|f| f != value) {
            return None;
        }
        found = Some(value);
    }
    found.map(String::from)
}

/// What the runner runs, from the image's config and the pod's `args`:
/// the command to supervise, and the `args` to add when the pod has none
/// (setting `command` makes the kubelet drop the image's CMD). `None` when
/// the image names no program at all.
pub fn from_image(
    image: &ImageCommand,
    pod_args: bool,
) -> Option<(Vec<String>, Option<Vec<String>>)> {
    match (image.entrypoint.is_empty(), pod_args) {
        // The kubelet appends the pod's args to our command, as to the image's.
        (_, true) => Some((image.entrypoint.clone(), None)),
        (false, false) => Some((
            image.entrypoint.clone(),
            (!image.cmd.is_empty()).then(|| image.cmd.clone()),
        )),
        (true, false) if !image.cmd.is_empty() => Some((image.cmd.clone(), None)),
        (true, false) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cmd(e: &[&str], c: &[&str]) -> ImageCommand {
        ImageCommand {
            entrypoint: e.iter().map(|s| s.to_string()).collect(),
            cmd: c.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_image_s_cmd_goes_into_args_only_when_the_pod_has_none() {
        let both = cmd(&["/entry.sh"], &["--once"]);
        assert_eq!(
            from_image(&both, false),
            Some((strings(&["/entry.sh"]), Some(strings(&["--once"]))))
        );
        assert_eq!(
            from_image(&both, true),
            Some((strings(&["/entry.sh"]), None))
        );
        assert_eq!(
            from_image(&cmd(&["/entry.sh"], &[]), false),
            Some((strings(&["/entry.sh"]), None))
        );
        // Only a CMD: it is the program.
        assert_eq!(
            from_image(&cmd(&[], &["/run.sh", "x"]), false),
            Some((strings(&["/run.sh", "x"]), None))
        );
        // Only a CMD and the pod's args: the args are the program.
        assert_eq!(
            from_image(&cmd(&[], &["/run.sh"]), true),
            Some((vec![], None))
        );
        assert_eq!(from_image(&cmd(&[], &[]), false), None);
    }

    #[test]
    fn the_platform_is_amd64_unless_the_pod_pins_another() {
        let runner = json!({"image": "r"});
        let q = Query::of(&json!({"spec": {}}), &runner);
        assert_eq!(q.platform.to_string(), "linux/amd64");
        assert_eq!(q.service_account, "default");
        let pod = json!({"spec": {"nodeSelector": {"kubernetes.io/arch": "arm64"},
            "serviceAccountName": "ci", "imagePullSecrets": [{"name": "a"}, {"name": ""}, {}]}});
        let q = Query::of(&pod, &runner);
        assert_eq!(q.platform.to_string(), "linux/arm64");
        assert_eq!(q.service_account, "ci");
        assert_eq!(q.pull_secrets, vec!["a".to_string()]);
        let affinity = |values: Value| {
            json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/arch", "operator": "In", "values": values}]}]}}}}})
        };
        let q = Query::of(&affinity(json!(["arm64"])), &runner);
        assert_eq!(q.platform.to_string(), "linux/arm64");
        // Two architectures allowed: the default, which a node may be.
        let q = Query::of(&affinity(json!(["arm64", "amd64"])), &runner);
        assert_eq!(q.platform.to_string(), "linux/amd64");
    }
}
