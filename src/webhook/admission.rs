//! AdmissionReview in, AdmissionReview out: the wire format around the engine.
//!
//! Pure (bytes in, values out) so that every answer the webhook can give is
//! testable without a socket. Our own types rather than kube-core's: its
//! `AdmissionResponse` serialises `patch` as a list of numbers (kube-rs issue
//! 1781) where the API wants base64, and we must answer `v1beta1` in kind.

use base64::Engine as _;
use serde_json::{json, Value};

use super::outcome::{ErrorReason, Outcome, Skip};
use crate::engine::{CommandSource, Decision, Engine, Lookup, Query, SkipReason};

pub const API_V1: &str = "admission.k8s.io/v1";
pub const API_V1BETA1: &str = "admission.k8s.io/v1beta1";

/// The apiserver shows warnings to the user; it drops ones that are too long.
pub const MAX_WARNING_CHARS: usize = 120;

/// What the log line of one review says about the pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Subject {
    pub uid: String,
    pub namespace: String,
    /// The pod's name, or its generateName (pods of Jobs and ReplicaSets have
    /// no name yet at admission).
    pub name: String,
    /// `Kind/name` of the controlling owner, if any.
    pub owner: String,
    pub dry_run: bool,
}

/// A review we answer with an AdmissionReview (HTTP 200).
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub review: Value,
    pub outcome: Outcome,
    pub subject: Subject,
    /// The denial message or warnings, for the log line.
    pub detail: String,
    /// For an injected pod: how the runner's command was found.
    pub command_source: Option<CommandSource>,
    /// The image look-up that could have found it (see `webhook::registry`).
    pub unresolved: Option<Query>,
}

/// A request we cannot answer with an AdmissionReview: HTTP 400 and the
/// message says what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadReview {
    #[error("request body is not valid JSON: {0}")]
    NotJson(String),
    #[error("apiVersion {0:?} is not supported: expected {API_V1} or {API_V1BETA1}")]
    UnsupportedApiVersion(String),
    #[error("apiVersion is missing: expected an AdmissionReview")]
    NoApiVersion,
    #[error("kind must be AdmissionReview")]
    NotAdmissionReview,
    #[error("request is missing: expected an AdmissionReview request")]
    NoRequest,
    #[error("request.uid is missing or empty")]
    NoUid,
}

/// Reviews one AdmissionReview body.
pub fn review(engine: &Engine, body: &[u8]) -> Result<Answer, BadReview> {
    review_with(engine, body, &|_| None, &|_| None)
}

/// What `serve` knows beyond the review: the default profile each
/// namespace names (`namespaceProfiles`; the watched cache answers), and
/// images' commands (the registry cache).
pub fn review_with(
    engine: &Engine,
    body: &[u8],
    namespace_profile: &dyn Fn(&str) -> Option<String>,
    lookup: &Lookup<'_>,
) -> Result<Answer, BadReview> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| BadReview::NotJson(e.to_string()))?;
    let (api_version, request, uid) = envelope(&doc)?;
    let object = request.get("object").filter(|o| !o.is_null());
    let mut subject = subject_of(uid, request, object);
    let mut command = (None, None);
    let (reply, outcome) = match pod_to_review(request, object) {
        Ok(pod) => {
            subject.dry_run = request
                .get("dryRun")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            // dryRun requests are answered exactly like real ones: no side effects.
            let profile = namespace_profile(&subject.namespace);
            decide(engine, pod, profile.as_deref(), lookup, &mut command)
        }
        Err(unhandled) => unhandled,
    };
    let (review, detail) = respond(api_version, uid, reply);
    Ok(Answer {
        review,
        outcome,
        subject,
        detail,
        command_source: command.0,
        unresolved: command.1,
    })
}

