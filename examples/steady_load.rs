//! An open-loop load generator for `make bench-load`'s half-load rows:
//! requests leave at evenly spaced times, whatever the answers do, over C
//! HTTP/2 connections of at most M streams each.
//!
//! h2load's `--rps` cannot offer a steady load above 100 requests per second
//! per connection: its timer fires at most every 10 ms (`max(0.01, 1/rps)` in
//! nghttp2's src/h2load.cc) and then submits every request due, up to the
//! stream limit at once. At 1,750 req/s per connection × 8 connections the
//! server meets all 64 streams at once, every tick: full concurrency for part
//! of each tick and idle for the rest, not half the load
//! (docs/performance.md, "Sixth round").
//!
//! One thread paces and sends: a timerfd wakes it when the next request is
//! due (`Ticker`). Latency is taken from the moment the request is handed to its connection, as h2load
//! does, and also from the moment it was due: that one includes any wait for
//! a free stream or for this process, so a server that falls behind cannot
//! hide it (coordinated omission).
//!
//! Usage: steady_load URL CA_FILE BODY_FILE CONNECTIONS STREAMS RATE SECONDS WARMUP_SECONDS
//! Prints one line: `req/s p50_ms p99_ms p99_from_due_ms failed`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// What became of one request.
#[derive(Clone, Copy)]
struct Outcome {
    /// When it was due, from the start.
    due: Duration,
    /// When it was handed to its connection, from the start.
    sent: Duration,
    /// When its whole answer had arrived (None: it failed).
    done: Option<Duration>,
}

struct Load {
    url: hyper::Uri,
    ca: String,
    body: Bytes,
    connections: usize,
    streams: usize,
    rate: f64,
    seconds: f64,
    warmup: f64,
    /// Wake up only at multiples of this (`TICK_US` in the environment;
    /// 0: at each request's own time).
    tick: Duration,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, ca, body, connections, streams, rate, seconds, warmup] = args.as_slice() else {
        anyhow::bail!(
            "usage: steady_load URL CA_FILE BODY_FILE CONNECTIONS STREAMS RATE SECONDS WARMUP_SECONDS"
        );
    };
    let number = |name: &str, value: &str| -> anyhow::Result<f64> {
        value
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v > 0.0)
            .with_context(|| format!("{name} must be a positive number, not {value:?}"))
    };
    let count = |name: &str, value: &str| -> anyhow::Result<usize> {
        value
            .parse::<usize>()
            .ok()
            .filter(|v| *v > 0)
            .with_context(|| format!("{name} must be a positive whole number, not {value:?}"))
    };
    let tick = match std::env::var("TICK_US") {
        Ok(us) => Duration::from_micros(us.parse().with_context(|| format!("bad TICK_US {us:?}"))?),
        Err(_) => Duration::ZERO,
    };
    let load = Load {
        tick,
        url: url.parse().with_context(|| format!("bad URL {url:?}"))?,
        ca: ca.clone(),
        body: Bytes::from(std::fs::read(body).with_context(|| format!("cannot read {body}"))?),
        connections: count("CONNECTIONS", connections)?,
        streams: count("STREAMS", streams)?,
        rate: number("RATE", rate)?,
        seconds: number("SECONDS", seconds)?,
        warmup: warmup
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .with_context(|| format!("WARMUP_SECONDS must be 0 or more, not {warmup:?}"))?,
    };
    let total = (load.rate * (load.warmup + load.seconds)).round() as u32;
    let interval = Duration::from_secs_f64(1.0 / load.rate);
    let outcomes = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run(&load, total, interval))?;
    // Every request due after the warm-up counts, answered or not (one
    // that never answered left no outcome).
    let warmup = Duration::from_secs_f64(load.warmup);
    let due = (0..total).filter(|&i| interval * i >= warmup).count();
    println!("{}", summary(&outcomes, warmup, due, load.seconds));
    Ok(())
}

async fn run(load: &Load, total: u32, interval: Duration) -> anyhow::Result<Vec<Outcome>> {
    let mut senders = Vec::with_capacity(load.connections);
    for _ in 0..load.connections {
        senders.push((
            connect(load).await?,
            Arc::new(tokio::sync::Semaphore::new(load.streams)),
        ));
    }
    let outcomes = Arc::new(Mutex::new(Vec::with_capacity(total as usize)));
    let ticker = Ticker::new()?;
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut index = 0;
    while index < total {
        let now = start.elapsed();
        while index < total && interval * index <= now {
            let (sender, streams) = &senders[index as usize % load.connections];
            let (mut sender, streams) = (sender.clone(), streams.clone());
            let request = hyper::Request::post(load.url.clone())
                .header("content-type", "application/json")
                .body(Full::new(load.body.clone()))?;
            let outcomes = outcomes.clone();
            let due = interval * index;
            tasks.spawn(async move {
                let _stream = streams.acquire_owned().await;
                let sent = start.elapsed();
                let answer = async {
                    let response = sender.send_request(request).await.ok()?;
                    let ok = response.status().is_success();
                    let body = response.into_body().collect().await.ok()?;
                    (ok && !body.to_bytes().is_empty()).then_some(())
                };
                let done = answer.await.map(|()| start.elapsed());
                if let Ok(mut outcomes) = outcomes.lock() {
                    outcomes.push(Outcome { due, sent, done });
                }
            });
            index += 1;
        }
        // Reap finished tasks as we go, so the set stays small.
        while tasks.try_join_next().is_some() {}
        if index < total {
            let next = interval * index;
            let next = match load.tick.as_nanos() as u64 {
                0 => next,
                tick => Duration::from_nanos((next.as_nanos() as u64).div_ceil(tick) * tick),
            };
            ticker.sleep(next.saturating_sub(start.elapsed())).await?;
        }
    }
    // Whatever has not answered ten seconds after the last request is failed.
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    let outcomes = outcomes
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    Ok(outcomes)
}

