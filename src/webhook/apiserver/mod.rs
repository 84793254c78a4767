//! The few calls the webhook makes to the apiserver (its version, nodes'
//! kubelet versions, namespaces' annotations, pull secrets, the installed
//! ConfigMap), over the hyper client and rustls the registry client uses.
//!
//! This replaced kube-rs' client (issue 12): the webhook made five kinds of
//! GET and one watch, and for them linked kube-client's tower stack,
//! kubeconfig YAML parser and, unconditionally, jsonpath-rust and with it
//! the regex engine, whose tables are pointers the loader relocates at
//! every start: 250 KiB of the executable copied into every webhook
//! process's memory (docs/performance.md). Each call site reads only the
//! fields it decides on.

mod config;
mod exec;
pub mod types;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION};
use hyper::{Request, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;

pub use config::{Config, Env};
pub use watch::Watch;

use config::Auth;

/// A GET, answer read; watches are bounded by their own timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer read: a page of 500 nodes is a few MiB.
const MAX_BODY: usize = 64 << 20;

/// Why there is no client.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no Kubernetes client configuration: no kubeconfig ({}) and not in a cluster (KUBERNETES_SERVICE_HOST unset)",
        .kubeconfig.as_deref().map_or("KUBECONFIG unset, no ~/.kube/config".to_string(), |k| format!("none of KUBECONFIG={k} exists")))]
    None { kubeconfig: Option<String> },
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{path}: {message}")]
    Transport { path: String, message: String },
    /// The apiserver's own answer (its Status message when it sent one).
    #[error("{path}: {code} {reason}: {message}")]
    Status {
        path: String,
        code: u16,
        reason: String,
        message: String,
    },
    #[error("{path}: unexpected answer: {message}")]
    Decode { path: String, message: String },
}

