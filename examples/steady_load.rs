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
//! due (`Ticker`), and it sends what is due once its runtime polls for
//! events again, between batches of other tasks (tens of microseconds late,
//! which standard error reports). Latency is taken from the moment the
//! request is handed to its connection, as h2load does, and also from the
//! moment it was due: that one includes any wait for a free stream or for
//! this process, so a server that falls behind cannot hide it (coordinated
//! omission).
//!
//! Usage: steady_load URL CA_FILE BODY_FILE CONNECTIONS STREAMS RATE SECONDS WARMUP_SECONDS
//! Prints one line: `req/s p50_ms p99_ms p99_from_due_ms failed`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;

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
        Ok(us) => Duration::from_micros(
            us.parse::<u64>()
                .ok()
                .filter(|us| *us <= 1_000_000)
                .with_context(|| {
                    format!("TICK_US must be 0 to 1000000 microseconds, not {us:?}")
                })?,
        ),
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
            .filter(|v| v.is_finite() && (0.0..=3600.0).contains(v))
            .with_context(|| format!("WARMUP_SECONDS must be 0 to 3600, not {warmup:?}"))?,
    };
    let interval = Duration::try_from_secs_f64(1.0 / load.rate)
        .ok()
        .filter(|i| !i.is_zero())
        .with_context(|| format!("RATE {rate} gives no usable interval between requests"))?;
    let total = (load.rate * (load.warmup + load.seconds)).round();
    anyhow::ensure!(
        total <= 100e6,
        "RATE × (WARMUP_SECONDS + SECONDS) is {total:.0} requests: at most 100 million"
    );
    let total = total as u32;
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
    let tls = tls_client(&load.ca)?;
    let mut senders = Vec::with_capacity(load.connections);
    for _ in 0..load.connections {
        senders.push((
            connect(load, &tls).await?,
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
    // Taken, not copied: tasks still unanswered hold the Arc, and push
    // nothing more that would count.
    let mut outcomes = outcomes.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    Ok(std::mem::take(&mut *outcomes))
}

/// A TLS client trusting only the PEM certificates in `ca`, offering h2,
/// shared by the connections.
fn tls_client(ca: &str) -> anyhow::Result<tokio_rustls::TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca).with_context(|| format!("cannot read {ca}"))?;
    // The webhook's own reading of a CA file: at least one certificate.
    let certificates = dind_injector::webhook::https::certificates(&pem)
        .map_err(|e| anyhow::anyhow!("{ca}: {e}"))?;
    for certificate in certificates {
        roots
            .add(certificate)
            .with_context(|| format!("a certificate in {ca} is not a usable CA"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    // Every connection makes a full handshake, as the apiserver's client
    // (Go's, without a session cache) does: resuming the first one's
    // session would run server code no real client of ours makes it run.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// One HTTP/2 connection; a server that accepts and then stalls fails it
/// after 10 s instead of hanging the run.
async fn connect(
    load: &Load,
    tls: &tokio_rustls::TlsConnector,
) -> anyhow::Result<hyper::client::conn::http2::SendRequest<Full<Bytes>>> {
    let host = load.url.host().context("the URL has no host")?;
    let port = load.url.port_u16().unwrap_or(443);
    let name = ServerName::try_from(host.to_owned())
        .with_context(|| format!("{host} is no name or address to check a certificate against"))?;
    let handshakes = async {
        let tcp = tokio::net::TcpStream::connect((host, port)).await?;
        tcp.set_nodelay(true)?;
        let tls = tls.connect(name, tcp).await?;
        let (sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await?;
        anyhow::Ok((sender, connection))
    };
    let (sender, connection) = tokio::time::timeout(Duration::from_secs(10), handshakes)
        .await
        .map_err(|_| anyhow::anyhow!("timed out after 10 s"))
        .and_then(|handshaken| handshaken)
        .with_context(|| format!("cannot connect to {host}:{port} over TLS and HTTP/2"))?;
    tokio::spawn(connection);
    Ok(sender)
}

/// `req/s p50_ms p99_ms p99_from_due_ms failed` over the requests due after
/// the warm-up, in the order `benches/load.sh` reads them. Percentiles are
/// the value at rank ⌊n·q⌋, as load.sh computes h2load's, so the columns compare.
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
    // Answers to the requests due in the measured span, per second of it.
    // An answer that came late still counts here: a server that falls
    // behind shows in the p99 from due and, past the drain, in `failed`.
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
            // A readiness left from the previous expiry reads nothing
            // (EAGAIN) and is cleared by try_io; then this waits for the new one.
            let mut ready = self.0.readable().await?;
            let read = ready.try_io(|_| {
                let mut expirations = [0u8; 8];
                // SAFETY: reads at most 8 bytes into an 8-byte buffer.
                let read = unsafe { libc::read(fd, expirations.as_mut_ptr().cast(), 8) };
                match read {
                    8 => Ok(()),
                    _ => Err(std::io::Error::last_os_error()),
                }
            });
            match read {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => return Err(anyhow::Error::new(e).context("reading the timerfd")),
                Err(_would_block) => continue,
            }
        }
    }
}
