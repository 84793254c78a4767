//! Property tests: for arbitrary pod shapes carrying arbitrary extra fields,
//! (a) the patch applied to the input gives the engine's output,
//! (b) removing what was injected gives back the input exactly, and nothing
//!     of the input is lost or changed beyond the three replaceable fields,
//! (c) a second pass is a no-op,
//! (d) volume and container names stay unique.

mod common;

use std::collections::HashSet;

use dind_injector::engine::{Decision, Injection, SkipReason};
use json_patch::{Patch, PatchOperation};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

// === generators ===

/// Arbitrary JSON, for fields the engine has never heard of.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[a-z~/ ]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z/~.]{1,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Extra fields from a future Kubernetes release, merged into an object.
fn extras() -> impl Strategy<Value = Vec<(String, Value)>> {
    prop::collection::vec(("future[A-Z][a-z]{0,6}", any_json()), 0..3)
}

fn with_extras(mut obj: Map<String, Value>, extras: Vec<(String, Value)>) -> Value {
    for (k, v) in extras {
        obj.entry(k).or_insert(v);
    }
    Value::Object(obj)
}

const VOLUME_NAMES: &[&str] = &[
    "dind-certs",
    "dind-certs-1",
    "dind-storage",
    "dind-run",
    "dind-injector-bin",
    "dind-work",
    "dind-externals",
    "cache",
    "data",
];
const MOUNT_PATHS: &[&str] = &[
    "/data",
    "/cache",
    "/home/runner/_work",
    "/home/runner/externals",
    "/tmp/x",
];
const ENV_NAMES: &[&str] = &["DOCKER_HOST", "DOCKER_TLS_VERIFY", "FOO", "RUNNER_NAME"];
const IMAGES: &[&str] = &[
    "ghcr.io/actions/actions-runner:2.329.0",
    "example.com/ci/agent:5",
    "busybox:1.37",
];

fn string_list() -> impl Strategy<Value = Option<Value>> {
    prop::option::of(prop::collection::vec("[a-z/.-]{1,12}", 0..3).prop_map(|v| json!(v)))
}

fn container(name: String) -> impl Strategy<Value = Value> {
    (
        prop::sample::select(IMAGES),
        string_list(),
        string_list(),
        prop::option::of(prop::sample::subsequence(ENV_NAMES, 0..3)),
        prop::sample::subsequence(MOUNT_PATHS, 0..3),
        prop::sample::select(VOLUME_NAMES),
        extras(),
    )
        .prop_map(move |(image, command, args, env, mounts, volume, extras)| {
            let mut c = Map::new();
            c.insert("name".into(), json!(name));
            c.insert("image".into(), json!(image));
            if let Some(command) = command {
                c.insert("command".into(), command);
            }
            if let Some(args) = args {
                c.insert("args".into(), args);
            }
            if let Some(env) = env {
                let env: Vec<Value> = env
                    .iter()
                    .map(|n| json!({"name": n, "value": "v"}))
                    .collect();
                c.insert("env".into(), json!(env));
            }
            if !mounts.is_empty() {
                let mounts: Vec<Value> = mounts
                    .iter()
                    .map(|p| json!({"name": volume, "mountPath": p}))
                    .collect();
                c.insert("volumeMounts".into(), json!(mounts));
            }
            with_extras(c, extras)
        })
}

fn containers(names: &'static [&'static str], max: usize) -> impl Strategy<Value = Vec<Value>> {
    prop::sample::subsequence(names, 1..=max)
        .prop_shuffle()
        .prop_flat_map(|names| {
            names
                .into_iter()
                .map(|n| container(n.to_string()))
                .collect::<Vec<_>>()
        })
}

fn annotations() -> impl Strategy<Value = Option<Value>> {
    let pairs = prop::collection::vec(
        prop_oneof![
            ("[a-z]{1,6}\\.io/[a-z]{1,6}", "[a-z0-9 ]{0,6}"),
            Just((
                "dind-injector.io/sidecar-mode".to_string(),
                "native".to_string()
            )),
            Just((
                "dind-injector.io/sidecar-mode".to_string(),
                "classic".to_string()
            )),
            Just((
                "dind-injector.io/drain-timeout".to_string(),
                "60".to_string()
            )),
            Just(("dind-injector.io/work-dir".to_string(), "none".to_string())),
        ],
        0..4,
    );
    prop::option::of(
        pairs.prop_map(|pairs| {
            Value::Object(pairs.into_iter().map(|(k, v)| (k, json!(v))).collect())
        }),
    )
}

