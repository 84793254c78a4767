//! AdmissionReview in, AdmissionReview out: the wire format around the engine.
//!
//! Pure (bytes in, bytes out) so that every answer the webhook can give is
//! testable without a socket. Our own types rather than kube-core's: its
//! `AdmissionResponse` serialises `patch` as a list of numbers (kube-rs issue
//! 1781) where the API wants base64, and we must answer `v1beta1` in kind.
//!
//! Two ways through, one answer: [`answer`] (the server's) reads the
//! envelope into borrowed fields and the pod into the engine's view, and
//! writes the answer, its patch base64-encoded in place, straight into the
//! answer buffer; whatever it does not take (anything but a well-typed
//! CREATE of a Pod) goes the reference way, [`review`]: the body as a
//! `serde_json::Value`, whose errors name the field. Both write the answer
//! with the same writer; `tests/reqpath.rs` checks that they agree.

use std::io::Write;

use serde::Deserialize;
use serde_json::Value;

use super::outcome::{ErrorReason, Outcome, Skip};
use crate::engine::deny::cut;
use crate::engine::patch::{write_json_str, Changes};
use crate::engine::view::{Lenient, Meta, Obj, PodView, Text};
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

/// A review we answer with an AdmissionReview (HTTP 200), as a `Value`
/// (the reference way; `inject`-style callers and the tests).
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

/// A review we answer with an AdmissionReview (HTTP 200), as the bytes the
/// server sends.
#[derive(Debug, Clone, PartialEq)]
pub struct Answered {
    /// The AdmissionReview answer, JSON.
    pub json: Vec<u8>,
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

/// Reviews one AdmissionReview body into the answer's bytes: the request
/// path of the server. Never inlined, so that `make bench-instructions`
/// finds it as a frame of its own.
#[inline(never)]
pub fn answer(engine: &Engine, body: &[u8]) -> Result<Answered, BadReview> {
    answer_with(engine, body, &|_| None, &|_| None)
}

/// [`answer`] with what `serve` knows beyond the review (see
/// [`review_with`]), on the request path and its fallback alike.
pub fn answer_with(
    engine: &Engine,
    body: &[u8],
    namespace_profile: &dyn Fn(&str) -> Option<String>,
    lookup: &Lookup<'_>,
) -> Result<Answered, BadReview> {
    if let Some(answered) = fast(engine, body, namespace_profile, lookup) {
        return Ok(answered);
    }
    let settled = settle(engine, body, namespace_profile, lookup)?;
    Ok(settled.write())
}

/// Reviews one AdmissionReview body into a `Value` (the reference way).
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
    let Answered {
        json,
        outcome,
        subject,
        detail,
        command_source,
        unresolved,
    } = settle(engine, body, namespace_profile, lookup)?.write();
    let review = serde_json::from_slice(&json)
        .map_err(|e| BadReview::NotJson(format!("our own answer: {e}")))?;
    Ok(Answer {
        review,
        outcome,
        subject,
        detail,
        command_source,
        unresolved,
    })
}

/// How an injected runner's command was found, and the look-up that could
/// have found it.
type Command = (Option<CommandSource>, Option<Query>);

/// A review decided, not yet written.
struct Settled<P> {
    api_version: &'static str,
    uid: String,
    reply: Reply<P>,
    outcome: Outcome,
    subject: Subject,
    command: Command,
}

impl<P: WritePatch> Settled<P> {
    fn write(self) -> Answered {
        let mut json = Vec::with_capacity(512);
        let detail = write_review(&mut json, self.api_version, &self.uid, &self.reply);
        Answered {
            json,
            outcome: self.outcome,
            subject: self.subject,
            detail,
            command_source: self.command.0,
            unresolved: self.command.1,
        }
    }
}

// === the reference way: the body as a Value ===

fn settle(
    engine: &Engine,
    body: &[u8],
    namespace_profile: &dyn Fn(&str) -> Option<String>,
    lookup: &Lookup<'_>,
) -> Result<Settled<Vec<u8>>, BadReview> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| BadReview::NotJson(e.to_string()))?;
    let (api_version, request, uid) = envelope(&doc)?;
    let object = request.get("object").filter(|o| !o.is_null());
    let mut subject = subject_of(uid, request, object);
    let (reply, outcome, command) = match pod_to_review(request, object) {
        Ok(pod) => {
            subject.dry_run = request
                .get("dryRun")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            // dryRun requests are answered exactly like real ones: no side effects.
            let profile = namespace_profile(&subject.namespace);
            decide(
                engine
                    .review_with(pod, profile.as_deref(), lookup)
                    .and_then(|d| Ok(d.map_patch(|patch| serde_json::to_vec(&patch))?)),
            )
        }
        Err((reply, outcome)) => (reply, outcome, (None, None)),
    };
    Ok(Settled {
        api_version,
        uid: uid.to_string(),
        reply,
        outcome,
        subject,
        command,
    })
}

