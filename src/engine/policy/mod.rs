//! `dind-injector policy`: the same injection as admission policies, for
//! clusters that would rather run no webhook (Kubernetes ≥ 1.36,
//! `admissionregistration.k8s.io/v1`).
//!
//! A MutatingAdmissionPolicy does the injection and a
//! ValidatingAdmissionPolicy says no where the webhook would deny, or where
//! the policy cannot do what the webhook does. Everything that is added
//! (volumes, init containers, `dind`, the runner's env and mounts, the
//! supervisor's prefix) is built by the engine's own builders
//! (`engine/build.rs`) from the same configuration and written into the CEL
//! as literals, so the two deliveries cannot drift; CEL decides only what
//! depends on the pod. The differences that remain are listed in
//! `docs/policy.md`.
//!
//! Why JSONPatch and not ApplyConfiguration: an apply configuration may not
//! touch atomic lists, and a container's `command` (ours and the runner's)
//! is one.

mod cel;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::build;
use super::config::{Config, ConfigError, DindConfig, SidecarMode, MAX_SECONDS};
use super::plan::{Shape, SharedDir, SidecarRole};
use super::profile::Profiles;
use super::Mode;
use crate::contract::{self, annotation, container, ANNOTATION_PREFIX};
use cel::{literal, literal_with, string, strings, Holes};

/// The name of all four objects.
pub const NAME: &str = "dind-injector";
const API_VERSION: &str = "admissionregistration.k8s.io/v1";
/// Namespaces never touched, as in the webhook's namespaceSelector.
const SYSTEM_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];
/// The namespace label that opts a whole namespace out.
const NAMESPACE_OPT_OUT_LABEL: &str = "dind-injector.io/injection";

/// Strings in the built externals container that CEL fills from the runner.
const RUNNER_IMAGE_HOLE: &str = "\u{0}runner-image";
const RUNNER_PULL_HOLE: &str = "\u{0}runner-pull-policy";
/// The runner container's name, which a classic sidecar watching an
/// unsupervised runner is given (`--watch-runner=NAME`, and the marker).
const RUNNER_NAME_HOLE: &str = "\u{0}runner-name";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot build the injected objects: {0}")]
    Build(#[from] serde_json::Error),
    #[error(
        "config field namespaceProfiles: admission policies cannot read a namespace's profile; \
         set it to false for the policy delivery (pods get defaultProfile), or use the webhook"
    )]
    NamespaceProfiles,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Config file (the same YAML the webhook reads); defaults apply without it.
    #[arg(long, env = "DIND_INJECTOR_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Overrides the config's sidecarMode. `auto` means native: the API these
    /// policies use exists only where every supported kubelet has native
    /// sidecars.
    #[arg(long, value_parser = SidecarMode::parse_arg)]
    pub mode: Option<SidecarMode>,
    /// Where to write: `-` prints one YAML stream, a directory gets one file
    /// per object.
    #[arg(
        short = 'o',
        long = "output",
        value_name = "DIR|-",
        default_value = "-"
    )]
    pub output: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let config = Config::load_or_default(args.config.as_deref(), args.mode)?;
    let objects = render(&config)?;
    if args.output.as_os_str() == "-" {
        print!("{}", to_yaml(&objects)?);
        return Ok(());
    }
    let dir = &args.output;
    if !dir.is_dir() {
        bail!(
            "output {}: not a directory (or - for stdout)",
            dir.display()
        );
    }
    for object in &objects {
        let kind = object["kind"].as_str().unwrap_or("object").to_lowercase();
        let path = dir.join(format!("{kind}.yaml"));
        std::fs::write(&path, to_yaml(std::slice::from_ref(object))?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// One YAML stream, documents separated by `---`.
pub fn to_yaml(objects: &[Value]) -> Result<String> {
    let mut out = String::new();
    for (i, object) in objects.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&serde_norway::to_string(object).context("cannot write YAML")?);
    }
    Ok(out)
}

/// What `auto` means for a policy: native. MutatingAdmissionPolicy v1 needs
/// an apiserver ≥ 1.36, whose kubelets are ≥ 1.33, all with native sidecars.
pub fn mode(config: &Config) -> Mode {
    Mode::resolve(config.sidecar_mode, Mode::Native)
}

