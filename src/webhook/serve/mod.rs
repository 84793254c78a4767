//! `dind-injector serve`: the HTTPS AdmissionReview endpoint.
//!
//! A thin shell around the engine: flags and environment ([`Args`]), then
//! the server ([`server`]): TLS with reloadable certificates ([`tls`]), a
//! bounded accept loop ([`listener`]), the routes ([`routes`]), Prometheus
//! metrics on a separate plain-HTTP port ([`metrics`]) and `sidecarMode:
//! auto` ([`autodetect`]); glibc's malloc is told to give large blocks back
//! first (`allocator`).

mod allocator;
pub mod autodetect;
pub mod budget;
pub mod listener;
mod logging;
pub mod metrics;
pub mod namespaces;
pub mod routes;
pub mod server;
pub mod tls;
mod x509;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::engine::config::{Config, SidecarMode};
use crate::engine::{Engine, Mode};
use listener::Limits;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address of the HTTPS webhook endpoint.
    #[arg(long, env = "DIND_INJECTOR_ADDR", default_value = "0.0.0.0:8443")]
    pub addr: SocketAddr,
    /// Address of the plain-HTTP Prometheus endpoint (/metrics).
    #[arg(
        long,
        env = "DIND_INJECTOR_METRICS_ADDR",
        default_value = "0.0.0.0:9090"
    )]
    pub metrics_addr: SocketAddr,
    /// Serving certificate (PEM, leaf first); reloaded when it changes.
    #[arg(
        long,
        env = "DIND_INJECTOR_TLS_CERT",
        default_value = "/etc/dind-injector/tls/tls.crt"
    )]
    pub tls_cert: PathBuf,
    /// Serving key (PEM); reloaded when it changes.
    #[arg(
        long,
        env = "DIND_INJECTOR_TLS_KEY",
        default_value = "/etc/dind-injector/tls/tls.key"
    )]
    pub tls_key: PathBuf,
    /// Require every client of the webhook port to present a certificate
    /// issued by this CA (PEM) for client authentication: the apiserver
    /// presents one through its AdmissionConfiguration `kubeConfigFile`.
    /// Read at start. The metrics and probes port is not affected.
    #[arg(long, env = "DIND_INJECTOR_CLIENT_CA", value_name = "FILE")]
    pub client_ca: Option<PathBuf>,
    /// Config file; every field defaults when absent.
    #[arg(long, env = "DIND_INJECTOR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log format: json (one object per line, for clusters) or text.
    #[arg(long, env = "DIND_INJECTOR_LOG_FORMAT", default_value = "json", value_parser = ["json", "text"])]
    pub log_format: String,
    /// How often the certificate files are checked for changes.
    #[arg(long, env = "DIND_INJECTOR_CERT_RELOAD_INTERVAL", default_value = "2s", value_parser = parse_duration)]
    pub cert_reload_interval: Duration,
    /// Readiness off to listener closed, on SIGTERM.
    #[arg(long, env = "DIND_INJECTOR_SHUTDOWN_DELAY", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,
    /// How long in-flight requests may take to finish after the listener closed.
    #[arg(long, env = "DIND_INJECTOR_SHUTDOWN_GRACE", default_value = "20s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// Open connections beyond this are closed at once (each may hold up to
    /// 64 KiB of unread request data, plus its TLS buffers).
    #[arg(long, env = "DIND_INJECTOR_MAX_CONNECTIONS", default_value_t = 256)]
    pub max_connections: usize,
    /// Open connections to the metrics and probes port beyond this are
    /// closed at once (apart from the webhook's: a flood of reviews cannot
    /// starve the kubelet's probes).
    #[arg(
        long,
        env = "DIND_INJECTOR_METRICS_MAX_CONNECTIONS",
        default_value_t = 32
    )]
    pub metrics_max_connections: usize,
    #[arg(long, env = "DIND_INJECTOR_TLS_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub tls_handshake_timeout: Duration,
    /// HTTP/1 request headers must arrive within this time.
    #[arg(long, env = "DIND_INJECTOR_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,
    /// Connections with no traffic for this long are closed.
    #[arg(long, env = "DIND_INJECTOR_IDLE_TIMEOUT", default_value = "90s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// The request body must arrive within this time.
    #[arg(long, env = "DIND_INJECTOR_BODY_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub body_timeout: Duration,
    /// How often `sidecarMode: auto` asks the cluster for its versions again.
    #[arg(long, env = "DIND_INJECTOR_DETECT_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub detect_interval: Duration,
    /// Larger bodies get 413 (the apiserver sends at most about 3 MiB).
    #[arg(long, env = "DIND_INJECTOR_MAX_BODY_BYTES", default_value_t = 3 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Bodies being read or reviewed may add up to this many bytes; more
    /// waits, then gets 503 (memory bounded whatever the core count).
    #[arg(long, env = "DIND_INJECTOR_MAX_INFLIGHT_BYTES", default_value_t = 12 * 1024 * 1024)]
    pub max_inflight_bytes: usize,
    /// Reviews parsed and decided at once, on threads of their own, when
    /// small: together they parse at most --max-body-bytes, so a largest
    /// body is reviewed alone. More waits, then gets 503.
    #[arg(
        long,
        env = "DIND_INJECTOR_MAX_CONCURRENT_REVIEWS",
        default_value_t = 4
    )]
    pub max_concurrent_reviews: usize,
    /// How long a request waits for room in those two budgets.
    #[arg(long, env = "DIND_INJECTOR_OVERLOAD_WAIT", default_value = "3s", value_parser = parse_duration)]
    pub overload_wait: Duration,
}