/// The apiVersion (answered in kind), the request and its uid.
fn envelope(doc: &Value) -> Result<(&'static str, &Value, &str), BadReview> {
    let api_version = match doc.get("apiVersion").and_then(Value::as_str) {
        Some(API_V1) => API_V1,
        Some(API_V1BETA1) => API_V1BETA1,
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
fn pod_to_review<'a, P>(
    request: &Value,
    object: Option<&'a Value>,
) -> Result<&'a Value, (Reply<P>, Outcome)> {
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

fn subject_of(uid: &str, request: &Value, object: Option<&Value>) -> Subject {
    let meta = object.and_then(|o| o.get("metadata"));
    fn text(v: Option<&Value>) -> &str {
        v.and_then(Value::as_str).unwrap_or("")
    }
    let owners = meta
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let owner = owners
        .iter()
        .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
        .or_else(|| owners.first())
        .map(|o| (text(o.get("kind")), text(o.get("name"))));
    subject(
        uid,
        [
            text(meta.and_then(|m| m.get("name"))),
            text(meta.and_then(|m| m.get("generateName"))),
        ],
        [
            text(request.get("namespace")),
            text(meta.and_then(|m| m.get("namespace"))),
        ],
        owner,
    )
}

/// The log line's subject: the first non-empty name and namespace.
fn subject(
    uid: &str,
    names: [&str; 2],
    namespaces: [&str; 2],
    owner: Option<(&str, &str)>,
) -> Subject {
    let first = |c: [&str; 2]| {
        c.into_iter()
            .find(|s| !s.is_empty())
            .unwrap_or("")
            .to_string()
    };
    Subject {
        uid: uid.to_string(),
        namespace: first(namespaces),
        name: first(names),
        owner: owner.map_or_else(String::new, |(kind, name)| format!("{kind}/{name}")),
        dry_run: false,
    }
}

// === the request path: borrowed envelope, the pod's view ===

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    #[serde(borrow)]
    api_version: Text<'a>,
    #[serde(borrow)]
    kind: Text<'a>,
    #[serde(borrow)]
    request: Obj<Request<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request<'a> {
    #[serde(borrow)]
    uid: Text<'a>,
    #[serde(borrow)]
    kind: Obj<Gvk<'a>>,
    #[serde(borrow)]
    operation: Text<'a>,
    #[serde(default, borrow)]
    namespace: Lenient<'a>,
    #[serde(default)]
    dry_run: Option<bool>,
    #[serde(default, borrow)]
    object: Option<Obj<PodView<'a>>>,
}

#[derive(Deserialize)]
struct Gvk<'a> {
    #[serde(default, borrow)]
    group: Lenient<'a>,
    #[serde(default, borrow)]
    kind: Lenient<'a>,
}

/// The request path for a well-typed CREATE of a Pod; `None` for anything
/// else (the reference way answers it, and names what is wrong).
fn fast(
    engine: &Engine,
    body: &[u8],
    namespace_profile: &dyn Fn(&str) -> Option<String>,
    lookup: &Lookup<'_>,
) -> Option<Answered> {
    // Checked first, as the reference way does: skipped fields are not
    // otherwise checked for valid UTF-8.
    let text = std::str::from_utf8(body).ok()?;
    let Obj(envelope) = serde_json::from_str::<Obj<Envelope>>(text).ok()?;
    let api_version = match &*envelope.api_version {
        API_V1 => API_V1,
        API_V1BETA1 => API_V1BETA1,
        _ => return None,
    };
    let request = &envelope.request;
    let is_pod = request.kind.group.as_str().unwrap_or("").is_empty()
        && request.kind.kind.as_str() == Some("Pod");
    if &*envelope.kind != "AdmissionReview"
        || request.uid.is_empty()
        || !is_pod
        || &*request.operation != "CREATE"
    {
        return None;
    }
    let pod = request.object.as_deref()?;
    let meta = pod.metadata.as_deref();
    let lenient = |f: for<'m> fn(&'m Meta<'m>) -> &'m Lenient<'m>| {
        meta.and_then(|m| f(m).as_str()).unwrap_or("")
    };
    let owners = meta
        .and_then(|m| m.owner_references.as_deref())
        .unwrap_or(&[]);
    let owner = owners
        .iter()
        .find(|o| o.controller == Some(true))
        .or_else(|| owners.first())
        .map(|o| (o.kind.as_str().unwrap_or(""), o.name.as_str().unwrap_or("")));
    let mut subject = subject(
        &request.uid,
        [lenient(|m| &m.name), lenient(|m| &m.generate_name)],
        [
            request.namespace.as_str().unwrap_or(""),
            lenient(|m| &m.namespace),
        ],
        owner,
    );
    subject.dry_run = request.dry_run.unwrap_or(false);
    let profile = namespace_profile(&subject.namespace);
    let decision = engine.review_view(pod, profile.as_deref(), lookup).ok()??;
    let (reply, outcome, command) = decide(Ok(decision));
    Some(
        Settled {
            api_version,
            uid: request.uid.to_string(),
            reply,
            outcome,
            subject,
            command,
        }
        .write(),
    )
}

