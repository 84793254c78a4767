//! The mutation engine: pod JSON and config in, a decision out. No I/O.
//!
//! The server, the offline `inject` command and the tests are its only
//! callers. It reads the pod as untyped JSON and describes its change as a
//! JSON Patch built by [`patch::Builder`] against the pod as it came, so
//! fields it does not know (from any Kubernetes release) pass through
//! untouched, and the webhook never copies the pod.

mod build;
pub mod config;
pub mod deny;
pub mod entrypoint;
pub mod image;
pub mod inject;
pub mod overrides;
pub mod patch;
mod plan;
pub mod pod;
pub mod policy;
pub mod profile;
pub mod quantity;
pub mod shared;
pub mod skip;
pub mod workload;

use json_patch::Patch;
use serde_json::{json, Map, Value};

use crate::contract::{self, annotation};
use crate::engine::config::{Config, ConfigError, SidecarMode};
pub use deny::{Denial, DenyReason};
pub use entrypoint::{CommandSource, ImageCommand, Platform, Query};
pub use overrides::AnnotationError;
pub use patch::EngineBug;
pub use plan::Lookup;
use plan::{Plan, SharedDir};
use pod::ContainerList;
pub use skip::SkipReason;

/// How `dind` is attached to the pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A regular container; the lifecycle protocol orders start and stop.
    Classic,
    /// An init container with `restartPolicy: Always` (Kubernetes ≥ 1.29);
    /// the kubelet orders start and stop.
    Native,
}

impl Mode {
    /// What a configured (or annotated) sidecar mode means, given what
    /// `auto` means here.
    pub fn resolve(configured: SidecarMode, auto: Mode) -> Mode {
        match configured {
            SidecarMode::Classic => Mode::Classic,
            SidecarMode::Native => Mode::Native,
            SidecarMode::Auto => auto,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Classic => "classic",
            Mode::Native => "native",
        }
    }
}

