//! The mutation engine: pod JSON and config in, a decision out. No I/O.
//!
//! The server, the offline `inject` command and the tests are its only
//! callers. It reads the pod through a borrowed view of just the fields it
//! decides on ([`view::PodView`], from the request's JSON text or from a
//! `Value`) and describes its change as a JSON Patch ([`patch::Changes`])
//! against the pod as it came, so fields it does not know (from any
//! Kubernetes release) pass through untouched, and the webhook never copies
//! the pod nor materialises it as a tree of values.

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
pub mod view;
pub mod workload;

use std::borrow::Cow;

use json_patch::Patch;
use serde_json::{json, Value};

use crate::contract::{self, annotation};
use crate::engine::config::{Config, ConfigError, SidecarMode};
pub use deny::{Denial, DenyReason};
pub use entrypoint::{CommandSource, ImageCommand, Platform, Query};
pub use overrides::AnnotationError;
use patch::Json;
pub use patch::{Changes, EngineBug};
pub use plan::Lookup;
use plan::{Plan, SharedDir};
use pod::ContainerList;
pub use skip::SkipReason;
use view::PodView;

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

/// What the engine decided for one pod. `P` is the patch: a
/// `json_patch::Patch` through the `Value` API, [`Changes`] on the request
/// path.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision<P = Patch> {
    /// Allowed with changes.
    Inject(Injection<P>),
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
pub struct Injection<P = Patch> {
    /// The change to the reviewed pod: only `add`, plus `replace` of the
    /// fields in [`patch::REPLACEABLE`].
    pub patch: P,
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

impl<P> Decision<P> {
    fn skip(reason: SkipReason, warning: Option<String>) -> Self {
        Decision::Skip { reason, warning }
    }

    fn deny(Denial { reason, message }: Denial) -> Self {
        Decision::Deny { reason, message }
    }

    /// The same decision with its patch converted.
    pub fn map_patch<Q, E>(self, f: impl FnOnce(P) -> Result<Q, E>) -> Result<Decision<Q>, E> {
        Ok(match self {
            Decision::Inject(Injection {
                patch,
                command_source,
                unresolved,
                warnings,
                mode,
            }) => Decision::Inject(Injection {
                patch: f(patch)?,
                command_source,
                unresolved,
                warnings,
                mode,
            }),
            Decision::Skip { reason, warning } => Decision::Skip { reason, warning },
            Decision::Deny { reason, message } => Decision::Deny { reason, message },
        })
    }
}

/// The added objects of one shape, as JSON text.
#[derive(Debug, Clone)]
struct TextParts {
    volumes: Vec<String>,
    init: String,
    dind: String,
    runner_mounts: Vec<String>,
}

impl TextParts {
    fn build(config: &Config, shape: &plan::Shape) -> Result<Self, serde_json::Error> {
        let parts = build::parts(config, shape)?;
        let text = |v: &Value| serde_json::to_string(v);
        Ok(TextParts {
            volumes: parts.volumes.iter().map(text).collect::<Result<_, _>>()?,
            init: text(&parts.init)?,
            dind: text(&parts.dind)?,
            runner_mounts: parts
                .runner_mounts
                .iter()
                .map(text)
                .collect::<Result<_, _>>()?,
        })
    }
}

/// Text parts, borrowed from the engine's prebuilt ones or built for one pod.
fn fragments<'a>(parts: Cow<'a, TextParts>) -> (Vec<Json<'a>>, Json<'a>, Json<'a>, Vec<Json<'a>>) {
    match parts {
        Cow::Borrowed(p) => (
            p.volumes
                .iter()
                .map(|s| Cow::Borrowed(s.as_str()))
                .collect(),
            Cow::Borrowed(p.init.as_str()),
            Cow::Borrowed(p.dind.as_str()),
            p.runner_mounts
                .iter()
                .map(|s| Cow::Borrowed(s.as_str()))
                .collect(),
        ),
        Cow::Owned(p) => (
            p.volumes.into_iter().map(Cow::Owned).collect(),
            Cow::Owned(p.init),
            Cow::Owned(p.dind),
            p.runner_mounts.into_iter().map(Cow::Owned).collect(),
        ),
    }
}