prop_compose! {
    fn pod()(
        containers in containers(&["runner", "agent", "web", "sidecar", "log"], 3),
        init in prop::option::of(containers(&["setup", "fetch"], 2)),
        volumes in prop::option::of(prop::sample::subsequence(VOLUME_NAMES, 0..4)),
        null_volumes in prop::bool::weighted(0.1),
        annotations in annotations(),
        host_pid in prop::option::of(any::<bool>()),
        share in prop::option::of(any::<bool>()),
        grace in prop::option::of(0i64..10_000),
        spec_extras in extras(),
        meta_extras in extras(),
        top_extras in extras(),
    ) -> Value {
        let mut spec = Map::new();
        spec.insert("containers".into(), json!(containers));
        if let Some(init) = init {
            spec.insert("initContainers".into(), json!(init));
        }
        if null_volumes {
            spec.insert("volumes".into(), Value::Null);
        } else if let Some(volumes) = volumes {
            let volumes: Vec<Value> = volumes.iter().map(|n| json!({"name": n, "emptyDir": {}})).collect();
            spec.insert("volumes".into(), json!(volumes));
        }
        if let Some(b) = host_pid { spec.insert("hostPID".into(), json!(b)); }
        if let Some(b) = share { spec.insert("shareProcessNamespace".into(), json!(b)); }
        if let Some(g) = grace { spec.insert("terminationGracePeriodSeconds".into(), json!(g)); }
        let mut meta = Map::new();
        meta.insert("generateName".into(), json!("runner-"));
        meta.insert("labels".into(), json!({"runner": "true"}));
        if let Some(a) = annotations { meta.insert("annotations".into(), a); }
        let mut pod = Map::new();
        pod.insert("apiVersion".into(), json!("v1"));
        pod.insert("kind".into(), json!("Pod"));
        pod.insert("metadata".into(), with_extras(meta, meta_extras));
        pod.insert("spec".into(), with_extras(spec, spec_extras));
        with_extras(pod, top_extras)
    }
}

// === checks ===

/// Paths the patch may replace, as patterns over pointer tokens.
fn is_replaceable(path: &str) -> bool {
    let tokens: Vec<&str> = path.split('/').skip(1).collect();
    matches!(
        tokens.as_slice(),
        ["spec", "terminationGracePeriodSeconds"]
            | ["spec", "shareProcessNamespace"]
            | ["spec", "containers", _, "command"]
    )
}

/// Undoes the patch on the output, operation by operation in reverse, using
/// only the input's values for what was replaced.
fn undo(input: &Value, output: &Value, patch: &Patch) -> Value {
    let mut doc = output.clone();
    for op in patch.0.iter().rev() {
        let (path, restore) = match op {
            PatchOperation::Add(add) => {
                (add.path.to_string(), input.pointer(&add.path.to_string()))
            }
            PatchOperation::Replace(rep) => {
                (rep.path.to_string(), input.pointer(&rep.path.to_string()))
            }
            other => panic!("unexpected operation {other:?}"),
        };
        if let Some(parent) = path.strip_suffix("/-") {
            let items = doc
                .pointer_mut(parent)
                .and_then(Value::as_array_mut)
                .expect("array");
            items.pop();
            continue;
        }
        let (parent, key) = path.rsplit_once('/').expect("pointer");
        let key = key.replace("~1", "/").replace("~0", "~");
        let obj = doc
            .pointer_mut(parent)
            .and_then(Value::as_object_mut)
            .expect("object");
        match restore {
            Some(v) => obj.insert(key, v.clone()),
            None => obj.remove(&key),
        };
    }
    doc
}

/// Nothing of the input is lost: every value is still there, arrays only
/// grew at the end, null lists may have become lists, and only the
/// replaceable fields changed, in the allowed direction.
fn contained(input: &Value, output: &Value, path: &str) -> Result<(), String> {
    match (input, output) {
        (Value::Null, Value::Array(_)) => Ok(()),
        (Value::Object(i), Value::Object(o)) => {
            for (k, v) in i {
                let p = format!("{path}/{k}");
                let Some(ov) = o.get(k) else {
                    return Err(format!("{p} was removed"));
                };
                if is_replaceable(&p) && v != ov {
                    check_replacement(&p, v, ov)?;
                } else {
                    contained(v, ov, &p)?;
                }
            }
            Ok(())
        }
        (Value::Array(i), Value::Array(o)) => {
            if o.len() < i.len() {
                return Err(format!("{path} lost elements"));
            }
            i.iter()
                .zip(o)
                .enumerate()
                .try_for_each(|(n, (a, b))| contained(a, b, &format!("{path}/{n}")))
        }
        (a, b) if a == b => Ok(()),
        (a, b) => Err(format!("{path} changed from {a} to {b}")),
    }
}

fn check_replacement(path: &str, old: &Value, new: &Value) -> Result<(), String> {
    let ok = if path.ends_with("/command") {
        let (old, new) = (old.as_array(), new.as_array());
        matches!((old, new), (Some(o), Some(n)) if n.ends_with(o) && n.len() > o.len())
    } else if path.ends_with("terminationGracePeriodSeconds") {
        new.as_i64() >= old.as_i64()
    } else {
        new == &json!(true)
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{path}: {old} replaced by {new}"))
    }
}

fn unique_names(pod: &Value, keys: &[&str]) -> Result<(), String> {
    let mut seen = HashSet::new();
    for key in keys {
        for item in pod["spec"][key].as_array().into_iter().flatten() {
            let name = item["name"].as_str().unwrap_or_default();
            if !seen.insert(name.to_string()) {
                return Err(format!("duplicate name {name:?} in spec.{key}"));
            }
        }
    }
    Ok(())
}