/// The apiVersion (answered in kind), the request and its uid.
fn envelope(doc: &Value) -> Result<(&str, &Value, &str), BadReview> {
    let api_version = match doc.get("apiVersion").and_then(Value::as_str) {
        Some(v @ (API_V1 | API_V1BETA1)) => v,
        Some(other) => return Err(BadReview::UnsupportedApiVersion(other.into())),
        None => return Err(BadReview::NoApiVersion),
    };
    if doc.get("kind").and_then(Value::as_str) != Some("AdmissionReview") {
        return Err(BadReview::NotAdmissionReview);
    }
    let request = doc
        .get("request")
        .filter(|r| r.is_object())
        .ok_or(BadReview::NoRequest)?;
    let uid = request
        .get("uid")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        .ok_or(BadReview::NoUid)?;
    Ok((api_version, request, uid))
}

/// The pod the engine should decide on, or the answer to a well-formed
/// review that is not for it (allowed unchanged, with a warning where the
/// webhook's configuration is wrong).
fn pod_to_review<'a>(
    request: &Value,
    object: Option<&'a Value>,
) -> Result<&'a Value, (Reply, Outcome)> {
    let kind = request.get("kind");
    let field = |k: &str| {
        kind.and_then(|v| v.get(k))
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    if (field("group"), field("kind")) != ("", "Pod") {
        let gvk = format!("{}/{} {}", field("group"), field("version"), field("kind"));
        let warning = format!(
            "dind-injector mutates Pods only; got {} (check the webhook's rules)",
            gvk.trim_start_matches('/')
        );
        let outcome = Outcome::Skipped(Skip::Engine(SkipReason::NotAPod));
        return Err((Reply::Allow(Some(warning)), outcome));
    }
    if request.get("operation").and_then(Value::as_str) != Some("CREATE") {
        return Err((Reply::Allow(None), Outcome::Skipped(Skip::NotCreate)));
    }
    object.ok_or_else(|| {
        let warning = "dind-injector got a CREATE without an object; pod left unchanged";
        (
            Reply::Allow(Some(warning.into())),
            Outcome::Skipped(Skip::NoObject),
        )
    })
}

/// The engine's decision as an answer. An engine bug is answered
/// `allowed: false` with code 500 and a message asking to report it.
fn decide(
    engine: &Engine,
    pod: &Value,
    namespace_profile: Option<&str>,
    lookup: &Lookup<'_>,
    command: &mut (Option<CommandSource>, Option<Query>),
) -> (Reply, Outcome) {
    let bug = |what: String| {
        let message = format!("dind-injector: {what}; please report it");
        (
            Reply::Deny(500, message),
            Outcome::Error(ErrorReason::Internal),
        )
    };
    match engine.review_with(pod, namespace_profile, lookup) {
        Ok(Decision::Inject(injection)) => match serde_json::to_vec(&injection.patch) {
            Ok(patch) => {
                *command = (Some(injection.command_source), injection.unresolved);
                (Reply::Patch(patch, injection.warnings), Outcome::Injected)
            }
            Err(e) => bug(format!("cannot encode the patch: {e}")),
        },
        Ok(Decision::Skip { reason, warning }) => (
            Reply::Allow(warning),
            Outcome::Skipped(Skip::Engine(reason)),
        ),
        Ok(Decision::Deny { reason, message }) => {
            (Reply::Deny(403, message), Outcome::Denied(reason))
        }
        Err(e) => bug(e.to_string()),
    }
}

/// The three kinds of answer an AdmissionReview can carry.
enum Reply {
    /// The encoded JSON Patch and the warnings.
    Patch(Vec<u8>, Vec<String>),
    Allow(Option<String>),
    /// HTTP-style status code and the user-facing message.
    Deny(u16, String),
}

fn subject_of(uid: &str, request: &Value, object: Option<&Value>) -> Subject {
    let meta = object.and_then(|o| o.get("metadata"));
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
    let name = match text(meta.and_then(|m| m.get("name"))) {
        n if n.is_empty() => text(meta.and_then(|m| m.get("generateName"))),
        n => n,
    };
    let namespace = match text(request.get("namespace")) {
        ns if ns.is_empty() => text(meta.and_then(|m| m.get("namespace"))),
        ns => ns,
    };
    let owner = meta
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
        .and_then(|owners| {
            owners
                .iter()
                .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
                .or_else(|| owners.first())
        })
        .map(|o| format!("{}/{}", text(o.get("kind")), text(o.get("name"))))
        .unwrap_or_default();
    Subject {
        uid: uid.to_string(),
        namespace,
        name,
        owner,
        dry_run: false,
    }
}