async fn connect(
    load: &Load,
) -> anyhow::Result<hyper::client::conn::http2::SendRequest<Full<Bytes>>> {
    let host = load.url.host().context("the URL has no host")?;
    let port = load.url.port_u16().unwrap_or(443);
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(&load.ca)? {
        roots.add(certificate?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .with_context(|| format!("cannot connect to {host}:{port}"))?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from(host.to_owned())?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// `req/s p50_ms p99_ms p99_from_due_ms failed` over the requests due after the warm-up.
fn summary(outcomes: &[Outcome], warmup: Duration, expected: usize, seconds: f64) -> String {
    let measured: Vec<&Outcome> = outcomes.iter().filter(|o| o.due >= warmup).collect();
    let answered: Vec<(Duration, Duration)> = measured
        .iter()
        .filter_map(|o| o.done.map(|done| (done - o.sent, done - o.due)))
        .collect();
    let failed = expected - answered.len().min(expected);
    let mut from_sent: Vec<Duration> = answered.iter().map(|a| a.0).collect();
    let mut from_due: Vec<Duration> = answered.iter().map(|a| a.1).collect();
    from_sent.sort_unstable();
    from_due.sort_unstable();
    let ms = |sorted: &[Duration], q: f64| {
        sorted
            .get(((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1)))
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    };
    // How late requests left (the pacing's accuracy, or a stream limit
    // reached), for whoever checks this tool: on standard error.
    let mut lag: Vec<Duration> = measured.iter().map(|o| o.sent - o.due).collect();
    lag.sort_unstable();
    eprintln!(
        "steady_load: {} due, {} answered; sent after due p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        expected,
        answered.len(),
        ms(&lag, 0.50),
        ms(&lag, 0.99),
        ms(&lag, 1.0),
    );
    // The rate achieved: answers over the span in which they were due.
    let rps = answered.len() as f64 / seconds;
    format!(
        "{rps:.0} {:.2} {:.2} {:.2} {failed}",
        ms(&from_sent, 0.50),
        ms(&from_sent, 0.99),
        ms(&from_due, 0.99)
    )
}

/// A timer of microsecond precision on the runtime's own thread: tokio's
/// timer wheel counts milliseconds, which at 14,000 req/s would send the
/// requests in bursts of 14; a thread of its own to pace them would cost a
/// wake-up of this one per request.
struct Ticker(tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>);

impl Ticker {
    fn new() -> anyhow::Result<Self> {
        use std::os::fd::FromRawFd as _;
        // The kernel may fire a sleeping thread's timers up to its slack
        // late (50 µs by default) to coalesce wake-ups: a request interval
        // here is about that long.
        // SAFETY: plain system call on this thread's own setting.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
        // SAFETY: plain system call; the descriptor is checked and then owned.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        anyhow::ensure!(
            fd >= 0,
            "timerfd_create: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: fd is a fresh descriptor nothing else owns.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        let interest = tokio::io::Interest::READABLE;
        // SAFETY: the AsyncFd owns the OwnedFd, which stays open as long as it.
        let fd = unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, interest) };
        Ok(Self(fd.map_err(std::io::Error::from)?))
    }

    async fn sleep(&self, wait: Duration) -> anyhow::Result<()> {
        use std::os::fd::AsRawFd as _;
        // A zero it_value would disarm the timer: a nanosecond is "now".
        let wait = wait.max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: wait.as_secs() as libc::time_t,
                tv_nsec: wait.subsec_nanos() as libc::c_long,
            },
        };
        let fd = self.0.get_ref().as_raw_fd();
        // SAFETY: spec is a valid itimerspec; the old value is not asked for.
        let set = unsafe { libc::timerfd_settime(fd, 0, &spec, std::ptr::null_mut()) };
        anyhow::ensure!(
            set == 0,
            "timerfd_settime: {}",
            std::io::Error::last_os_error()
        );
        loop {
            let mut ready = self.0.readable().await?;
            let mut expirations = [0u8; 8];
            // SAFETY: reads at most 8 bytes into an 8-byte buffer.
            let read = unsafe { libc::read(fd, expirations.as_mut_ptr().cast(), 8) };
            if read == 8 {
                return Ok(());
            }
            ready.clear_ready();
        }
    }
}