/// The four objects: MutatingAdmissionPolicy and its binding,
/// ValidatingAdmissionPolicy and its binding.
pub fn render(config: &Config) -> Result<Vec<Value>, Error> {
    config.validate()?;
    if config.namespace_profiles {
        return Err(Error::NamespaceProfiles);
    }
    let profiles = Profiles::new(config)?;
    let dind = profiles.default_profile();
    let mode = mode(config);
    let metadata = json!({
        "name": NAME,
        "annotations": {contract::POLICY_CONFIG_ANNOTATION: provenance(config, mode)?},
    });
    let rules = Rules::new(config, dind, mode);
    let match_constraints = json!({
        "resourceRules": [{
            "apiGroups": [""], "apiVersions": ["v1"],
            "operations": ["CREATE"], "resources": ["pods"], "scope": "Namespaced",
        }],
        "matchPolicy": "Equivalent",
        "objectSelector": {"matchLabels": {contract::RUNNER_LABEL: contract::RUNNER_LABEL_VALUE}},
        "namespaceSelector": {"matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": SYSTEM_NAMESPACES},
            {"key": NAMESPACE_OPT_OUT_LABEL, "operator": "NotIn", "values": ["disabled"]},
        ]},
    });
    let condition =
        |(name, expression): &(&str, String)| json!({"name": name, "expression": expression});

    let mutating_conditions: Vec<Value> = rules
        .skips
        .iter()
        .chain(rules.denials.iter().map(|d| &d.check))
        .map(condition)
        .collect();
    let mutating = json!({
        "apiVersion": API_VERSION,
        "kind": "MutatingAdmissionPolicy",
        "metadata": metadata,
        "spec": {
            "matchConstraints": match_constraints,
            "matchConditions": mutating_conditions,
            "variables": variables(config, mode),
            "mutations": mutations(config, dind, mode)?,
            "failurePolicy": "Fail",
            "reinvocationPolicy": "IfNeeded",
        },
    });
    let mutating_binding = json!({
        "apiVersion": API_VERSION,
        "kind": "MutatingAdmissionPolicyBinding",
        "metadata": {"name": NAME},
        "spec": {"policyName": NAME},
    });

    let validations: Vec<Value> = rules
        .denials
        .iter()
        .map(|d| {
            json!({
                "expression": d.check.1,
                "messageExpression": d.message,
                "reason": "Forbidden",
            })
        })
        .chain(std::iter::once(json!({
            // Every check above passed, yet the pod was not injected: the
            // mutating policy is not bound here. A runner without Docker is
            // broken anyway; refuse it, as the webhook's failurePolicy does.
            "expression": "false",
            "message": "dind-injector's MutatingAdmissionPolicy did not inject this runner pod: \
                        is its MutatingAdmissionPolicyBinding in place?",
            "reason": "Forbidden",
        })))
        .collect();
    let validating = json!({
        "apiVersion": API_VERSION,
        "kind": "ValidatingAdmissionPolicy",
        "metadata": metadata,
        "spec": {
            "matchConstraints": match_constraints,
            // The pods the webhook leaves alone, and those the mutating
            // policy injected (they carry the status annotation).
            "matchConditions": rules.skips.iter().map(condition).collect::<Vec<_>>(),
            "validations": validations,
            "failurePolicy": "Fail",
        },
    });
    let validating_binding = json!({
        "apiVersion": API_VERSION,
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": NAME},
        "spec": {"policyName": NAME, "validationActions": ["Deny"]},
    });
    Ok(vec![
        mutating,
        mutating_binding,
        validating,
        validating_binding,
    ])
}

/// The configuration the policies are rendered from, as one line of JSON
/// with the sidecar mode they implement (`auto` resolved), for
/// [`contract::POLICY_CONFIG_ANNOTATION`]. Every field is written, defaults
/// included, so a deployer compares whole configurations, not fragments.
fn provenance(config: &Config, mode: Mode) -> Result<String, Error> {
    let mut effective = config.clone();
    effective.sidecar_mode = match mode {
        Mode::Classic => SidecarMode::Classic,
        Mode::Native => SidecarMode::Native,
    };
    Ok(serde_json::to_string(&effective)?)
}

// === CEL over the pod ===

/// `object.metadata.annotations` has `key`.
fn has_annotation(key: &str) -> String {
    format!(
        "(has(object.metadata.annotations) && {} in object.metadata.annotations)",
        string(key)
    )
}

fn annotation_value(key: &str) -> String {
    format!("object.metadata.annotations[{}]", string(key))
}