fn check_injection(input: &Value, injection: &Injection) -> Result<(), TestCaseError> {
    let output = injection
        .apply(input)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    // (a) the strict implementation agrees with the engine's own
    prop_assert_eq!(&common::apply(input, &injection.patch), &output);
    // only add, and replace on exactly the allowed paths
    for op in &injection.patch.0 {
        match op {
            PatchOperation::Add(_) => {}
            PatchOperation::Replace(r) => {
                prop_assert!(is_replaceable(&r.path.to_string()), "replace {}", r.path)
            }
            other => prop_assert!(false, "operation {:?} is not allowed", other),
        }
    }
    // (b)
    prop_assert_eq!(&undo(input, &output, &injection.patch), input);
    contained(input, &output, "").map_err(TestCaseError::fail)?;
    // (c)
    let again = common::engine()
        .review(&output)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(
        again,
        Decision::Skip {
            reason: SkipReason::AlreadyInjected,
            warning: None
        }
    );
    // (d)
    unique_names(&output, &["volumes"]).map_err(TestCaseError::fail)?;
    unique_names(&output, &["containers", "initContainers"]).map_err(TestCaseError::fail)?;
    // exactly one daemon, wherever the mode put it
    let dinds = ["containers", "initContainers"]
        .iter()
        .flat_map(|k| output["spec"][k].as_array().into_iter().flatten())
        .filter(|c| c["name"] == "dind")
        .count();
    prop_assert_eq!(dinds, 1);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn injection_is_exact_lossless_and_idempotent(pod in pod()) {
        let decision = common::engine().review(&pod).map_err(|e| TestCaseError::fail(e.to_string()))?;
        match &decision {
            Decision::Inject(injection) => check_injection(&pod, injection)?,
            Decision::Skip { reason, .. } => {
                // The generator only makes runner pods; the one skip it can
                // produce is a container image or command that runs dockerd.
                prop_assert_eq!(*reason, SkipReason::OwnDaemon, "{:?}", decision);
            }
            Decision::Deny { message, .. } => {
                // Denials come from the generated drain/grace combinations,
                // and from mounts at the shared directories of volumes the
                // generated pod does not define (never shared unchecked).
                prop_assert!(
                    message.contains("drain") || message.contains("(not a volume of the pod)"),
                    "unexpected denial: {}",
                    message
                );
            }
        }
    }

    /// Whatever the shape, the engine answers: no panic, no internal error.
    #[test]
    fn arbitrary_json_never_breaks_the_engine(mut v in any_json(), labelled in any::<bool>()) {
        if labelled {
            if let Value::Object(obj) = &mut v {
                obj.insert("metadata".into(), json!({"labels": {"runner": "true"}}));
            }
        }
        prop_assert!(common::engine().review(&v).is_ok());
    }
}

/// The check itself must be able to fail: a patch that drops a field is caught.
#[test]
fn containment_detects_loss() {
    let input = json!({"spec": {"containers": [{"name": "a", "futureX": 1}]}});
    let lost = json!({"spec": {"containers": [{"name": "a"}]}});
    assert!(contained(&input, &lost, "").is_err());
    let changed = json!({"spec": {"containers": [{"name": "a", "futureX": 2}]}});
    assert!(contained(&input, &changed, "").is_err());
}

/// The generator must mostly make pods that get injected, or the properties
/// above would hold vacuously.
#[test]
fn generated_pods_are_mostly_injected() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let engine = common::engine();
    let (mut injected, mut native, mut replaced_command) = (0, 0, 0);
    for _ in 0..300 {
        let pod = pod().new_tree(&mut runner).expect("tree").current();
        if let Ok(Decision::Inject(i)) = engine.review(&pod) {
            injected += 1;
            native += usize::from(i.mode == dind_injector::engine::Mode::Native);
            replaced_command += usize::from(
                i.patch.0.iter().any(|op| matches!(op, PatchOperation::Replace(r) if r.path.to_string().ends_with("/command"))),
            );
        }
    }
    assert!(
        injected >= 150,
        "only {injected}/300 generated pods were injected"
    );
    assert!(
        native >= 20 && native < injected,
        "native: {native} of {injected}"
    );
    assert!(
        replaced_command >= 30,
        "command replaced in only {replaced_command}"
    );
}

proptest! {
    /// The server's whole request path never panics, whatever the bytes,
    /// and any well-formed review is answered with the uid echoed.
    #[test]
    fn arbitrary_reviews_are_answered_or_refused(object in any_json(), bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let engine = common::engine();
        let _ = dind_injector::webhook::admission::review(&engine, &bytes);
        let review = json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "operation": "CREATE", "object": object},
        });
        let body = serde_json::to_vec(&review).expect("json");
        let answer = dind_injector::webhook::admission::review(&engine, &body).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&answer.review["response"]["uid"], "u");
    }
}