/// Builds the AdmissionReview answer and the detail for the log line.
fn respond(api_version: &str, uid: &str, reply: Reply) -> (Value, String) {
    let mut response = json!({"uid": uid, "allowed": true});
    let detail = match reply {
        Reply::Patch(patch, warnings) => {
            response["patchType"] = json!("JSONPatch");
            response["patch"] = json!(base64::engine::general_purpose::STANDARD.encode(patch));
            set_warnings(&mut response, &warnings);
            warnings.join("; ")
        }
        Reply::Allow(warning) => {
            let warnings: Vec<String> = warning.into_iter().collect();
            set_warnings(&mut response, &warnings);
            warnings.join("; ")
        }
        Reply::Deny(code, message) => {
            response["allowed"] = json!(false);
            let reason = if code >= 500 {
                "InternalError"
            } else {
                "Forbidden"
            };
            response["status"] = json!({"code": code, "reason": reason, "message": message});
            message
        }
    };
    (
        json!({"apiVersion": api_version, "kind": "AdmissionReview", "response": response}),
        detail,
    )
}

fn set_warnings(response: &mut Value, warnings: &[String]) {
    if warnings.is_empty() {
        return;
    }
    let short: Vec<String> = warnings
        .iter()
        .map(|w| truncate(w, MAX_WARNING_CHARS))
        .collect();
    response["warnings"] = json!(short);
}