/// The first annotation key (sorted: a map's keys come in no order) for
/// which `cond` (over `k`) holds; only evaluated where one does.
fn first_annotation(cond: &str) -> String {
    format!("object.metadata.annotations.filter(k, {cond}).sort()[0]")
}

/// `k` is an annotation of the pod.
fn has_annotation_k() -> String {
    "has(object.metadata.annotations) && k in object.metadata.annotations".into()
}

/// Every annotation key satisfies `cond` (over `k`).
fn all_annotations(cond: &str) -> String {
    format!("(!has(object.metadata.annotations) || object.metadata.annotations.all(k, {cond}))")
}

/// The webhook's message for an invalid annotation value
/// (`AnnotationError`), with CEL for the key and the value.
fn invalid_message(key: &str, expected: &str) -> String {
    format!(
        "\"annotation \" + {key} + \": \\\"\" + object.metadata.annotations[{key}] + \"\\\" is not valid: expected \" + {}",
        string(expected)
    )
}

/// The index of the runner container: the annotated one, else `runner`,
/// else the first (matchConditions cannot use variables, so this is
/// written out wherever it is needed).
fn runner_index() -> String {
    let rc = annotation::RUNNER_CONTAINER;
    format!(
        "({} ? object.spec.containers.map(c, c.name).indexOf({}) : \
         (object.spec.containers.exists(c, c.name == \"runner\") ? \
         object.spec.containers.map(c, c.name).indexOf(\"runner\") : 0))",
        has_annotation(rc),
        annotation_value(rc)
    )
}

fn runner() -> String {
    format!("object.spec.containers[{}]", runner_index())
}

/// The annotated runner container exists (or none is annotated).
fn runner_found() -> String {
    let rc = annotation::RUNNER_CONTAINER;
    format!(
        "(!{} || object.spec.containers.exists(c, c.name == {}))",
        has_annotation(rc),
        annotation_value(rc)
    )
}

/// `c`'s image without digest and tag, as `engine::image::repository`
/// reads it.
fn image_repository(c: &str) -> String {
    let name = format!("(has({c}.image) ? {c}.image : \"\").split(\"@\")[0]");
    format!(
        "({name}.lastIndexOf(\":\") > {name}.lastIndexOf(\"/\") ? \
         {name}.substring(0, {name}.lastIndexOf(\":\")) : {name})"
    )
}

/// `engine::skip::own_daemon` for one container `c`, with regular
/// expressions over the whole reference: the image's last path part
/// contains `dind` (tag and digest aside), or it is `docker` with a tag that
/// does, or the command (else the args) starts `dockerd`.
fn runs_dockerd(c: &str) -> String {
    let dind_name = string(r"^([^@]*/)?[^/:@]*dind[^/:@]*(:[^/@]*)?(@.*)?$");
    let docker_dind_tag = string(r"^([^@]*/)?docker:[^/@]*dind[^/@]*(@.*)?$");
    let dockerd = string(r"(^|/)dockerd(-entrypoint\.sh)?$");
    format!(
        "(has({c}.image) && ({c}.image.matches({dind_name}) || {c}.image.matches({docker_dind_tag}))) || \
         (has({c}.command) && size({c}.command) > 0 ? {c}.command[0].matches({dockerd}) : \
         (has({c}.args) && size({c}.args) > 0 && {c}.args[0].matches({dockerd})))"
    )
}

/// Some container (or init container) satisfies `cond` (over `c`).
fn any_container(cond: &str) -> String {
    format!(
        "(object.spec.containers.exists(c, {cond}) || \
         (has(object.spec.initContainers) && object.spec.initContainers.exists(c, {cond})))"
    )
}