/// The engine with its validated configuration.
#[derive(Debug, Clone)]
pub struct Engine {
    config: Config,
    profiles: profile::Profiles,
    auto_mode: Mode,
    /// The parts of the common shapes, built once as JSON text: building
    /// them is most of the engine's work per pod; borrowing them is free.
    prebuilt: Vec<(plan::Shape, TextParts)>,
    /// The Docker variables for the runner, as JSON text, in order.
    runner_env: Vec<(&'static str, String)>,
    /// `"injected"` and `{"dind-injector.io/status":"injected"}`.
    status: (String, String),
}

impl Engine {
    /// `auto_mode` is what `sidecarMode: auto` means here: the server learns
    /// it from the cluster; offline use passes [`Mode::Classic`], which works
    /// on every Kubernetes version.
    pub fn new(config: Config, auto_mode: Mode) -> Result<Self, ConfigError> {
        config.validate()?;
        let cannot = |e: serde_json::Error| ConfigError::Invalid {
            field: "(config)".into(),
            message: format!("cannot build the injected objects: {e}"),
        };
        let profiles = profile::Profiles::new(&config)?;
        let prebuilt = plan::Shape::defaults(&config, profiles.default_profile())
            .into_iter()
            .map(|shape| TextParts::build(&config, &shape).map(|parts| (shape, parts)))
            .collect::<Result<_, _>>()
            .map_err(cannot)?;
        let runner_env = contract::RUNNER_ENV
            .iter()
            .zip(build::docker_env(&[]).map_err(cannot)?)
            .map(|((name, _), var)| serde_json::to_string(&var).map(|t| (*name, t)))
            .collect::<Result<_, _>>()
            .map_err(cannot)?;
        let status_value = serde_json::to_string(contract::STATUS_INJECTED).map_err(cannot)?;
        let status_map =
            serde_json::to_string(&json!({annotation::STATUS: contract::STATUS_INJECTED}))
                .map_err(cannot)?;
        Ok(Self {
            config,
            profiles,
            auto_mode,
            prebuilt,
            runner_env,
            status: (status_value, status_map),
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

    /// Decides for one pod given as a `Value` (`inject`, the tests, and the
    /// webhook's way for what its request path does not take). `Err` only
    /// for a bug in the engine itself.
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
        let view = PodView::from_value(pod);
        if let Some(early) = early(&view) {
            return Ok(early);
        }
        if let Err(problem) = pod::check_shape(pod) {
            return Ok(Decision::skip(
                SkipReason::InvalidPod,
                Some(format!("dind-injector left this pod unchanged: {problem}")),
            ));
        }
        self.decide(&view, namespace_profile, lookup)?
            .map_patch(|changes| changes.to_patch())
    }

    /// Decides for one pod's view (the request path). `Ok(None)` when the
    /// view is not a complete pod: decide on its `Value` instead, whose
    /// shape check names what is missing.
    pub fn review_view<'a>(
        &'a self,
        pod: &PodView<'a>,
        namespace_profile: Option<&str>,
        lookup: &Lookup<'_>,
    ) -> Result<Option<Decision<Changes<'a>>>, EngineBug> {
        if let Some(early) = early(pod) {
            return Ok(Some(early));
        }
        if !pod.is_complete() {
            return Ok(None);
        }
        self.decide(pod, namespace_profile, lookup).map(Some)
    }