// === the answer, for both ===

/// The engine's decision as an answer. An engine bug is answered
/// `allowed: false` with code 500 and a message asking to report it.
fn decide<P>(
    decision: Result<Decision<P>, crate::engine::EngineBug>,
) -> (Reply<P>, Outcome, Command) {
    match decision {
        Ok(Decision::Inject(injection)) => (
            Reply::Patch(injection.patch, injection.warnings),
            Outcome::Injected,
            (Some(injection.command_source), injection.unresolved),
        ),
        Ok(Decision::Skip { reason, warning }) => (
            Reply::Allow(warning),
            Outcome::Skipped(Skip::Engine(reason)),
            (None, None),
        ),
        Ok(Decision::Deny { reason, message }) => (
            Reply::Deny(403, message),
            Outcome::Denied(reason),
            (None, None),
        ),
        Err(e) => (
            Reply::Deny(500, format!("dind-injector: {e}; please report it")),
            Outcome::Error(ErrorReason::Internal),
            (None, None),
        ),
    }
}

/// The three kinds of answer an AdmissionReview can carry.
enum Reply<P> {
    /// The JSON Patch and the warnings.
    Patch(P, Vec<String>),
    Allow(Option<String>),
    /// HTTP-style status code and the user-facing message.
    Deny(u16, String),
}

/// A JSON Patch as JSON text: itself, or written into `scratch`.
trait WritePatch {
    fn json<'s>(&'s self, scratch: &'s mut Vec<u8>) -> &'s [u8];
}

impl WritePatch for Vec<u8> {
    fn json<'s>(&'s self, _: &'s mut Vec<u8>) -> &'s [u8] {
        self
    }
}

impl WritePatch for Changes<'_> {
    fn json<'s>(&'s self, scratch: &'s mut Vec<u8>) -> &'s [u8] {
        scratch.clear();
        // Writing into a Vec cannot fail.
        let _ = self.write_json(scratch);
        scratch
    }
}

/// A patch's JSON is written to a buffer kept by the thread, then
/// base64-encoded into the answer in one pass (SIMD over the whole text,
/// rather than a stream of small writes); the buffer is let go after a
/// patch larger than this (a runner's is a few KiB), so that no thread
/// keeps much.
const KEPT_SCRATCH_BYTES: usize = 16 * 1024;

fn write_base64_patch<P: WritePatch>(out: &mut Vec<u8>, patch: &P) {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with_borrow_mut(|scratch| {
        base64_simd::STANDARD.encode_append(patch.json(scratch), out);
        if scratch.capacity() > KEPT_SCRATCH_BYTES {
            *scratch = Vec::new();
        }
    });
}

/// Writes the AdmissionReview answer (keys in the order the API documents
/// them) and returns the detail for the log line.
fn write_review<P: WritePatch>(
    out: &mut Vec<u8>,
    api_version: &str,
    uid: &str,
    reply: &Reply<P>,
) -> String {
    let string = |out: &mut Vec<u8>, s: &str| {
        // A Vec never fails to take bytes, and a &str always serialises.
        let _ = write_json_str(out, s);
    };
    out.extend_from_slice(b"{\"apiVersion\":");
    string(out, api_version);
    out.extend_from_slice(b",\"kind\":\"AdmissionReview\",\"response\":{\"uid\":");
    string(out, uid);
    let detail = match reply {
        Reply::Patch(patch, warnings) => {
            out.extend_from_slice(b",\"allowed\":true,\"patchType\":\"JSONPatch\",\"patch\":\"");
            write_base64_patch(out, patch);
            out.push(b'"');
            write_warnings(out, warnings.iter().map(String::as_str));
            warnings.join("; ")
        }
        Reply::Allow(warning) => {
            out.extend_from_slice(b",\"allowed\":true");
            write_warnings(out, warning.as_deref().into_iter());
            warning.clone().unwrap_or_default()
        }
        Reply::Deny(code, message) => {
            let reason = if *code >= 500 {
                "InternalError"
            } else {
                "Forbidden"
            };
            let _ = write!(
                out,
                ",\"allowed\":false,\"status\":{{\"code\":{code},\"reason\":\"{reason}\",\"message\":"
            );
            string(out, message);
            out.push(b'}');
            message.clone()
        }
    };
    out.extend_from_slice(b"}}");
    detail
}

fn write_warnings<'w>(out: &mut Vec<u8>, warnings: impl ExactSizeIterator<Item = &'w str>) {
    if warnings.len() == 0 {
        return;
    }
    out.extend_from_slice(b",\"warnings\":[");
    for (i, w) in warnings.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // A Vec never fails to take bytes.
        let _ = write_json_str(out, &cut(w, MAX_WARNING_CHARS));
    }
    out.push(b']');
}
