//! The request path (the envelope and the pod read into borrowed views, the
//! answer written from text fragments) against the reference way (the body
//! as a `serde_json::Value`, the engine's `Value` API): the same answer,
//! byte for byte, whatever the pod; and the request path is really taken
//! for the pods the apiserver sends.

mod common;

use dind_injector::engine::view::PodView;
use dind_injector::engine::Decision;
use dind_injector::webhook::admission;
use proptest::prelude::*;
use serde_json::{json, Value};

fn review_of(object: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "ci", "operation": "CREATE", "dryRun": false,
            "object": object,
        },
    }))
    .expect("json")
}

/// Both ways give the same answer, outcome, subject and detail.
fn same_answer(body: &[u8]) -> Result<(), TestCaseError> {
    let engine = common::engine();
    match (
        admission::answer(&engine, body),
        admission::review(&engine, body),
    ) {
        (Ok(fast), Ok(reference)) => {
            let reference_json = serde_json::to_vec(&reference.review).expect("json");
            prop_assert_eq!(
                String::from_utf8_lossy(&fast.json),
                String::from_utf8_lossy(&reference_json)
            );
            prop_assert_eq!(fast.outcome, reference.outcome);
            prop_assert_eq!(&fast.subject, &reference.subject);
            prop_assert_eq!(&fast.detail, &reference.detail);
        }
        (Err(a), Err(b)) => prop_assert_eq!(a, b),
        (a, b) => prop_assert!(false, "{:?} vs {:?}", a, b),
    }
    Ok(())
}

fn fixtures() -> Vec<(String, Value)> {
    let mut out = common::pod_fixtures();
    out.push((
        "bench-runner-pod".into(),
        common::read_json(&common::root().join("tests/fixtures/bench-runner-pod.json")),
    ));
    out
}