/// A check the webhook (or the policy's limits) turns into a denial: the
/// mutating policy injects only where it holds, the validating policy
/// refuses where it does not, with the message.
struct Denial {
    check: (&'static str, String),
    message: String,
}

struct Rules {
    /// Where the webhook leaves the pod alone (both policies skip).
    skips: Vec<(&'static str, String)>,
    /// In the webhook's order of checks.
    denials: Vec<Denial>,
}

impl Rules {
    fn new(config: &Config, dind: &Arc<DindConfig>, mode: Mode) -> Self {
        let ours = strings(&[container::DIND, container::INIT, container::EXTERNALS]);
        let skips = vec![
            (
                "not-a-mirror-pod",
                format!("!{}", has_annotation(contract::MIRROR_POD_ANNOTATION)),
            ),
            (
                "not-opted-out",
                format!(
                    "!{} || {} != \"false\"",
                    has_annotation(annotation::INJECT),
                    annotation_value(annotation::INJECT)
                ),
            ),
            (
                "not-already-injected",
                format!(
                    "!{} && !{}",
                    has_annotation(annotation::STATUS),
                    any_container(&format!("c.name in {ours}"))
                ),
            ),
            (
                "no-own-docker-daemon",
                format!("!{}", any_container(&runs_dockerd("c"))),
            ),
        ];

        let known = strings(annotation::ALL);
        let is_ours = format!("k.startsWith({})", string(ANNOTATION_PREFIX));
        let unknown = format!("{is_ours} && !(k in {known})");
        let unsupported_keys = strings(UNSUPPORTED);
        let unsupported = format!("k in {unsupported_keys}");
        let rc = annotation::RUNNER_CONTAINER;
        let sm = annotation::SIDECAR_MODE;
        let mut denials = vec![
            Denial {
                check: (
                    "known-annotations",
                    all_annotations(&format!("!({unknown})")),
                ),
                message: invalid_message(
                    &first_annotation(&unknown),
                    &format!(
                        "no such dind-injector annotation; known: {}",
                        annotation::ALL.join(", ")
                    ),
                ),
            },
            Denial {
                check: (
                    "inject-annotation-valid",
                    format!(
                        "!{} || {} in [\"true\", \"false\"]",
                        has_annotation(annotation::INJECT),
                        annotation_value(annotation::INJECT)
                    ),
                ),
                message: invalid_message(&string(annotation::INJECT), "\"true\" or \"false\""),
            },
            Denial {
                check: (
                    "sidecar-mode-annotation-valid",
                    format!(
                        "!{} || {} in [\"classic\", \"native\", \"auto\"]",
                        has_annotation(sm),
                        annotation_value(sm)
                    ),
                ),
                message: invalid_message(&string(sm), SidecarMode::ACCEPTED),
            },
            Denial {
                check: (
                    "runner-container-annotation-valid",
                    format!(
                        "!{} || {} != \"\"",
                        has_annotation(rc),
                        annotation_value(rc)
                    ),
                ),
                message: invalid_message(&string(rc), "the name of one of the pod's containers"),
            },
        ];
        // Values of the seconds overrides are checked as the webhook checks
        // them, so an invalid one gets the webhook's message even though the
        // policy does not honour it.
        for (name, key, min) in SECONDS {
            let v = annotation_value(key);
            denials.push(Denial {
                check: (
                    name,
                    format!(
                        "!{} || ({v}.matches(\"^[0-9]{{1,7}}$\") && int({v}) >= {min} && int({v}) <= {MAX_SECONDS})",
                        has_annotation(key)
                    ),
                ),
                message: invalid_message(
                    &string(key),
                    &format!("a whole number of seconds from {min} to {MAX_SECONDS}"),
                ),
            });
        }
        denials.extend([
            Denial {
                check: (
                    "overrides-supported",
                    all_annotations(&format!("!({unsupported})")),
                ),
                // The first in a fixed order: a map's keys come in no order.
                message: format!(
                    "\"annotation \" + {unsupported_keys}.filter(k, {})[0] + \": not supported by \
                     dind-injector's admission policy (only {} are); remove it, or use the webhook delivery\"",
                    has_annotation_k(),
                    SUPPORTED.join(", ")
                ),
            },
            Denial {
                check: (
                    "sidecar-mode-is-the-policys",
                    format!(
                        "!{} || {} in [\"auto\", {}]",
                        has_annotation(sm),
                        annotation_value(sm),
                        string(mode.as_str())
                    ),
                ),
                message: format!(
                    "\"annotation {sm}: \" + {} + \" is not what dind-injector's admission policy \
                     injects ({} mode); remove it, or use the webhook delivery\"",
                    annotation_value(sm),
                    mode.as_str()
                ),
            },
        ]);
        if !config.allow_host_network {
            denials.push(Denial {
                check: (
                    "not-host-network",
                    "!has(object.spec.hostNetwork) || !object.spec.hostNetwork".into(),
                ),
                message: string(&format!(
                    "hostNetwork pods would expose the injected Docker daemon on port {} of the node; \
                     set allowHostNetwork in the dind-injector config, or annotate the pod {}: \"false\"",
                    contract::DOCKER_TLS_PORT,
                    annotation::INJECT
                )),
            });
        }
        denials.push(Denial {
            check: ("runner-container-exists", runner_found()),
            message: format!(
                "\"annotation {rc}: no container named \\\"\" + {} + \"\\\" in the pod (containers: \" + \
                 object.spec.containers.map(c, c.name).join(\", \") + \")\"",
                annotation_value(rc)
            ),
        });
        let reserved: Vec<String> = contract::RUNNER_RESERVED_PATHS
            .iter()
            .flat_map(|p| [p.to_string(), format!("{p}/")])
            .collect();
        let reserved = strings(&reserved);
        let runner = runner();
        let reserved_mount = format!("m.mountPath in {reserved}");
        denials.push(Denial {
            check: (
                "reserved-paths-free",
                format!(
                    "!{} || !has({runner}.volumeMounts) || !{runner}.volumeMounts.exists(m, {reserved_mount})",
                    runner_found()
                ),
            ),
            message: format!(
                "\"container \\\"\" + {runner}.name + \"\\\" already mounts \" + \
                 {runner}.volumeMounts.filter(m, {reserved_mount})[0].mountPath + \
                 \", which dind-injector needs for Docker's client certificates, coordination and helper binary\""
            ),
        });
        let names = strings(&volume_names(config, dind));
        denials.push(Denial {
            check: (
                "volume-names-free",
                format!("!has(object.spec.volumes) || !object.spec.volumes.exists(v, v.name in {names})"),
            ),
            message: format!(
                "\"volume \" + object.spec.volumes.filter(v, v.name in {names})[0].name + \
                 \": the pod already has a volume of that name, which dind-injector's admission \
                 policy adds (the webhook would pick another name); rename it, or use the webhook delivery\""
            ),
        });
        let shared: Vec<String> = [&config.runner.work_dir, &config.runner.externals_dir]
            .into_iter()
            .flatten()
            .flat_map(|p| [p.clone(), format!("{p}/")])
            .collect();
        if !shared.is_empty() {
            let shared = strings(&shared);
            let shared_mount = format!("m.mountPath in {shared}");
            denials.push(Denial {
                check: (
                    "shared-dirs-not-mounted",
                    format!(
                        "!{} || !has({runner}.volumeMounts) || !{runner}.volumeMounts.exists(m, {shared_mount})",
                        runner_found()
                    ),
                ),
                message: format!(
                    "\"container \\\"\" + {runner}.name + \"\\\" mounts \" + \
                     {runner}.volumeMounts.filter(m, {shared_mount})[0].mountPath + \
                     \" itself; dind-injector's admission policy cannot share that mount with Docker \
                     (the webhook can); use the webhook delivery\""
                ),
            });
        }
        Self { skips, denials }
    }
}

/// The seconds overrides: the name of their check, the key, the minimum.
const SECONDS: [(&str, &str, u32); 3] = [
    (
        "termination-grace-period-annotation-valid",
        annotation::TERMINATION_GRACE_PERIOD,
        1,
    ),
    (
        "drain-timeout-annotation-valid",
        annotation::DRAIN_TIMEOUT,
        0,
    ),
    ("docker-wait-annotation-valid", annotation::DOCKER_WAIT, 0),
];

/// Overrides the policy honours.
const SUPPORTED: &[&str] = &[
    annotation::INJECT,
    annotation::STATUS,
    annotation::SIDECAR_MODE,
    annotation::RUNNER_CONTAINER,
];
/// Overrides the policy refuses: each changes what is built (a command
/// line, a volume) in ways only the engine computes.
const UNSUPPORTED: &[&str] = &[
    annotation::ENTRYPOINT,
    annotation::TERMINATION_GRACE_PERIOD,
    annotation::DRAIN_TIMEOUT,
    annotation::DOCKER_WAIT,
    annotation::STORAGE_SIZE_LIMIT,
    annotation::WORK_DIR,
    annotation::EXTERNALS_DIR,
    annotation::PROFILE,
    annotation::CPU_REQUEST,
    annotation::CPU_LIMIT,
    annotation::MEMORY_REQUEST,
    annotation::MEMORY_LIMIT,
];

/// The names of the volumes the injection adds (never renamed by the policy).
fn volume_names(config: &Config, dind: &Arc<DindConfig>) -> Vec<String> {
    let shape = &Shape::defaults(config, dind)[0];
    let mut names: Vec<String> = shape.volumes.all().cloned().collect();
    for dir in shape.shared_dirs() {
        if let SharedDir::Added { volume, .. } = dir {
            names.push(volume.clone());
        }
    }
    names
}

// === the mutation ===

fn variable(name: &str, expression: String) -> Value {
    json!({"name": name, "expression": expression})
}

fn variables(config: &Config, mode: Mode) -> Vec<Value> {
    let repo = image_repository("variables.runner");
    let mut known = "[]".to_string();
    for k in config.known_images.iter().rev() {
        let test = match k.image.strip_suffix('*') {
            Some(prefix) => format!("{repo}.startsWith({})", string(prefix)),
            None => format!("{repo} == {}", string(&k.image)),
        };
        known = format!("({test} ? {} : {known})", strings(&k.entrypoint));
    }
    let mut vars = vec![
        variable("runnerIndex", runner_index()),
        variable(
            "runner",
            "object.spec.containers[variables.runnerIndex]".into(),
        ),
        variable(
            "runnerPath",
            "\"/spec/containers/\" + string(variables.runnerIndex)".into(),
        ),
        // What the supervisor wraps: the runner's command, else the known
        // entrypoint of its image, else nothing (not supervised).
        variable(
            "command",
            format!(
                "(has(variables.runner.command) && size(variables.runner.command) > 0) ? \
                 variables.runner.command : {known}"
            ),
        ),
        variable("supervised", "size(variables.command) > 0".into()),
    ];
    if mode == Mode::Classic {
        vars.push(variable(
            "shareProcessNamespace",
            "!(has(object.spec.hostPID) && object.spec.hostPID) && \
             !(has(object.spec.shareProcessNamespace) && object.spec.shareProcessNamespace)"
                .into(),
        ));
    }
    vars
}

/// One JSONPatch mutation.
fn mutation(expression: String) -> Value {
    json!({"patchType": "JSONPatch", "jsonPatch": {"expression": expression}})
}

/// Appends `items` (a CEL list) to the list at `path`, creating it if absent.
fn append(has: &str, path: &str, items: &str) -> String {
    format!(
        "has({has}) ? {items}.map(x, JSONPatch{{op: \"add\", path: {path} + \"/-\", value: x}}) : \
         (size({items}) > 0 ? [JSONPatch{{op: \"add\", path: {path}, value: {items}}}] : [])"
    )
}

fn mutations(config: &Config, dind: &Arc<DindConfig>, mode: Mode) -> Result<Vec<Value>, Error> {
    let native = mode == Mode::Native;
    let mut shapes = Shape::defaults(config, dind);
    // Shape::defaults: classic supervised, classic standalone, native,
    // classic watching. A classic runner whose command is not known is
    // watched as the webhook watches it (else its Job would never
    // complete): the sidecar and the marker name the runner container,
    // which CEL fills in.
    shapes[3].sidecar = SidecarRole::WatchRunner(RUNNER_NAME_HOLE.into());
    let (main, unsupervised) = if native {
        (&shapes[2], &shapes[2])
    } else {
        (&shapes[0], &shapes[3])
    };
    let runner_name = Holes(&[(RUNNER_NAME_HOLE, "variables.runner.name")]);
    // `supervised` and `unsupervised` CEL of the same type, one choice.
    let choose = |supervised: String, unsupervised: String| {
        if native {
            supervised
        } else {
            format!("(variables.supervised ? {supervised} : {unsupervised})")
        }
    };
    let parts = build::parts(config, main)?;
    let unsupervised_dind = build::parts(config, unsupervised)?.dind;
    let dind_type = if native {
        "Object.spec.initContainers"
    } else {
        "Object.spec.containers"
    };
    let dind = choose(
        literal(&parts.dind, dind_type),
        literal_with(&unsupervised_dind, dind_type, &runner_name),
    );

    let mut out = Vec::new();
    // The status annotation.
    let status = format!(
        "has(object.metadata.annotations) ? \
         [JSONPatch{{op: \"add\", path: \"/metadata/annotations/\" + jsonpatch.escapeKey({key}), value: {value}}}] : \
         [JSONPatch{{op: \"add\", path: \"/metadata/annotations\", value: {{{key}: {value}}}}}]",
        key = string(annotation::STATUS),
        value = string(contract::STATUS_INJECTED)
    );
    out.push(mutation(status));

    let volumes = literal(&Value::Array(parts.volumes.clone()), "Object.spec.volumes");
    out.push(mutation(append(
        "object.spec.volumes",
        "\"/spec/volumes\"",
        &volumes,
    )));

    let mut init = vec![literal(&parts.init, "Object.spec.initContainers")];
    if let Some(SharedDir::Added { volume, path }) = &main.externals {
        let externals = build::externals_container(
            Some(RUNNER_IMAGE_HOLE),
            Some(RUNNER_PULL_HOLE),
            path,
            volume,
        )?;
        init.push(literal_with(
            &externals,
            "Object.spec.initContainers",
            &Holes(&[
                (RUNNER_IMAGE_HOLE, "variables.runner.image"),
                (RUNNER_PULL_HOLE, "variables.runner.imagePullPolicy"),
            ]),
        ));
    }
    if native {
        init.push(dind.clone());
    }
    out.push(mutation(append(
        "object.spec.initContainers",
        "\"/spec/initContainers\"",
        &format!("[{}]", init.join(", ")),
    )));

    let docker_wait = if native {
        0
    } else {
        config.runner.docker_wait_seconds
    };
    let prefix = build::supervised_command(
        config.runner.drain_timeout_seconds,
        docker_wait,
        config,
        &[],
    );
    out.push(mutation(format!(
        "variables.supervised ? [JSONPatch{{op: \"add\", path: variables.runnerPath + \"/command\", \
         value: {} + variables.command}}] : []",
        strings(&prefix)
    )));

    let env_type = "Object.spec.containers.env";
    let env = choose(
        literal(&Value::Array(build::runner_env(&[], main)?), env_type),
        literal_with(
            &Value::Array(build::runner_env(&[], unsupervised)?),
            env_type,
            &runner_name,
        ),
    );
    let env = format!(
        "{env}.filter(e, !has(variables.runner.env) || !variables.runner.env.exists(x, x.name == e.name))"
    );
    out.push(mutation(append(
        "variables.runner.env",
        "variables.runnerPath + \"/env\"",
        &env,
    )));
    let mounts = literal(
        &Value::Array(parts.runner_mounts.clone()),
        "Object.spec.containers.volumeMounts",
    );
    out.push(mutation(append(
        "variables.runner.volumeMounts",
        "variables.runnerPath + \"/volumeMounts\"",
        &mounts,
    )));

    if !native {
        out.push(mutation(format!(
            "[JSONPatch{{op: \"add\", path: \"/spec/containers/-\", value: {dind}}}]"
        )));
        out.push(mutation(
            "variables.shareProcessNamespace ? \
             [JSONPatch{op: \"add\", path: \"/spec/shareProcessNamespace\", value: true}] : []"
                .into(),
        ));
    }
    let grace = config.min_termination_grace_period_seconds;
    out.push(mutation(format!(
        "!has(object.spec.terminationGracePeriodSeconds) || object.spec.terminationGracePeriodSeconds < {grace} ? \
         [JSONPatch{{op: \"add\", path: \"/spec/terminationGracePeriodSeconds\", value: {grace}}}] : []"
    )));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_means_native_and_classic_stays_classic() {
        let mut config = Config::default();
        assert_eq!(mode(&config), Mode::Native);
        config.sidecar_mode = SidecarMode::Classic;
        assert_eq!(mode(&config), Mode::Classic);
    }

    /// Both policies name the configuration they implement, whole and with
    /// the mode they were rendered in, so a deployer can compare it with its own.
    #[test]
    fn policies_carry_the_configuration_they_were_rendered_from() {
        let mut config = Config::default();
        config.dind.storage_size_limit = Some("20Gi".into());
        for (mode, expected) in [
            (SidecarMode::Auto, SidecarMode::Native),
            (SidecarMode::Classic, SidecarMode::Classic),
        ] {
            config.sidecar_mode = mode;
            let objects = render(&config).unwrap();
            for i in [0, 2] {
                let stamp = objects[i]["metadata"]["annotations"]
                    [contract::POLICY_CONFIG_ANNOTATION]
                    .as_str()
                    .unwrap();
                let read: Config = serde_json::from_str(stamp).unwrap();
                assert_eq!(
                    read,
                    Config {
                        sidecar_mode: expected,
                        ..config.clone()
                    }
                );
            }
            for i in [1, 3] {
                assert!(objects[i]["metadata"].get("annotations").is_none());
            }
        }
    }

    /// Every key is either honoured or refused; none is silently ignored.
    #[test]
    fn every_annotation_is_supported_or_refused() {
        for key in annotation::ALL {
            assert!(
                SUPPORTED.contains(key) != UNSUPPORTED.contains(key),
                "{key}"
            );
        }
    }

    /// The policy cannot read namespaces: it refuses the config rather
    /// than give every pod the default profile silently.
    #[test]
    fn namespace_profiles_are_refused_by_name() {
        let config = Config {
            namespace_profiles: true,
            ..Config::default()
        };
        let err = render(&config).unwrap_err().to_string();
        assert!(err.starts_with("config field namespaceProfiles:"), "{err}");
    }

    /// Every pod gets the default profile, whatever it adds (here a
    /// daemon.json), and the volume-name check knows the added names.
    #[test]
    fn the_default_profile_is_what_is_rendered() {
        let config = Config::from_yaml(
            "profiles:\n  tuned:\n    daemonConfig: {configMap: docker}\ndefaultProfile: tuned\n",
        )
        .unwrap();
        let text = to_yaml(&render(&config).unwrap()).unwrap();
        assert!(
            text.contains("/etc/docker/daemon.json"),
            "no daemon.json mount"
        );
        assert!(
            text.contains(r#""dind-injector-bin", "dind-daemon-config""#),
            "volume-names-free lacks it"
        );
        let default = to_yaml(&render(&Config::default()).unwrap()).unwrap();
        assert!(!default.contains("daemon.json"));
    }

    /// Issue 16: a classic runner whose command is not known is watched as
    /// the webhook watches it (`--watch-runner=NAME`, the marker variable
    /// with its name, the shared PID namespace), never left to a sidecar
    /// that would keep its Job's pod running; native is left as it was.
    #[test]
    fn classic_unsupervised_runners_are_watched_as_by_the_webhook() {
        let expressions = |mode: SidecarMode| {
            let config = Config {
                sidecar_mode: mode,
                ..Config::default()
            };
            let objects = render(&config).unwrap();
            let spec = &objects[0]["spec"];
            let mut all: Vec<String> = spec["mutations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["jsonPatch"]["expression"].as_str().unwrap().to_string())
                .collect();
            all.extend(
                spec["variables"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| format!("{}: {}", v["name"], v["expression"].as_str().unwrap())),
            );
            all
        };
        let watch = format!(
            "\"--{}=\" + variables.runner.name",
            crate::contract::cmdline::flag::WATCH_RUNNER
        );
        let marker = format!(
            "{{name: \"{}\", value: variables.runner.name}}",
            contract::RUNNER_MARKER_ENV
        );
        let classic = expressions(SidecarMode::Classic);
        let dind = classic
            .iter()
            .find(|e| e.starts_with("[JSONPatch{op: \"add\", path: \"/spec/containers/-\""))
            .unwrap();
        assert!(dind.contains(" : Object.spec.containers{"), "{dind}");
        assert!(dind.contains(&watch), "{dind}");
        assert!(!dind.contains("--standalone"), "{dind}");
        let env = classic.iter().find(|e| e.contains("/env")).unwrap();
        assert!(env.contains(&marker), "{env}");
        let share = classic
            .iter()
            .find(|e| e.starts_with("\"shareProcessNamespace\""))
            .unwrap();
        assert!(!share.contains("supervised"), "{share}");
        let native = expressions(SidecarMode::Native).join("\n");
        assert!(!native.contains(contract::RUNNER_MARKER_ENV) && !native.contains(&watch));
    }

    #[test]
    fn the_validating_policy_refuses_exactly_what_the_mutating_one_skips_for() {
        let objects = render(&Config::default()).unwrap();
        let names = |v: &Value| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|c| c["name"].as_str().unwrap_or_default().to_string())
                .collect()
        };
        let mutating = names(&objects[0]["spec"]["matchConditions"]);
        let validating = names(&objects[2]["spec"]["matchConditions"]);
        let checks = objects[2]["spec"]["validations"].as_array().unwrap();
        assert_eq!(mutating.len(), validating.len() + checks.len() - 1);
        assert!(mutating.starts_with(&validating));
        for (condition, validation) in objects[0]["spec"]["matchConditions"]
            .as_array()
            .unwrap()
            .iter()
            .skip(validating.len())
            .zip(checks)
        {
            assert_eq!(condition["expression"], validation["expression"]);
        }
    }
}