    /// The checks after the pod's shape, in order.
    fn decide<'a>(
        &'a self,
        pod: &PodView<'a>,
        namespace_profile: Option<&str>,
        lookup: &Lookup<'_>,
    ) -> Result<Decision<Changes<'a>>, EngineBug> {
        let bad_annotation = |e: AnnotationError| {
            Decision::deny(Denial::new(DenyReason::InvalidAnnotation, e.to_string()))
        };
        let annotations = pod.annotations();
        match overrides::inject_wanted(annotations) {
            Ok(true) => {}
            Ok(false) => return Ok(Decision::skip(SkipReason::OptedOut, None)),
            Err(e) => return Ok(bad_annotation(e)),
        }
        if skip::already_injected(pod) {
            return Ok(Decision::skip(SkipReason::AlreadyInjected, None));
        }
        if let Some(name) = skip::own_daemon(pod) {
            return Ok(Decision::skip(
                SkipReason::OwnDaemon,
                Some(format!(
                    "container {name:?} runs its own Docker daemon; dind-injector left the pod unchanged"
                )),
            ));
        }
        let overrides = match overrides::Overrides::parse(annotations) {
            Ok(o) => o,
            Err(e) => return Ok(bad_annotation(e)),
        };
        if pod.spec_bool(|s| s.host_network) && !self.config.allow_host_network {
            return Ok(Decision::deny(Denial::new(DenyReason::HostNetwork, format!(
                "hostNetwork pods would expose the injected Docker daemon on port {} of the node; \
                 set allowHostNetwork in the dind-injector config, or annotate the pod {}: \"false\"",
                contract::DOCKER_TLS_PORT,
                annotation::INJECT
            ))));
        }
        let dind = match self.profiles.for_pod(&overrides, namespace_profile) {
            Ok(dind) => dind,
            Err(denial) => return Ok(Decision::deny(denial)),
        };
        let plan = match plan::plan(pod, &self.config, dind, overrides, self.auto_mode, lookup) {
            Ok(plan) => plan,
            Err(denial) => return Ok(Decision::deny(denial)),
        };
        self.inject(pod, plan).map(Decision::Inject)
    }

    fn inject<'a>(
        &'a self,
        pod: &PodView<'a>,
        plan: Plan,
    ) -> Result<Injection<Changes<'a>>, EngineBug> {
        let config = &self.config;
        let spec = pod
            .spec()
            .ok_or_else(|| EngineBug::new("the pod has no spec after the shape check"))?;
        let mut r = Changes::with_capacity(24);

        if pod.annotations().is_some() {
            r.set(
                "/metadata/annotations",
                annotation::STATUS,
                false,
                Cow::Borrowed(&self.status.0),
            )?;
        } else {
            r.set(
                "/metadata",
                "annotations",
                false,
                Cow::Borrowed(&self.status.1),
            )?;
        }

        let shape = &plan.shape;
        let parts = match self.prebuilt.iter().find(|(s, _)| s == shape) {
            Some((_, parts)) => Cow::Borrowed(parts),
            None => Cow::Owned(TextParts::build(config, shape)?),
        };
        let (volumes, init_container, dind, runner_mounts) = fragments(parts);
        r.extend("/spec", "volumes", spec.volumes.is_some(), volumes);

        let runner = pod
            .containers()
            .get(plan.runner_index)
            .ok_or_else(|| EngineBug::new("the runner's index is out of range"))?;
        let mut init = vec![init_container];
        if let (Some(dir), Some(SharedDir::Added { volume, .. })) =
            (&plan.externals_copy, &shape.externals)
        {
            init.push(Cow::Owned(build::externals_json(
                runner.image.as_deref(),
                runner.image_pull_policy.as_str(),
                dir,
                volume,
            )?));
        }
        let mut dind = Some(dind);
        if shape.native {
            init.extend(dind.take());
        }
        r.extend(
            "/spec",
            ContainerList::InitContainers.key(),
            spec.init_containers.is_some(),
            init,
        );

        let at = format!("/spec/containers/{}", plan.runner_index);
        if let Some(command) = &plan.wrapped_command {
            let supervised =
                build::supervised_command(plan.drain_timeout, plan.docker_wait, config, command);
            r.set(
                &at,
                "command",
                runner.command.is_some(),
                Cow::Owned(serde_json::to_string(&supervised)?),
            )?;
        }
        let mut env: Vec<_> = self
            .runner_env
            .iter()
            .filter(|(name, _)| !plan.env_kept.contains(name))
            .map(|(_, var)| Cow::Borrowed(var.as_str()))
            .collect();
        if let Some(marker) = build::runner_marker(shape)? {
            env.push(Cow::Owned(serde_json::to_string(&marker)?));
        }
        if let Some(args) = &plan.added_args {
            r.set(
                &at,
                "args",
                runner.args.is_some(),
                Cow::Owned(serde_json::to_string(args)?),
            )?;
        }
        r.extend(&at, "env", runner.env.is_some(), env);
        r.extend(
            &at,
            "volumeMounts",
            runner.volume_mounts.is_some(),
            runner_mounts,
        );

        if let Some(dind) = dind {
            r.extend("/spec", ContainerList::Containers.key(), true, vec![dind]);
        }
        if plan.set_share_process_namespace {
            r.set(
                "/spec",
                "shareProcessNamespace",
                spec.share_process_namespace.is_some(),
                Cow::Borrowed("true"),
            )?;
        }
        if let Some(grace) = plan.raise_grace_to {
            r.set(
                "/spec",
                "terminationGracePeriodSeconds",
                spec.termination_grace_period_seconds.is_some(),
                Cow::Owned(grace.to_string()),
            )?;
        }

        Ok(Injection {
            patch: r,
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

/// The checks before the pod's shape: kind, the runner label, mirror pods.
fn early<P>(pod: &PodView) -> Option<Decision<P>> {
    if pod
        .kind
        .as_ref()
        .is_some_and(|k| k.as_deref() != Some("Pod"))
    {
        return Some(Decision::skip(SkipReason::NotAPod, None));
    }
    if pod.label(contract::RUNNER_LABEL) != Some(contract::RUNNER_LABEL_VALUE) {
        return Some(Decision::skip(SkipReason::NotRunner, None));
    }
    if pod.annotation(contract::MIRROR_POD_ANNOTATION).is_some() {
        return Some(Decision::skip(SkipReason::MirrorPod, None));
    }
    None
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
            let view = PodView::from_value(&without_collision);
            let overrides = overrides::Overrides::parse(view.annotations()).unwrap();
            let dind = engine.profiles.for_pod(&overrides, None).unwrap();
            let shape = plan::plan(
                &view,
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