impl ApiError {
    pub fn code(&self) -> Option<u16> {
        match self {
            ApiError::Status { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// A `metav1.Status`, as the apiserver sends with its errors.
#[derive(Deserialize, Default)]
struct Status {
    #[serde(default)]
    message: String,
    #[serde(default)]
    reason: String,
}

/// Cheap to clone: the connection pool and credentials are shared.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: crate::webhook::https::Client,
    server: String,
    auth: Auth,
}

impl Client {
    /// The client the environment gives ([`Config::infer`]); the files
    /// (and an exec plugin) are read off the async threads.
    pub async fn infer() -> Result<Client, ConfigError> {
        let config = tokio::task::spawn_blocking(|| Config::infer(&Env::of_process()))
            .await
            .map_err(|e| ConfigError::Invalid {
                origin: "kubeconfig".into(),
                message: e.to_string(),
            })??;
        Client::new(config)
    }

    pub fn new(config: Config) -> Result<Client, ConfigError> {
        let http =
            crate::webhook::https::client(config.roots, config.identity, false).map_err(|e| {
                ConfigError::Invalid {
                    origin: config.source,
                    message: e.to_string(),
                }
            })?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                server: config.server,
                auth: config.auth,
            }),
        })
    }

    /// GETs `path` (with its query) as JSON.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        self.get_as(path, "application/json").await
    }

    /// [`Client::get`], `None` for 404.
    pub async fn get_opt<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>, ApiError> {
        match self.get(path).await {
            Ok(found) => Ok(Some(found)),
            Err(e) if e.code() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// GETs `path` asking for `accept` (e.g. metadata only).
    pub async fn get_as<T: DeserializeOwned>(
        &self,
        path: &str,
        accept: &str,
    ) -> Result<T, ApiError> {
        within(path, async {
            let response = self.send_ok(path, accept).await?;
            let body = Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| ApiError::Transport {
                    path: path.into(),
                    message: format!("reading the answer: {e}"),
                })?
                .to_bytes();
            serde_json::from_slice(&body).map_err(|e| ApiError::Decode {
                path: path.into(),
                message: e.to_string(),
            })
        })
        .await
    }

    /// Starts a watch (`path` with `watch=1`): its events, a line each.
    /// `idle` bounds the wait for the next line (a lost connection).
    pub async fn watch(&self, path: &str, accept: &str, idle: Duration) -> Result<Watch, ApiError> {
        let response = within(path, self.send_ok(path, accept)).await?;
        Ok(Watch::new(path, response.into_body(), idle))
    }

    /// [`Client::send`], with an answer other than 2xx as its error.
    async fn send_ok(
        &self,
        path: &str,
        accept: &str,
    ) -> Result<Response<hyper::body::Incoming>, ApiError> {
        let response = self.send(path, accept).await?;
        if !response.status().is_success() {
            return Err(status_error(path, response).await);
        }
        Ok(response)
    }

    /// One request, with the credentials; an exec plugin's token is
    /// renewed once on 401.
    async fn send(
        &self,
        path: &str,
        accept: &str,
    ) -> Result<Response<hyper::body::Incoming>, ApiError> {
        let mut renewed = false;
        loop {
            let token = self.token(path).await?;
            let uri = format!("{}{path}", self.inner.server);
            let mut request = Request::get(&uri).header(ACCEPT, accept);
            if let Some(token) = token {
                let value =
                    HeaderValue::from_str(&format!("Bearer {}", token.trim())).map_err(|_| {
                        ApiError::Transport {
                            path: path.into(),
                            message: "the token is not a valid header value".into(),
                        }
                    })?;
                request = request.header(AUTHORIZATION, value);
            }
            let request = request
                .body(Empty::new())
                .map_err(|e| ApiError::Transport {
                    path: path.into(),
                    message: e.to_string(),
                })?;
            let response =
                self.inner
                    .http
                    .request(request)
                    .await
                    .map_err(|e| ApiError::Transport {
                        path: path.into(),
                        message: transport_message(&e),
                    })?;
            if response.status() == StatusCode::UNAUTHORIZED && !renewed {
                if let Auth::Exec(exec) = &self.inner.auth {
                    let exec = exec.clone();
                    blocking(move || exec::run(&exec).map(|c| exec.remember(c)))
                        .await
                        .map_err(|message| ApiError::Transport {
                            path: path.into(),
                            message,
                        })?;
                    renewed = true;
                    continue;
                }
            }
            return Ok(response);
        }
    }

    async fn token(&self, path: &str) -> Result<Option<String>, ApiError> {
        Ok(match &self.inner.auth {
            Auth::None => None,
            Auth::Token(token) => Some(token.clone()),
            // Read at every request (they are a handful a minute), off the
            // async threads: a kubeconfig's tokenFile may be on a slow disk.
            Auth::TokenFile(file) => {
                let file = file.clone();
                let read = blocking(move || {
                    std::fs::read_to_string(&file)
                        .map_err(|e| format!("token file {}: {e}", file.display()))
                });
                Some(read.await.map_err(|message| ApiError::Transport {
                    path: path.into(),
                    message,
                })?)
            }
            Auth::Exec(exec) => exec.token(),
        })
    }
}

/// `call` within [`REQUEST_TIMEOUT`].
async fn within<T>(
    path: &str,
    call: impl std::future::Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    tokio::time::timeout(REQUEST_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| {
            Err(ApiError::Transport {
                path: path.into(),
                message: format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()),
            })
        })
}

/// `f` on the blocking pool; its panic is an error like its others.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r)
}

/// hyper-util's error says only "client error (Connect)": the cause is
/// in its sources.
fn transport_message(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

async fn status_error(path: &str, response: Response<hyper::body::Incoming>) -> ApiError {
    let code = response.status();
    let body = Limited::new(response.into_body(), 64 * 1024)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let status: Status = serde_json::from_slice(&body).unwrap_or_default();
    ApiError::Status {
        path: path.into(),
        code: code.as_u16(),
        reason: if status.reason.is_empty() {
            code.canonical_reason().unwrap_or("").to_string()
        } else {
            status.reason
        },
        message: if status.message.is_empty() {
            String::from_utf8_lossy(&body).chars().take(200).collect()
        } else {
            status.message
        },
    }
}

#[cfg(test)]
mod tests;