use crate::engine::deny::cut as truncate;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::config::Config;
    use crate::engine::DenyReason;
    use crate::engine::Mode;

    fn engine() -> Engine {
        Engine::new(Config::default(), Mode::Classic).unwrap()
    }

    fn review_of(api: &str, request: Value) -> Vec<u8> {
        serde_json::to_vec(
            &json!({"apiVersion": api, "kind": "AdmissionReview", "request": request}),
        )
        .unwrap()
    }

    fn pod_request(pod: Value) -> Value {
        json!({
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "ci",
            "operation": "CREATE",
            "object": pod,
        })
    }

    fn runner_pod() -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"generateName": "r-", "labels": {"runner": "true"},
                            "ownerReferences": [{"kind": "Job", "name": "j", "controller": true}]},
               "spec": {"containers": [{"name": "runner", "image": "r", "command": ["/run.sh"]}]}})
    }

    #[test]
    fn injection_answers_base64_json_patch_in_the_request_version() {
        for api in [API_V1, API_V1BETA1] {
            let a = review(&engine(), &review_of(api, pod_request(runner_pod()))).unwrap();
            assert_eq!(a.outcome, Outcome::Injected);
            assert_eq!(a.review["apiVersion"], api);
            let r = &a.review["response"];
            assert_eq!(r["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
            assert_eq!(r["allowed"], true);
            assert_eq!(r["patchType"], "JSONPatch");
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(r["patch"].as_str().unwrap())
                .unwrap();
            let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
            assert!(!patch.0.is_empty());
            assert_eq!(
                a.subject,
                Subject {
                    uid: "705ab4f5-6393-11e8-b7cc-42010a800002".into(),
                    namespace: "ci".into(),
                    name: "r-".into(),
                    owner: "Job/j".into(),
                    dry_run: false
                }
            );
        }
    }

    #[test]
    fn skips_have_no_patch() {
        let mut pod = runner_pod();
        pod["metadata"]["labels"] = json!({});
        let a = review(&engine(), &review_of(API_V1, pod_request(pod))).unwrap();
        assert_eq!(
            a.outcome,
            Outcome::Skipped(Skip::Engine(SkipReason::NotRunner))
        );
        assert!(a.review["response"].get("patch").is_none());
        assert_eq!(a.review["response"]["allowed"], true);
    }

    #[test]
    fn denials_carry_a_status_that_names_the_problem() {
        let mut pod = runner_pod();
        pod["metadata"]["annotations"] = json!({"dind-injector.io/sidecar-mode": "x"});
        let a = review(&engine(), &review_of(API_V1, pod_request(pod))).unwrap();
        assert_eq!(a.outcome, Outcome::Denied(DenyReason::InvalidAnnotation));
        let r = &a.review["response"];
        assert_eq!(r["allowed"], false);
        assert_eq!(r["status"]["code"], 403);
        assert!(r["status"]["message"]
            .as_str()
            .unwrap()
            .contains("dind-injector.io/sidecar-mode"));
    }

    #[test]
    fn wrong_kinds_operations_and_missing_objects_are_allowed_unchanged() {
        let mut req = pod_request(json!({"kind": "Deployment"}));
        req["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
        let a = review(&engine(), &review_of(API_V1, req)).unwrap();
        assert_eq!(
            a.outcome,
            Outcome::Skipped(Skip::Engine(SkipReason::NotAPod))
        );
        let w = a.review["response"]["warnings"][0].as_str().unwrap();
        assert!(w.contains("apps/v1 Deployment"), "{w}");

        let mut req = pod_request(runner_pod());
        req["operation"] = json!("UPDATE");
        let a = review(&engine(), &review_of(API_V1, req)).unwrap();
        assert_eq!(a.outcome, Outcome::Skipped(Skip::NotCreate));

        let a = review(&engine(), &review_of(API_V1, pod_request(Value::Null))).unwrap();
        assert_eq!(a.outcome, Outcome::Skipped(Skip::NoObject));
        assert!(a.review["response"].get("patch").is_none());
    }

    #[test]
    fn malformed_reviews_are_bad_requests_that_say_why() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"{not json".to_vec(), "not valid JSON"),
            (vec![0xff, 0xfe, b'{'], "not valid JSON"),
            (b"[]".to_vec(), "apiVersion is missing"),
            (
                br#"{"apiVersion":"v1","kind":"Pod"}"#.to_vec(),
                "apiVersion \"v1\" is not supported",
            ),
            (
                br#"{"apiVersion":"admission.k8s.io/v1","kind":"Pod"}"#.to_vec(),
                "kind must be AdmissionReview",
            ),
            (
                br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(),
                "request is missing",
            ),
            (review_of(API_V1, json!({"uid": ""})), "request.uid"),
            (
                format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
                "recursion limit",
            ),
        ];
        for (body, expected) in cases {
            let err = review(&engine(), &body).unwrap_err().to_string();
            assert!(err.contains(expected), "{err:?} lacks {expected:?}");
        }
    }

    #[test]
    fn invalid_pods_are_allowed_with_a_warning_and_no_patch() {
        for spec in [
            json!("x"),
            json!({"containers": []}),
            json!({"containers": [{"name": "r", "env": 3}]}),
        ] {
            let mut pod = runner_pod();
            pod["spec"] = spec;
            let a = review(&engine(), &review_of(API_V1, pod_request(pod))).unwrap();
            assert_eq!(
                a.outcome,
                Outcome::Skipped(Skip::Engine(SkipReason::InvalidPod))
            );
            assert!(a.review["response"].get("patch").is_none());
            assert!(
                a.review["response"]["warnings"][0].as_str().unwrap().len()
                    <= MAX_WARNING_CHARS * 4
            );
        }
    }

    #[test]
    fn long_warnings_are_cut_on_a_char_boundary() {
        let long = "é".repeat(300);
        let cut = truncate(&long, MAX_WARNING_CHARS);
        assert_eq!(cut.chars().count(), MAX_WARNING_CHARS);
        assert!(cut.ends_with('…'));
        assert_eq!(truncate("short", MAX_WARNING_CHARS), "short");
    }
}