/// Bodies up to this size (real pods are a few KiB; the largest real
/// ones, with long env lists and many containers, some tens) have a lane of
/// their own in the budgets ([`budget`]), so a flood of large bodies does
/// not hold up the apiserver's reviews.
const SMALL_BODY: usize = 128 * 1024;

/// Bodies up to this size are reviewed on the async thread that read them
/// (see [`budget::Budget::inline_body`]): a realistic runner pod's review
/// costs about 50 µs, one of this size well under a millisecond, which
/// keeps the runtime's threads responsive; anything larger, up to the
/// worst-case bodies the budgets are for, goes to the blocking pool.
const INLINE_BODY: usize = 32 * 1024;

/// `250ms`, `2s`, `1m`, or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration: expected e.g. 250ms, 2s, 1m");
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = number.parse().map_err(|_| bad())?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(bad()),
    }
}

pub fn run(args: Args) -> Result<()> {
    let lines = logging::init(&args.log_format)?;
    let result = serve(args);
    if let Some(lines) = lines {
        lines.flush(Duration::from_secs(2));
    }
    result
}

fn serve(args: Args) -> Result<()> {
    if let Err(setting) = allocator::give_back_large_blocks() {
        tracing::warn!(
            setting,
            "the C library refused a malloc setting: memory freed after large bodies may stay resident"
        );
    }
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if config.sidecar_mode == SidecarMode::Auto {
        tracing::info!("sidecarMode auto: classic until the cluster has answered");
    }
    let engine = Engine::new(config, Mode::Classic)?;
    let options = server::Options {
        addr: args.addr,
        metrics_addr: args.metrics_addr,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        client_ca: args.client_ca,
        cert_reload_interval: args.cert_reload_interval,
        shutdown_delay: args.shutdown_delay,
        limits: Limits {
            max_connections: args.max_connections,
            handshake_timeout: args.tls_handshake_timeout,
            header_read_timeout: args.header_read_timeout,
            idle_timeout: args.idle_timeout,
            shutdown_grace: args.shutdown_grace,
        },
        metrics_max_connections: args.metrics_max_connections,
        max_body_bytes: args.max_body_bytes,
        body_timeout: args.body_timeout,
        budget: budget::Budget {
            inflight_bytes: args.max_inflight_bytes,
            concurrent_reviews: args.max_concurrent_reviews,
            wait: args.overload_wait,
            small_body: SMALL_BODY,
            inline_body: INLINE_BODY,
        },
        detect_interval: args.detect_interval,
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(server::run(options, engine))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        for bad in ["", "s", "1h", "-1s", "1.5s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
