//! HTTP routes: the webhook port's `/mutate`, and the probes `/healthz`
//! and `/readyz` (on both ports; the kubelet asks the metrics port's, which
//! a flood of reviews cannot fill).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::budget::{Admitted, Full, Gate, Panicked};
use super::metrics::Metrics;
use super::namespaces::NamespaceProfiles;
use super::server::{EngineHandle, Readiness};
use crate::engine::deny::{cut, MAX_MESSAGE_CHARS};
use crate::engine::Query;
use crate::webhook::admission;
use crate::webhook::outcome::{ErrorReason, Outcome};
use crate::webhook::registry::{Resolution, Resolver};

pub struct AppState {
    pub engine: Arc<EngineHandle>,
    /// The namespaces' default profiles, when `namespaceProfiles` is on.
    pub namespaces: Option<Arc<NamespaceProfiles>>,
    /// Images' ENTRYPOINT and CMD for runners without a command.
    pub registry: Option<Arc<Resolver>>,
    pub metrics: Arc<Metrics>,
    pub readiness: Readiness,
    pub max_body_bytes: usize,
    /// Bound on receiving the whole body (slow clients).
    pub body_timeout: Duration,
    /// Bound on the memory of reviews in flight.
    pub gate: Gate,
}

pub fn router(state: Arc<AppState>) -> Router {
    let readiness = state.readiness.clone();
    Router::new()
        .route("/mutate", post(mutate))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "not found: the webhook serves POST /mutate\n",
            )
        })
        .with_state(state)
        .merge(probes(readiness))
}

/// `/healthz` (the process answers) and `/readyz` (it should get traffic).
pub fn probes(readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let ready = readiness.is_ready();
                async move {
                    if ready {
                        (StatusCode::OK, "ready\n")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                    }
                }
            }),
        )
}

/// A request refused without a review: the status, a stable reason and a
/// message that says what was wrong; counted as `error` with that reason.
struct Refusal {
    status: StatusCode,
    reason: ErrorReason,
    message: String,
}

/// Log fields taken from the request (uid, names) are cut to this many
/// characters: one review is one line of bounded size.
const MAX_LOG_FIELD_CHARS: usize = 256;

impl Refusal {
    /// `message` may quote the request (a content type, an apiVersion): cut.
    fn new(status: StatusCode, reason: ErrorReason, message: String) -> Self {
        Self {
            status,
            reason,
            message: cut(&message, MAX_MESSAGE_CHARS).into_owned(),
        }
    }

    fn respond(self, state: &AppState) -> Response {
        let Refusal {
            status,
            reason,
            message,
        } = self;
        state.metrics.review(Outcome::Error(reason), None);
        let reason = reason.as_str();
        tracing::warn!(status = status.as_u16(), reason, %message, "request refused");
        let mut response = (status, format!("{message}\n")).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        response
    }

    fn overloaded(full: Full) -> Self {
        let status = StatusCode::SERVICE_UNAVAILABLE;
        Self::new(status, ErrorReason::Overloaded, full.to_string())
    }
}

async fn mutate(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let (bytes, _admitted) = match read_json_body(&state, &headers, body).await {
        Ok(body) => body,
        Err(refusal) => return refusal.respond(&state),
    };
    let (answer, took) = match reviewed(&state, bytes).await {
        Ok(Ok((Ok(answer), took))) => (answer, took),
        Ok(Ok((Err(bad), _))) => {
            let status = StatusCode::BAD_REQUEST;
            return Refusal::new(status, ErrorReason::BadReview, bad.to_string()).respond(&state);
        }
        Ok(Err(panicked)) => {
            let status = StatusCode::INTERNAL_SERVER_ERROR;
            let message = format!("the review failed: {panicked}");
            return Refusal::new(status, ErrorReason::Internal, message).respond(&state);
        }
        Err(full) => return Refusal::overloaded(full).respond(&state),
    };
    state.metrics.review(answer.outcome, Some(took));
    if let Some(source) = answer.command_source {
        state.metrics.runner_command(source);
    }
    log_review(&answer, took);
    ([(header::CONTENT_TYPE, "application/json")], answer.json).into_response()
}

