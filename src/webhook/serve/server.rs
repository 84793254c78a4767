//! The server itself: binds the ports, wires certificates, routes, metrics
//! and auto-detection together, and shuts down gracefully.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{allocator, autodetect, budget, listener, metrics, namespaces, routes, tls};
use crate::engine::config::SidecarMode;
use crate::engine::{Engine, Mode};

/// The engine in use; replaced (not mutated) when `auto` changes meaning.
pub struct EngineHandle(RwLock<Arc<Engine>>);

impl EngineHandle {
    pub fn new(engine: Engine) -> Self {
        Self(RwLock::new(Arc::new(engine)))
    }

    pub fn get(&self) -> Arc<Engine> {
        // A poisoned lock means a panic while swapping an Arc: the Arc is whole.
        match self.0.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn set_auto_mode(&self, mode: Mode) {
        let current = self.get();
        if current.auto_mode() == mode {
            return;
        }
        let next = Arc::new(current.with_auto_mode(mode));
        match self.0.write() {
            Ok(mut guard) => *guard = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
    }
}

/// Whether the webhook should receive traffic: once its certificate is
/// loaded and until shutdown begins. One place decides, and the
/// `dind_injector_ready` gauge follows it.
#[derive(Clone)]
pub struct Readiness {
    ready: Arc<AtomicBool>,
    metrics: Arc<metrics::Metrics>,
}

impl Readiness {
    fn new(metrics: Arc<metrics::Metrics>) -> Self {
        Self {
            ready: Arc::default(),
            metrics,
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    fn set(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
        self.metrics.set_ready(ready);
    }
}

/// How long `serve` waits for the first `sidecarMode: auto` answer before it
/// starts answering reviews (in classic until the answer comes).
const FIRST_DETECTION_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct Options {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// Require client certificates issued by this CA (PEM).
    pub client_ca: Option<PathBuf>,
    pub cert_reload_interval: Duration,
    /// Time between readiness going false and the listener closing, so that
    /// endpoints controllers and load balancers stop sending first.
    pub shutdown_delay: Duration,
    pub limits: listener::Limits,
    /// The metrics and probes port's connection limit (its timeouts are
    /// the webhook's).
    pub metrics_max_connections: usize,
    pub max_body_bytes: usize,
    pub body_timeout: Duration,
    pub budget: budget::Budget,
    /// How often `sidecarMode: auto` asks the cluster again.
    pub detect_interval: Duration,
}

/// Runs the server until SIGTERM or SIGINT, then shuts down gracefully.
pub async fn run(options: Options, engine: Engine) -> anyhow::Result<()> {
    let trimmer = allocator::Trimmer::start();
    let gate = budget::Gate::new(options.budget.clone(), options.max_body_bytes)?
        .on_large_drained(move || trimmer.request());
    let provider = crate::crypto::provider();
    let store = Arc::new(
        tls::CertStore::load(&options.tls_cert, &options.tls_key, provider.clone())
            .context("cannot load the serving certificate")?,
    );
    let metrics = Arc::new(metrics::Metrics::new());
    metrics.set_cert_expiry(store.not_after());
    let tls_config = Arc::new(
        tls::server_config(store.clone(), provider, options.client_ca.as_deref())
            .context("cannot build the TLS configuration")?,
    );
    let (listener, metrics_listener) = bind(&options).await?;
    let addr = listener.local_addr().context("webhook address")?;
    let metrics_addr = metrics_listener.local_addr().context("metrics address")?;

    let readiness = Readiness::new(metrics.clone());
    let configured = engine.config().sidecar_mode;
    let namespace_profiles = engine.config().namespace_profiles;
    let engine = Arc::new(EngineHandle::new(engine));
    let namespaces = namespace_profiles.then(Arc::default);
    let registry = crate::webhook::registry::from_config(&engine.get().config().registry).await?;
    let app = routes::router(Arc::new(routes::AppState {
        namespaces: namespaces.clone(),
        engine: engine.clone(),
        registry,
        metrics: metrics.clone(),
        readiness: readiness.clone(),
        max_body_bytes: options.max_body_bytes,
        body_timeout: options.body_timeout,
        gate,
    }));

    let background = Background::start(&options, &store, &metrics, &readiness, metrics_listener);
    let detection = start_detection(
        configured,
        &engine,
        &metrics,
        &options,
        background.until_done(),
    )
    .await;
    let namespace_watch = match namespaces {
        Some(cache) => Some(start_namespace_watch(cache, background.until_done()).await),
        None => None,
    };

    readiness.set(true);
    tracing::info!(%addr, %metrics_addr, not_after = ?store.not_after(), "serving");
    // One line on stdout for people and scripts: where to send requests.
    println!("listening webhook=https://{addr}/mutate metrics=http://{metrics_addr}/metrics");

    let shutdown = shutdown_requested(readiness, options.shutdown_delay);
    let conn_metrics = metrics.clone();
    let on_connections = move |d| conn_metrics.connections(d);
    listener::serve(
        listener,
        listener::Transport::Tls(tls_config),
        app,
        options.limits,
        shutdown,
        on_connections,
    )
    .await;

    background.stop(detection, namespace_watch).await;
    tracing::info!("stopped");
    Ok(())
}

/// The tasks that live as long as the webhook listener: the metrics
/// server and the certificate watcher (and, started apart, detection).
struct Background {
    /// Fires after the webhook listener has drained; every task stops then.
    done: watch::Sender<bool>,
    metrics: JoinHandle<()>,
    watcher: JoinHandle<()>,
}

impl Background {
    fn start(
        options: &Options,
        store: &Arc<tls::CertStore>,
        metrics: &Arc<metrics::Metrics>,
        readiness: &Readiness,
        metrics_listener: TcpListener,
    ) -> Self {
        let (done, _) = watch::channel(false);
        let limits = listener::Limits {
            max_connections: options.metrics_max_connections,
            // Scrapes and probes are quick; do not hold the exit for them.
            shutdown_grace: Duration::from_secs(1),
            ..options.limits.clone()
        };
        let metrics_task = tokio::spawn(listener::serve(
            metrics_listener,
            listener::Transport::Plain,
            metrics_app(metrics.clone(), readiness.clone()),
            limits,
            done_signal(done.subscribe()),
            |_| {},
        ));
        let watch_metrics = metrics.clone();
        let watcher = tokio::spawn(store.clone().watch(
            options.cert_reload_interval,
            move |s| watch_metrics.set_cert_expiry(s.not_after()),
            done_signal(done.subscribe()),
        ));
        Self {
            done,
            metrics: metrics_task,
            watcher,
        }
    }

    /// Resolves when [`Background::stop`] is called.
    fn until_done(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        done_signal(self.done.subscribe())
    }

    async fn stop(self, detection: Option<JoinHandle<()>>, namespaces: Option<JoinHandle<()>>) {
        let _ = self.done.send(true);
        let _ = self.watcher.await;
        for task in [detection, namespaces].into_iter().flatten() {
            let _ = task.await;
        }
        if let Err(e) = self.metrics.await {
            tracing::warn!(error = %e, "metrics server task failed");
        }
    }
}

/// The webhook port and the metrics port.
async fn bind(options: &Options) -> anyhow::Result<(TcpListener, TcpListener)> {
    let listener = TcpListener::bind(options.addr)
        .await
        .with_context(|| format!("cannot listen on {}", options.addr))?;
    let metrics_listener = TcpListener::bind(options.metrics_addr)
        .await
        .with_context(|| format!("cannot listen on {} for metrics", options.metrics_addr))?;
    Ok((listener, metrics_listener))
}

/// Resolves once `done` is true (or its sender is gone).
async fn done_signal(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|done| *done).await;
}

/// Starts `sidecarMode: auto` detection (a configured mode is in force at
/// once) and returns when the first answer is: no review before `auto` has
/// its meaning, or a pod admitted in the first moments after a (re)start
/// would get classic while the rest of its Job gets native (found by the
/// e2e suite). An apiserver that does not answer holds the server back for
/// [`FIRST_DETECTION_WAIT`] at most.
async fn start_detection(
    configured: SidecarMode,
    engine: &Arc<EngineHandle>,
    metrics: &Arc<metrics::Metrics>,
    options: &Options,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Option<JoinHandle<()>> {
    if configured != SidecarMode::Auto {
        metrics.set_sidecar_mode(Mode::resolve(configured, Mode::Classic).as_str());
        return None;
    }
    let (first_detection, detected) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(autodetect::run(
        engine.clone(),
        metrics.clone(),
        options.detect_interval,
        first_detection,
        stop,
    ));
    if tokio::time::timeout(FIRST_DETECTION_WAIT, detected)
        .await
        .is_err()
    {
        tracing::warn!(
            wait_s = FIRST_DETECTION_WAIT.as_secs(),
            "sidecarMode auto: no answer from the cluster yet; classic until it comes"
        );
    }
    Some(task)
}

/// Starts the namespace cache (`namespaceProfiles`) and returns once it
/// holds a complete list. Unbounded, on purpose: a review answered before
/// then could give a pod the wrong profile (without its registry CA, say),
/// and the webhook's `failurePolicy: Fail` makes "not answering yet" the
/// safe state. The webhook port is bound, but not served, meanwhile; the
/// log says why every time the reason changes.
async fn start_namespace_watch(
    cache: Arc<namespaces::NamespaceProfiles>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    let (synced, first_list) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(namespaces::run(cache, synced, stop));
    tracing::info!("namespaceProfiles: waiting for the first list of namespaces");
    // The sender is dropped without a list only when the task stopped.
    let _ = first_list.await;
    task
}

/// Resolves on SIGTERM or SIGINT, after readiness went false and `delay`
/// passed, so that endpoints and load balancers stop sending first.
async fn shutdown_requested(readiness: Readiness, delay: Duration) {
    let signal = termination().await;
    tracing::info!(
        signal,
        delay_ms = delay.as_millis() as u64,
        "shutting down: readiness off, then stop accepting"
    );
    readiness.set(false);
    tokio::time::sleep(delay).await;
}

async fn termination() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        _ => {
            // Without signal handlers the process can only be killed; say so.
            tracing::error!("cannot install signal handlers; graceful shutdown is unavailable");
            std::future::pending().await
        }
    }
}

/// The plain-HTTP port: `/metrics` for Prometheus, and the probes.
fn metrics_app(metrics: Arc<metrics::Metrics>, readiness: Readiness) -> axum::Router {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let metrics = metrics.clone();
                async move {
                    match metrics.encode() {
                        Ok(text) => (
                            [(
                                header::CONTENT_TYPE,
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            )],
                            text,
                        )
                            .into_response(),
                        Err(e) => (
                            StatusCode::INTERNAL_SERVER_ERROR,
                            format!("cannot encode metrics: {e}\n"),
                        )
                            .into_response(),
                    }
                }
            }),
        )
        .merge(routes::probes(readiness))
}