#[test]
fn every_fixture_takes_the_request_path_and_agrees() {
    let engine = common::engine();
    for (name, pod) in fixtures() {
        let text = serde_json::to_string(&pod).expect("json");
        let view = PodView::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let fast = engine
            .review_view(&view, None, &|_| None)
            .expect("engine")
            .unwrap_or_else(|| panic!("{name}: the request path declined"));
        let reference = engine.review(&pod).expect("engine");
        if let (Decision::Inject(f), Decision::Inject(r)) = (&fast, &reference) {
            let mut written = Vec::new();
            f.patch.write_json(&mut written).expect("write");
            assert_eq!(
                String::from_utf8(written).unwrap(),
                serde_json::to_string(&r.patch).unwrap(),
                "{name}"
            );
        }
        let fast = fast.map_patch(|c| c.to_patch()).expect("patch");
        assert_eq!(fast, reference, "{name}");
        same_answer(&review_of(pod)).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

/// The answer as the webhook wrote it before the request path (a `Value`
/// built key by key), for each kind of answer.
#[test]
fn answers_are_written_as_before() {
    let engine = common::engine();
    let pod = |annotations: Value, spec: Value| {
        json!({"metadata": {"name": "p", "labels": {"runner": "true"}, "annotations": annotations},
               "spec": spec})
    };
    let runner = json!({"containers": [{"name": "runner", "image": "r", "command": ["/run.sh"]}]});
    let cases = [
        // injected, with a warning
        pod(
            json!({}),
            json!({"containers": [{"name": "runner", "image": "r"}]}),
        ),
        // denied
        pod(
            json!({"dind-injector.io/drain-timeout": "x"}),
            runner.clone(),
        ),
        // skipped without a warning, and with one
        pod(json!({"dind-injector.io/inject": "false"}), runner),
        pod(json!({}), json!({"containers": "x"})),
    ];
    for object in cases {
        let body = review_of(object.clone());
        let a = admission::answer(&engine, &body).expect("answer");
        let got: Value = serde_json::from_slice(&a.json).expect("json");
        let r = &got["response"];
        let mut expected = json!({"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "allowed": true});
        match engine.review(&object).expect("engine") {
            Decision::Inject(i) => {
                expected["patchType"] = json!("JSONPatch");
                expected["patch"] = r["patch"].clone();
                let bytes = base64_decode(r["patch"].as_str().expect("patch"));
                assert_eq!(bytes, serde_json::to_vec(&i.patch).unwrap());
                if !i.warnings.is_empty() {
                    expected["warnings"] =
                        json!(i.warnings.iter().map(|w| cut(w)).collect::<Vec<_>>());
                }
            }
            Decision::Skip { warning, .. } => {
                if let Some(w) = warning {
                    expected["warnings"] = json!([cut(&w)]);
                }
            }
            Decision::Deny { message, .. } => {
                expected["allowed"] = json!(false);
                expected["status"] =
                    json!({"code": 403, "reason": "Forbidden", "message": message});
            }
        }
        let expected = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": expected});
        assert_eq!(
            String::from_utf8(a.json).unwrap(),
            serde_json::to_string(&expected).unwrap()
        );
    }
}

/// The apiserver's limit on a warning, as the webhook applies it.
fn cut(w: &str) -> String {
    if w.chars().count() <= admission::MAX_WARNING_CHARS {
        return w.to_string();
    }
    w.chars()
        .take(admission::MAX_WARNING_CHARS - 1)
        .collect::<String>()
        + "…"
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64")
}

// === generated pods: fixtures with random edits, some of them ill-typed ===

/// A JSON value for a field: usually of the right type, sometimes not.
fn field_value() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        4 => Just(None),
        1 => Just(Some(Value::Null)),
        1 => Just(Some(json!(true))),
        1 => Just(Some(json!(false))),
        1 => Just(Some(json!(0))),
        1 => (0i64..100_000).prop_map(|n| Some(json!(n))),
        1 => Just(Some(json!(30.5))),
        1 => Just(Some(json!("x"))),
        1 => Just(Some(json!("a\"b\\c/é"))),
        1 => Just(Some(json!([]))),
        1 => Just(Some(json!(["/run.sh", "--x"]))),
        1 => Just(Some(json!([1]))),
        1 => Just(Some(json!({}))),
        1 => Just(Some(json!({"name": "n"}))),
        1 => Just(Some(json!([{"name": "dind-certs", "mountPath": "/home/runner/_work"}]))),
        1 => Just(Some(json!([{"name": "DOCKER_HOST", "value": "v"}, {"name": 3}]))),
        1 => Just(Some(json!([["x"]]))),
    ]
}

const PATHS: &[&str] = &[
    "/kind",
    "/metadata",
    "/metadata/labels",
    "/metadata/labels/runner",
    "/metadata/annotations",
    "/metadata/annotations/dind-injector.io~1sidecar-mode",
    "/metadata/annotations/dind-injector.io~1work-dir",
    "/metadata/annotations/dind-injector.io~1status",
    "/metadata/annotations/kubernetes.io~1config.mirror",
    "/metadata/name",
    "/metadata/generateName",
    "/metadata/ownerReferences",
    "/spec",
    "/spec/containers",
    "/spec/initContainers",
    "/spec/volumes",
    "/spec/hostPID",
    "/spec/hostNetwork",
    "/spec/shareProcessNamespace",
    "/spec/terminationGracePeriodSeconds",
    "/spec/futureField",
    "/spec/containers/0/name",
    "/spec/containers/0/image",
    "/spec/containers/0/imagePullPolicy",
    "/spec/containers/0/command",
    "/spec/containers/0/args",
    "/spec/containers/0/env",
    "/spec/containers/0/volumeMounts",
    "/spec/containers/1",
];

/// Sets (or removes, for `None`) the value at `path` where its parent is an
/// object; other paths are left alone.
fn edit(pod: &mut Value, path: &str, value: Option<Value>) {
    let (parent, key) = path.rsplit_once('/').expect("pointer");
    let key = key.replace("~1", "/");
    let parent = if parent.is_empty() {
        Some(&mut *pod)
    } else {
        pod.pointer_mut(parent)
    };
    if let Some(Value::Object(obj)) = parent {
        match value {
            Some(v) => {
                obj.insert(key, v);
            }
            None => {
                obj.remove(&key);
            }
        }
    } else if let (Some(Value::Array(items)), Some(v)) = (parent, value) {
        items.push(v);
    }
}

fn edited_pod() -> impl Strategy<Value = Value> {
    let pods: Vec<Value> = fixtures().into_iter().map(|(_, p)| p).collect();
    (
        prop::sample::select(pods),
        prop::collection::vec((prop::sample::select(PATHS), field_value()), 0..4),
    )
        .prop_map(|(mut pod, edits)| {
            for (path, value) in edits {
                edit(&mut pod, path, value);
            }
            pod
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn edited_pods_get_the_same_answer_both_ways(pod in edited_pod()) {
        same_answer(&review_of(pod))?;
    }

    #[test]
    fn odd_envelopes_get_the_same_answer_both_ways(
        path in prop::sample::select(&[
            "/apiVersion", "/kind", "/request", "/request/uid", "/request/kind",
            "/request/kind/kind", "/request/kind/group", "/request/operation",
            "/request/namespace", "/request/dryRun", "/request/object",
        ][..]),
        value in field_value(),
    ) {
        let mut review: Value = serde_json::from_slice(&review_of(json!({
            "metadata": {"labels": {"runner": "true"}},
            "spec": {"containers": [{"name": "runner", "image": "r", "command": ["/run.sh"]}]},
        }))).expect("json");
        edit(&mut review, path, value);
        same_answer(&serde_json::to_vec(&review).expect("json"))?;
    }
}

/// Bodies the reference way refuses or reads in its own way: the request
/// path must not answer them differently.
#[test]
fn bodies_the_reference_way_reads_differently_are_left_to_it() {
    let pod = r#"{"metadata":{"labels":{"runner":"true"}},"spec":{"containers":[{"name":"runner","image":"r","command":["/run.sh"]}]}}"#;
    let envelope = |object: &str| {
        format!(
            r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"u","kind":{{"group":"","version":"v1","kind":"Pod"}},"operation":"CREATE","object":{object}}}}}"#
        )
        .into_bytes()
    };
    let mut bodies = vec![
        envelope(pod),
        // a key given twice: the Value keeps the last one
        envelope(&pod.replace(
            r#""labels":{"runner":"true"}"#,
            r#""labels":{"runner":"true","runner":"false"}"#,
        )),
        envelope(&pod.replace(r#""name":"runner","#, r#""name":"x","name":"runner","#)),
        // invalid UTF-8 in a field nobody reads
        {
            let mut b = envelope(&pod.replace(r#""image":"r""#, r#""image":"r","x":"??""#));
            let at = b.windows(2).position(|w| w == b"??").expect("marker");
            b[at] = 0xff;
            b
        },
        // trailing bytes
        [envelope(pod), b" x".to_vec()].concat(),
        // a list where an object belongs
        envelope(
            &pod.replace(r#""spec":{"#, r#""spec":["#)
                .replace("]}}", "]]}"),
        ),
    ];
    bodies.push(envelope(
        &pod.replace(r#""command""#, r#""command":null,"c""#),
    ));
    for body in bodies {
        same_answer(&body).unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(&body)));
    }
}

/// Both ways with what `serve` knows beyond the pod: the profile fixtures
/// (with their namespace's profile) under the profiles' config, and
/// runners without a command whose image's command is known, or not, to
/// the look-up (which must be asked the same query both ways: the view
/// keeps the pull secrets, service account, node selector and affinity).
#[test]
fn profiles_and_command_lookups_take_the_request_path_and_agree() {
    use dind_injector::engine::config::Config;
    use dind_injector::engine::{Engine, ImageCommand, Mode, Query};
    use std::cell::RefCell;

    let config = Config::load(&common::root().join("tests/fixtures/profiles/config.yaml"))
        .expect("the profile fixtures' config is valid");
    let profiles = Engine::new(config, Mode::Classic).expect("engine");
    let plain = common::engine();
    let dir = common::root().join("tests/fixtures/profiles");
    let mut cases: Vec<(String, &Engine, Option<String>, Value)> = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("profile fixtures") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "json") {
            let case = common::read_json(&path);
            let namespace = case["namespaceProfile"].as_str().map(String::from);
            cases.push((
                path.display().to_string(),
                &profiles,
                namespace,
                case["pod"].clone(),
            ));
        }
    }
    let commandless = |image: &str, extra: Value| {
        let mut pod = json!({"metadata": {"name": "c", "labels": {"runner": "true"}},
            "spec": {"containers": [{"name": "runner", "image": image}]}});
        for (k, v) in extra.as_object().expect("object") {
            pod["spec"][k] = v.clone();
        }
        pod
    };
    let pinned = json!({
        "imagePullSecrets": [{"name": "pull"}], "serviceAccountName": "builder",
        // Neither the default platform: each must reach the query.
        "nodeSelector": {"kubernetes.io/os": "windows"},
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/arch", "operator": "In", "values": ["arm64"]}]}]}}},
    });
    for (image, extra) in [
        ("example.com/known:1", json!({})),
        ("example.com/known:1", pinned.clone()),
        ("example.com/unknown:1", pinned),
        ("example.com/cmd-only:1", json!({})),
    ] {
        cases.push((image.into(), &plain, None, commandless(image, extra)));
    }
    for (name, engine, namespace, pod) in cases {
        let asked: RefCell<Vec<Query>> = RefCell::new(Vec::new());
        let lookup = |q: &Query| {
            asked.borrow_mut().push(q.clone());
            match q.image.as_str() {
                "example.com/known:1" => Some(ImageCommand {
                    entrypoint: vec!["/entry".into()],
                    cmd: vec!["run".into()],
                }),
                "example.com/cmd-only:1" => Some(ImageCommand {
                    entrypoint: vec![],
                    cmd: vec!["/bin/run".into()],
                }),
                _ => None,
            }
        };
        let ns = |_: &str| namespace.clone();
        let body = review_of(pod.clone());
        let fast = admission::answer_with(engine, &body, &ns, &lookup).expect("answer");
        let fast_asked = asked.take();
        let reference = admission::review_with(engine, &body, &ns, &lookup).expect("review");
        assert_eq!(fast_asked, asked.take(), "{name}: the look-ups differ");
        // Both ways read the query from the view: check it against the pod.
        if let Some(q) = fast_asked.first() {
            let spec = &pod["spec"];
            let pins = spec.get("affinity").is_some();
            assert_eq!(
                (q.platform.os.as_str(), q.platform.architecture.as_str()),
                if pins {
                    ("windows", "arm64")
                } else {
                    ("linux", "amd64")
                },
                "{name}"
            );
            assert_eq!(
                q.pull_secrets,
                if pins { vec!["pull"] } else { vec![] },
                "{name}"
            );
            assert_eq!(
                q.service_account,
                if pins { "builder" } else { "default" },
                "{name}"
            );
        }
        assert_eq!(
            String::from_utf8_lossy(&fast.json),
            serde_json::to_string(&reference.review).expect("json"),
            "{name}"
        );
        assert_eq!(fast.outcome, reference.outcome, "{name}");
        assert_eq!(fast.detail, reference.detail, "{name}");
        assert_eq!(fast.command_source, reference.command_source, "{name}");
        assert_eq!(fast.unresolved, reference.unresolved, "{name}");
        // And the request path really took it.
        let text = serde_json::to_string(&pod).expect("json");
        let view = PodView::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let decided = engine
            .review_view(&view, namespace.as_deref(), &lookup)
            .expect("engine");
        assert!(decided.is_some(), "{name}: the request path declined");
    }
}

/// Issue 13 on the request path: a runner volume at the work directory is
/// shared with the privileged daemon only if it is plain storage. The view
/// reads each volume's type itself (not through the `Value`), so both ways
/// must deny and inject the same pods, and the fast path must decide them.
#[test]
fn shared_volume_types_are_decided_alike_on_both_ways() {
    let engine = common::engine();
    for (kind, source, denied) in [
        ("configMap", json!({"name": "tools"}), true),
        ("hostPath", json!({"path": "/usr/local/bin"}), true),
        ("secret", json!({"secretName": "s"}), true),
        ("emptyDir", json!({}), false),
        ("persistentVolumeClaim", json!({"claimName": "c"}), false),
    ] {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": "r-", "labels": {"runner": "true"}},
            "spec": {
                // The type's key before the name, as a client may write it.
                "volumes": [{kind: source, "name": "w"}],
                "containers": [{"name": "runner", "image": "r", "command": ["/run.sh"],
                                "volumeMounts": [{"mountPath": "/home/runner/_work", "name": "w"}]}],
            },
        });
        let text = serde_json::to_string(&pod).expect("json");
        let view = PodView::parse(&text).unwrap_or_else(|e| panic!("{kind}: {e}"));
        let fast = engine
            .review_view(&view, None, &|_| None)
            .expect("engine")
            .unwrap_or_else(|| panic!("{kind}: the request path declined"));
        assert_eq!(
            matches!(fast, Decision::Deny { .. }),
            denied,
            "{kind}: {fast:?}"
        );
        same_answer(&review_of(pod)).unwrap_or_else(|e| panic!("{kind}: {e}"));
    }
}