/// The body of a JSON request, within the size limit (declared length
/// first, then while reading, so chunked bodies are bounded too), the body
/// timeout, and the budget of bytes in flight (room for the declared length,
/// or for the limit when none is declared, held until the answer is sent).
async fn read_json_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Bytes, Admitted), Refusal> {
    let content_type = headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes());
    let is_json = content_type.is_some_and(|ct| {
        let essence = ct.split(|b| *b == b';').next().unwrap_or_default();
        essence
            .trim_ascii()
            .eq_ignore_ascii_case(b"application/json")
    });
    if !is_json {
        let got = content_type.map_or("none".into(), String::from_utf8_lossy);
        return Err(Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorReason::UnsupportedMediaType,
            format!("content type must be application/json, got {got}"),
        ));
    }
    let too_large = || {
        Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorReason::TooLarge,
            format!("request body is larger than {} bytes", state.max_body_bytes),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let size = match declared {
        Some(n) if n > state.max_body_bytes as u64 => return Err(too_large()),
        Some(n) => usize::try_from(n).unwrap_or(state.max_body_bytes),
        None => state.max_body_bytes,
    };
    let admitted = state
        .gate
        .admit_body(size)
        .await
        .map_err(Refusal::overloaded)?;
    let limit = if declared.is_some() {
        size
    } else {
        state.max_body_bytes
    };
    let limited = Limited::new(body, limit).collect();
    match tokio::time::timeout(state.body_timeout, limited).await {
        Ok(Ok(collected)) => Ok((collected.to_bytes(), admitted)),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(e)) => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            ErrorReason::BadBody,
            format!("cannot read the request body: {e}"),
        )),
        Err(_) => Err(Refusal::new(
            StatusCode::REQUEST_TIMEOUT,
            ErrorReason::BodyTimeout,
            format!(
                "the request body did not arrive within {:?}",
                state.body_timeout
            ),
        )),
    }
}

/// What the gate answers for one review: the review and how long it took
/// (or the review task's panic), or that the gate is full.
type Decided = Result<
    Result<(Result<admission::Answered, admission::BadReview>, Duration), Panicked>,
    super::budget::Full,
>;

/// One review through the gate, with what `serve` knows beyond
/// the pod: its namespace's default profile and the cached image commands.
async fn decide(state: &Arc<AppState>, body: &Bytes) -> Decided {
    let (shared, body) = (state.clone(), body.clone());
    state
        .gate
        .decide(body.len(), move || {
            let reviewed_at = Instant::now();
            let engine = shared.engine.get();
            let namespace_profile = |ns: &str| shared.namespaces.as_ref().and_then(|n| n.get(ns));
            let lookup = |q: &Query| shared.registry.as_ref().and_then(|r| r.cached(q));
            let answer = admission::answer_with(&engine, &body, &namespace_profile, &lookup);
            (answer, reviewed_at.elapsed())
        })
        .await
}

/// The review, with the runner's command from its image's registry when
/// the spec has none: the engine reviews with what the cache knows; if it
/// needed an image the cache did not know, that image is looked up (at
/// most the budget, outside the gate: waiting on the network holds no
/// review slot) and the pod reviewed again if it was found. Only the first
/// pod of an image per cache period pays for this.
async fn reviewed(state: &Arc<AppState>, body: Bytes) -> Decided {
    let first = decide(state, &body).await;
    let (Some(registry), Ok(Ok((Ok(answer), _)))) = (&state.registry, &first) else {
        return first;
    };
    let Some(query) = answer.unresolved.clone() else {
        return first;
    };
    if registry.cached(&query).is_some() || registry.failure(&query).is_some() {
        return first;
    }
    let (namespace, uid) = (answer.subject.namespace.clone(), answer.subject.uid.clone());
    match registry.resolve(&query, &namespace).await {
        Resolution::Known if registry.cached(&query).is_some() => decide(state, &body).await,
        Resolution::Known => first,
        Resolution::Pending => {
            tracing::info!(image = %cut(&query.image, MAX_LOG_FIELD_CHARS), uid = %cut(&uid, MAX_LOG_FIELD_CHARS),
                "registry: no answer within the budget; admitted unsupervised, the look-up goes on for the next pod");
            first
        }
    }
}

/// One line per review, of bounded size: at warn when the user or the
/// operator has to act.
fn log_review(answer: &admission::Answered, took: Duration) {
    let s = &answer.subject;
    let (uid, namespace, pod, owner) = (
        cut(&s.uid, MAX_LOG_FIELD_CHARS),
        cut(&s.namespace, MAX_LOG_FIELD_CHARS),
        cut(&s.name, MAX_LOG_FIELD_CHARS),
        cut(&s.owner, MAX_LOG_FIELD_CHARS),
    );
    let detail = cut(&answer.detail, MAX_MESSAGE_CHARS);
    macro_rules! log_review {
        ($level:ident) => {
            tracing::$level!(
                uid = &*uid,
                namespace = &*namespace,
                pod = &*pod,
                owner = &*owner,
                dry_run = s.dry_run,
                decision = answer.outcome.as_str(),
                reason = answer.outcome.reason(),
                detail = &*detail,
                command_source = answer.command_source.map_or("", |s| s.as_str()),
                duration_us = took.as_micros() as u64,
                "review"
            )
        };
    }
    if answer.outcome.is_problem() {
        log_review!(warn);
    } else {
        log_review!(info);
    }
}