/// What the engine decided for one pod.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Allowed with changes.
    Inject(Injection),
    /// Allowed unchanged.
    Skip {
        reason: SkipReason,
        /// Set where the user should hear about it (e.g. the pod runs its own
        /// daemon); `None` for the ordinary cases (not a runner, opted out).
        warning: Option<String>,
    },
    /// Refused. The message is user-facing: it ends up in `kubectl` output.
    Deny { reason: DenyReason, message: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Injection {
    /// The change to the reviewed pod: only `add`, plus `replace` of the
    /// fields in [`patch::REPLACEABLE`].
    pub patch: Patch,
    /// How the runner's command was found.
    pub command_source: CommandSource,
    /// The image lookup that would have found it, when nothing knew it.
    pub unresolved: Option<Query>,
    pub warnings: Vec<String>,
    pub mode: Mode,
}

impl Injection {
    /// The injected pod, as the apiserver will store it (`pod` must be the
    /// pod this injection was decided for).
    pub fn apply(&self, pod: &Value) -> Result<Value, EngineBug> {
        patch::apply(pod, &self.patch)
    }
}

/// The engine with its validated configuration.
#[derive(Debug, Clone)]
pub struct Engine {
    config: Config,
    profiles: profile::Profiles,
    auto_mode: Mode,
    /// The parts of the common shapes, built once: building them is most of
    /// the engine's work per pod, cloning them a fraction of it.
    prebuilt: Vec<(plan::Shape, build::Parts)>,
}

impl Engine {
    /// `auto_mode` is what `sidecarMode: auto` means here: the server learns
    /// it from the cluster; offline use passes [`Mode::Classic`], which works
    /// on every Kubernetes version.
    pub fn new(config: Config, auto_mode: Mode) -> Result<Self, ConfigError> {
        config.validate()?;
        let profiles = profile::Profiles::new(&config)?;
        let prebuilt = plan::Shape::defaults(&config, profiles.default_profile())
            .into_iter()
            .map(|shape| {
                let parts = build::parts(&config, &shape);
                parts.map(|parts| (shape, parts))
            })
            .collect::<Result<_, _>>()
            .map_err(|e| ConfigError::Invalid {
                field: "(config)".into(),
                message: format!("cannot build the injected objects: {e}"),
            })?;
        Ok(Self {
            config,
            profiles,
            auto_mode,
            prebuilt,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// What `sidecarMode: auto` means for this engine.
    pub fn auto_mode(&self) -> Mode {
        self.auto_mode
    }

    /// The same engine with `auto` meaning `mode` (the server's detection
    /// decided; cheap enough to do whenever that decision changes).
    pub fn with_auto_mode(&self, mode: Mode) -> Engine {
        Engine {
            auto_mode: mode,
            ..self.clone()
        }
    }

    /// Decides for one pod. `Err` only for a bug in the engine itself.
    pub fn review(&self, pod: &Value) -> Result<Decision, EngineBug> {
        self.review_with(pod, None, &|_| None)
    }

    /// [`Engine::review`] with what `serve` knows beyond the pod: the
    /// default profile its namespace names (when enabled), and images'
    /// commands (a runner without a command runs its image's).
    pub fn review_with(
        &self,
        pod: &Value,
        namespace_profile: Option<&str>,
        lookup: &Lookup<'_>,
    ) -> Result<Decision, EngineBug> {
        let skip = |reason, warning: Option<String>| Ok(Decision::Skip { reason, warning });
        let deny = |Denial { reason, message }| Ok(Decision::Deny { reason, message });
        let bad_annotation =
            |e: AnnotationError| deny(Denial::new(DenyReason::InvalidAnnotation, e.to_string()));

        if pod.get("kind").is_some_and(|k| k != "Pod") {
            return skip(SkipReason::NotAPod, None);
        }
        if pod::label(pod, contract::RUNNER_LABEL) != Some(contract::RUNNER_LABEL_VALUE) {
            return skip(SkipReason::NotRunner, None);
        }
        if pod::annotation(pod, contract::MIRROR_POD_ANNOTATION).is_some() {
            return skip(SkipReason::MirrorPod, None);
        }
        if let Err(problem) = pod::check_shape(pod) {
            return skip(
                SkipReason::InvalidPod,
                Some(format!("dind-injector left this pod unchanged: {problem}")),
            );
        }
        let annotations = pod::string_map(pod, "annotations");
        match overrides::inject_wanted(annotations) {
            Ok(true) => {}
            Ok(false) => return skip(SkipReason::OptedOut, None),
            Err(e) => return bad_annotation(e),
        }
        if skip::already_injected(pod) {
            return skip(SkipReason::AlreadyInjected, None);
        }
        if let Some(name) = skip::own_daemon(pod) {
            return skip(
                SkipReason::OwnDaemon,
                Some(format!(
                    "container {name:?} runs its own Docker daemon; dind-injector left the pod unchanged"
                )),
            );
        }
        let overrides = match overrides::Overrides::parse(annotations) {
            Ok(o) => o,
            Err(e) => return bad_annotation(e),
        };
        if pod::spec_bool(pod, "hostNetwork") && !self.config.allow_host_network {
            return deny(Denial::new(DenyReason::HostNetwork, format!(
                "hostNetwork pods would expose the injected Docker daemon on port {} of the node; \
                 set allowHostNetwork in the dind-injector config, or annotate the pod {}: \"false\"",
                contract::DOCKER_TLS_PORT,
                annotation::INJECT
            )));
        }
        let dind = match self.profiles.for_pod(&overrides, namespace_profile) {
            Ok(dind) => dind,
            Err(denial) => return deny(denial),
        };
        let plan = match plan::plan(pod, &self.config, dind, overrides, self.auto_mode, lookup) {
            Ok(plan) => plan,
            Err(denial) => return deny(denial),
        };
        self.inject(pod, plan).map(Decision::Inject)
    }

    fn inject(&self, pod: &Value, plan: Plan) -> Result<Injection, EngineBug> {
        let config = &self.config;
        let mut r = patch::Builder::new(pod);

        if pod
            .pointer("/metadata/annotations")
            .is_some_and(Value::is_object)
        {
            r.set(
                "/metadata/annotations",
                annotation::STATUS,
                json!(contract::STATUS_INJECTED),
            )?;
        } else {
            let mut annotations = Map::new();
            annotations.insert(annotation::STATUS.into(), json!(contract::STATUS_INJECTED));
            r.set("/metadata", "annotations", Value::Object(annotations))?;
        }

        let shape = &plan.shape;
        let parts = match self.prebuilt.iter().find(|(s, _)| s == shape) {
            Some((_, parts)) => parts.clone(),
            None => build::parts(config, shape)?,
        };
        r.extend("/spec", "volumes", parts.volumes)?;

        let runner = &pod::containers(pod, ContainerList::Containers)[plan.runner_index];
        let mut init = vec![parts.init];
        if let (Some(dir), Some(SharedDir::Added { volume, .. })) =
            (&plan.externals_copy, &shape.externals)
        {
            init.push(build::externals_container(runner, dir, volume)?);
        }
        let mut dind = Some(parts.dind);
        if shape.native {
            init.extend(dind.take());
        }
        r.extend("/spec", ContainerList::InitContainers.key(), init)?;

        let at = format!("/spec/containers/{}", plan.runner_index);
        if let Some(command) = &plan.wrapped_command {
            let supervised =
                build::supervised_command(plan.drain_timeout, plan.docker_wait, config, command);
            r.set(&at, "command", json!(supervised))?;
        }
        if let Some(args) = &plan.added_args {
            r.set(&at, "args", json!(args))?;
        }
        r.extend(&at, "env", build::runner_env(&plan.env_kept, shape)?)?;
        r.extend(&at, "volumeMounts", parts.runner_mounts)?;

        if let Some(dind) = dind {
            r.extend("/spec", ContainerList::Containers.key(), vec![dind])?;
        }
        if plan.set_share_process_namespace {
            r.set("/spec", "shareProcessNamespace", json!(true))?;
        }
        if let Some(grace) = plan.raise_grace_to {
            r.set("/spec", "terminationGracePeriodSeconds", json!(grace))?;
        }

        Ok(Injection {
            patch: r.finish(),
            command_source: plan.command_source,
            unresolved: plan.unresolved,
            warnings: plan.warnings,
            mode: if shape.native {
                Mode::Native
            } else {
                Mode::Classic
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn runner_pod(annotations: Value, command: bool) -> Value {
        let mut runner = json!({"name": "runner", "image": "example.com/agent:1"});
        if command {
            runner["command"] = json!(["/run.sh"]);
        }
        json!({"metadata": {"labels": {"runner": "true"}, "annotations": annotations},
               "spec": {"containers": [runner], "volumes": [{"name": "dind-certs", "emptyDir": {}}]}})
    }

    /// The prebuilt parts are only a shortcut: with or without them, every
    /// decision is the same, and the common pods do hit them.
    #[test]
    fn prebuilt_parts_change_nothing_but_speed() {
        let engine = Engine::new(Config::default(), Mode::Classic).unwrap();
        let mut fresh = engine.clone();
        fresh.prebuilt.clear();
        let pods = [
            runner_pod(json!({}), true),
            runner_pod(json!({}), false),
            runner_pod(json!({"dind-injector.io/sidecar-mode": "native"}), true),
            runner_pod(json!({"dind-injector.io/storage-size-limit": "5Gi"}), true),
            runner_pod(json!({"dind-injector.io/work-dir": "/w"}), true),
        ];
        let mut hits = 0;
        for pod in &pods {
            let a = engine.review(pod).unwrap();
            assert_eq!(a, fresh.review(pod).unwrap(), "{pod}");
            let mut without_collision = pod.clone();
            without_collision["spec"]["volumes"] = json!([]);
            let Decision::Inject(i) = engine.review(&without_collision).unwrap() else {
                panic!("not injected: {without_collision}");
            };
            assert_eq!(
                Decision::Inject(i.clone()),
                fresh.review(&without_collision).unwrap()
            );
            let overrides =
                overrides::Overrides::parse(pod::string_map(&without_collision, "annotations"))
                    .unwrap();
            let dind = engine.profiles.for_pod(&overrides, None).unwrap();
            let shape = plan::plan(
                &without_collision,
                engine.config(),
                dind,
                overrides,
                Mode::Classic,
                &|_| None,
            )
            .unwrap()
            .shape;
            hits += usize::from(engine.prebuilt.iter().any(|(s, _)| *s == shape));
        }
        assert_eq!(
            hits, 3,
            "the three common shapes are prebuilt, overrides are not"
        );
    }

    /// Issue 16: each way of finding the runner's command, in its order,
    /// and what the registry's answer becomes in the pod.
    #[test]
    fn the_runner_s_command_and_how_it_was_found() {
        let engine = Engine::new(Config::default(), Mode::Classic).unwrap();
        let image = ImageCommand {
            entrypoint: vec!["/entry.sh".into()],
            cmd: vec!["--once".into()],
        };
        let asked = std::cell::RefCell::new(Vec::new());
        let lookup = |q: &Query| {
            asked.borrow_mut().push(q.image.clone());
            Some(image.clone())
        };
        let review = |pod: &Value| {
            let Decision::Inject(i) = engine.review_with(pod, None, &lookup).unwrap() else {
                panic!("not injected: {pod}");
            };
            let stored = i.apply(pod).unwrap();
            (i.command_source, stored["spec"]["containers"][0].clone())
        };
        let (source, _) = review(&runner_pod(json!({}), true));
        assert_eq!(source, CommandSource::Spec);
        let (source, _) = review(&runner_pod(
            json!({"dind-injector.io/entrypoint": "/a.sh"}),
            false,
        ));
        assert_eq!(source, CommandSource::Annotation);
        let mut known = runner_pod(json!({}), false);
        known["spec"]["containers"][0]["image"] = json!("ghcr.io/actions/actions-runner:2");
        assert_eq!(review(&known).0, CommandSource::KnownImage);
        assert!(asked.borrow().is_empty(), "the registry is the last resort");

        let (source, runner) = review(&runner_pod(json!({}), false));
        assert_eq!(source, CommandSource::Registry);
        assert_eq!(asked.borrow().as_slice(), ["example.com/agent:1"]);
        let command = runner["command"].as_array().unwrap();
        assert_eq!(command.last(), Some(&json!("/entry.sh")));
        assert_eq!(runner["args"], json!(["--once"]), "CMD becomes args");
        let mut with_args = runner_pod(json!({}), false);
        with_args["spec"]["containers"][0]["args"] = json!(["--mine"]);
        assert_eq!(review(&with_args).1["args"], json!(["--mine"]));

        let Decision::Inject(none) = engine.review(&runner_pod(json!({}), false)).unwrap() else {
            panic!("not injected");
        };
        assert_eq!(none.command_source, CommandSource::None);
        assert_eq!(
            none.unresolved.map(|q| q.image).as_deref(),
            Some("example.com/agent:1")
        );
    }

    fn denial(engine: &Engine, pod: &Value) -> (DenyReason, String) {
        match engine.review(pod).unwrap() {
            Decision::Deny { reason, message } => (reason, message),
            other => panic!("not denied: {other:?}"),
        }
    }

    /// Issue 13: a runner volume at a shared directory is mounted into the
    /// privileged daemon as is; only plain storage may be.
    #[test]
    fn only_plain_storage_is_shared_with_the_daemon() {
        let engine = Engine::new(Config::default(), Mode::Classic).unwrap();
        for (kind, source) in [
            ("configMap", json!({"name": "tools"})),
            ("hostPath", json!({"path": "/usr/local/bin"})),
            ("secret", json!({"secretName": "s"})),
            ("projected", json!({"sources": []})),
        ] {
            let mut pod = runner_pod(json!({}), true);
            pod["spec"]["volumes"] = json!([{"name": "w", kind: source}]);
            pod["spec"]["containers"][0]["volumeMounts"] =
                json!([{"name": "w", "mountPath": "/home/runner/_work"}]);
            let (reason, message) = denial(&engine, &pod);
            assert_eq!(reason, DenyReason::SharedDirNotAllowed, "{message}");
            assert!(
                message.contains(&format!("\"w\" ({kind}) at /home/runner/_work")),
                "{message}"
            );
        }
        for (kind, source) in [
            ("emptyDir", json!({})),
            ("persistentVolumeClaim", json!({"claimName": "c"})),
        ] {
            let mut pod = runner_pod(json!({}), true);
            pod["spec"]["volumes"] = json!([{"name": "w", kind: source}]);
            pod["spec"]["containers"][0]["volumeMounts"] =
                json!([{"name": "w", "mountPath": "/home/runner/externals/"}]);
            assert!(
                matches!(engine.review(&pod).unwrap(), Decision::Inject(_)),
                "{kind}"
            );
        }
    }

    /// Issue 13: the annotations cannot point the shared directories at the
    /// daemon's own, and the configuration can narrow where they may point.
    #[test]
    fn shared_directory_annotations_are_confined() {
        let engine = Engine::new(Config::default(), Mode::Classic).unwrap();
        let pod = runner_pod(json!({"dind-injector.io/work-dir": "/usr/local/bin"}), true);
        let (reason, message) = denial(&engine, &pod);
        assert_eq!(reason, DenyReason::InvalidAnnotation);
        assert!(message.contains("covers /usr"), "{message}");

        let config = Config::from_yaml("runner:\n  allowedDirPrefixes: [/home/runner]\n").unwrap();
        let engine = Engine::new(config, Mode::Classic).unwrap();
        let pod = runner_pod(json!({"dind-injector.io/externals-dir": "/opt/x"}), true);
        let (reason, message) = denial(&engine, &pod);
        assert_eq!(reason, DenyReason::SharedDirNotAllowed);
        assert!(
            message.contains("dind-injector.io/externals-dir") && message.contains("/home/runner"),
            "{message}"
        );
        let pod = runner_pod(json!({"dind-injector.io/work-dir": "/home/runner/w"}), true);
        assert!(matches!(engine.review(&pod).unwrap(), Decision::Inject(_)));
    }

    /// Issue 13: an explicit `shareProcessNamespace: false` is replaced (the
    /// coordination needs it), and the user is told.
    #[test]
    fn an_explicit_process_namespace_false_is_replaced_with_a_warning() {
        let engine = Engine::new(Config::default(), Mode::Classic).unwrap();
        let mut pod = runner_pod(json!({}), true);
        pod["spec"]["volumes"] = json!([]);
        pod["spec"]["shareProcessNamespace"] = json!(false);
        let Decision::Inject(injection) = engine.review(&pod).unwrap() else {
            panic!("not injected");
        };
        assert_eq!(
            injection.apply(&pod).unwrap()["spec"]["shareProcessNamespace"],
            true
        );
        assert!(
            injection
                .warnings
                .iter()
                .any(|w| w.starts_with("spec.shareProcessNamespace: false replaced by true")),
            "{:?}",
            injection.warnings
        );
        pod["spec"]
            .as_object_mut()
            .unwrap()
            .remove("shareProcessNamespace");
        let Decision::Inject(injection) = engine.review(&pod).unwrap() else {
            panic!("not injected");
        };
        assert!(
            injection
                .warnings
                .iter()
                .all(|w| !w.contains("shareProcessNamespace")),
            "{:?}",
            injection.warnings
        );
    }
}
