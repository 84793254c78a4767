//! HTTP routes of the webhook port: `/mutate`, `/healthz`, `/readyz`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::metrics::Metrics;
use super::namespaces::NamespaceProfiles;
use super::server::{EngineHandle, Readiness};
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
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "not found: the webhook serves POST /mutate\n",
            )
        })
        .with_state(state)
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.readiness.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    }
}

/// A request refused without a review: the status, a stable reason and a
/// message that says what was wrong; counted as `error` with that reason.
struct Refusal {
    status: StatusCode,
    reason: ErrorReason,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, reason: ErrorReason, message: String) -> Self {
        Self {
            status,
            reason,
            message,
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
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}

async fn mutate(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let bytes = match read_json_body(&state, &headers, body).await {
        Ok(bytes) => bytes,
        Err(refusal) => return refusal.respond(&state),
    };
    let reviewed_at = Instant::now();
    let answer = match reviewed(&state, &bytes).await {
        Ok(answer) => answer,
        Err(bad) => {
            let status = StatusCode::BAD_REQUEST;
            return Refusal::new(status, ErrorReason::BadReview, bad.to_string()).respond(&state);
        }
    };
    let took = reviewed_at.elapsed();
    state.metrics.review(answer.outcome, Some(took));
    if let Some(source) = answer.command_source {
        state.metrics.runner_command(source);
    }
    log_review(&answer, took);
    ([(header::CONTENT_TYPE, "application/json")], answer.json).into_response()
}

/// The body of a JSON request, within the size limit (declared length
/// first, then while reading, so chunked bodies are bounded too) and the
/// body timeout.
async fn read_json_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, Refusal> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let is_json = content_type.as_deref().is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
    });
    if !is_json {
        let got = content_type.unwrap_or_else(|| "none".into());
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
    if declared.is_some_and(|n| n > state.max_body_bytes as u64) {
        return Err(too_large());
    }
    let limited = Limited::new(body, state.max_body_bytes).collect();
    match tokio::time::timeout(state.body_timeout, limited).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
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

/// The review, with the runner's command from its image's registry when
/// the spec has none: the engine reviews with what the cache knows; if it
/// needed an image the cache did not know, that image is looked up (at
/// most the budget) and the pod reviewed again if it was found. Only the
/// first pod of an image per cache period pays for this.
async fn reviewed(
    state: &AppState,
    body: &[u8],
) -> Result<admission::Answered, admission::BadReview> {
    let engine = state.engine.get();
    let namespace_profile = |ns: &str| state.namespaces.as_ref().and_then(|n| n.get(ns));
    let Some(registry) = &state.registry else {
        return admission::answer_with(&engine, body, &namespace_profile, &|_| None);
    };
    let lookup = |q: &Query| registry.cached(q);
    let answer = admission::answer_with(&engine, body, &namespace_profile, &lookup)?;
    let Some(query) = &answer.unresolved else {
        return Ok(answer);
    };
    if registry.cached(query).is_some() || registry.failure(query).is_some() {
        return Ok(answer);
    }
    match registry.resolve(query, &answer.subject.namespace).await {
        Resolution::Known if registry.cached(query).is_some() => {
            admission::answer_with(&engine, body, &namespace_profile, &lookup)
        }
        Resolution::Known => Ok(answer),
        Resolution::Pending => {
            tracing::info!(image = %query.image, uid = %answer.subject.uid,
                "registry: no answer within the budget; admitted unsupervised, the look-up goes on for the next pod");
            Ok(answer)
        }
    }
}

/// One line per review: at warn when the user or the operator has to act.
fn log_review(answer: &admission::Answered, took: Duration) {
    let s = &answer.subject;
    macro_rules! log_review {
        ($level:ident) => {
            tracing::$level!(
                uid = %s.uid, namespace = %s.namespace, pod = %s.name, owner = %s.owner,
                dry_run = s.dry_run, decision = answer.outcome.as_str(), reason = answer.outcome.reason(),
                detail = %answer.detail, command_source = answer.command_source.map_or("", |s| s.as_str()),
                duration_us = took.as_micros() as u64, "review"
            )
        };
    }
    if answer.outcome.is_problem() {
        log_review!(warn);
    } else {
        log_review!(info);
    }
}
