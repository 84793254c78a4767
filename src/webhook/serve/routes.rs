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
use super::server::{EngineHandle, Readiness};
use crate::webhook::admission;
use crate::webhook::outcome::{ErrorReason, Outcome};

pub struct AppState {
    pub engine: Arc<EngineHandle>,
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

/// A request refused before review, with the status and a message that says
/// what was wrong; counted as `error` with a stable reason.
fn refuse(state: &AppState, status: StatusCode, reason: ErrorReason, message: String) -> Response {
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

async fn mutate(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
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
        return refuse(
            &state,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorReason::UnsupportedMediaType,
            format!("content type must be application/json, got {got}"),
        );
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > state.max_body_bytes as u64) {
        return too_large(&state);
    }
    let collected = tokio::time::timeout(
        state.body_timeout,
        Limited::new(body, state.max_body_bytes).collect(),
    )
    .await;
    let bytes: Bytes = match collected {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => return too_large(&state),
        Ok(Err(e)) => {
            return refuse(
                &state,
                StatusCode::BAD_REQUEST,
                ErrorReason::BadBody,
                format!("cannot read the request body: {e}"),
            )
        }
        Err(_) => {
            return refuse(
                &state,
                StatusCode::REQUEST_TIMEOUT,
                ErrorReason::BodyTimeout,
                format!(
                    "the request body did not arrive within {:?}",
                    state.body_timeout
                ),
            )
        }
    };

    let reviewed_at = Instant::now();
    match admission::review(&state.engine.get(), &bytes) {
        Ok(answer) => {
            let took = reviewed_at.elapsed();
            state.metrics.review(answer.outcome, Some(took));
            let s = &answer.subject;
            let level_warn = answer.outcome.is_problem();
            macro_rules! log_review {
                ($level:ident) => {
                    tracing::$level!(
                        uid = %s.uid, namespace = %s.namespace, pod = %s.name, owner = %s.owner,
                        dry_run = s.dry_run, decision = answer.outcome.as_str(), reason = answer.outcome.reason(),
                        detail = %answer.detail, duration_us = took.as_micros() as u64, "review"
                    )
                };
            }
            if level_warn {
                log_review!(warn);
            } else {
                log_review!(info);
            }
            match serde_json::to_vec(&answer.review) {
                Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
                Err(e) => refuse(
                    &state,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorReason::Encode,
                    format!("cannot encode the answer: {e}"),
                ),
            }
        }
        Err(bad) => refuse(
            &state,
            StatusCode::BAD_REQUEST,
            ErrorReason::BadReview,
            bad.to_string(),
        ),
    }
}

fn too_large(state: &AppState) -> Response {
    refuse(
        state,
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorReason::TooLarge,
        format!("request body is larger than {} bytes", state.max_body_bytes),
    )
}
