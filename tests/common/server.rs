//! Starts the real `dind-injector serve` binary and talks to it over real TLS.

use super::{bin, temp_dir};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Runs `dind-injector certs --out dir` (a new serving cert, same CA).
pub fn issue_certs(dir: &Path, days: u32) {
    let status = Command::new(bin())
        .args(["certs", "--out"])
        .arg(dir)
        .args(["--days", &days.to_string()])
        .stderr(Stdio::null())
        .status()
        .expect("run certs");
    assert!(status.success(), "certs failed");
}

pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub metrics: SocketAddr,
    pub certs: PathBuf,
    pub log: PathBuf,
}

impl Server {
    /// Starts the server with dev certificates and fast test timings; `extra`
    /// flags override the defaults (clap takes the last occurrence).
    pub fn start(extra: &[&str]) -> Server {
        Self::start_with_env(extra, &[])
    }

    /// As [`Server::start`], with extra environment variables.
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Server {
        let certs = temp_dir("server");
        issue_certs(&certs, 30);
        let log = certs.join("server.log");
        let (cert, key) = (certs.join("tls.crt"), certs.join("tls.key"));
        let defaults = [
            ("--addr", "127.0.0.1:0"),
            ("--metrics-addr", "127.0.0.1:0"),
            ("--tls-cert", cert.to_str().expect("utf8")),
            ("--tls-key", key.to_str().expect("utf8")),
            ("--log-format", "json"),
            ("--cert-reload-interval", "100ms"),
            ("--shutdown-delay", "200ms"),
        ];
        let mut args: Vec<&str> = vec!["serve"];
        for (flag, value) in defaults {
            if !extra.contains(&flag) {
                args.extend([flag, value]);
            }
        }
        args.extend(extra);
        let mut child = Command::new(bin())
            .args(&args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read listening line");
        let field = |name: &str| -> SocketAddr {
            let start = line.find(name).unwrap_or_else(|| {
                panic!(
                    "no {name} in {line:?}; log: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
            let rest = &line[start + name.len()..];
            let rest = rest.split_once("://").map_or(rest, |(_, r)| r);
            rest.split('/')
                .next()
                .expect("addr")
                .parse()
                .expect("socket addr")
        };
        let addr = field("webhook=");
        let metrics = field("metrics=");
        Server {
            child,
            addr,
            metrics,
            certs,
            log,
        }
    }

    pub fn ca(&self) -> PathBuf {
        self.certs.join("ca.crt")
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([format!("-{sig}"), self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit; its exit status.
    pub fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log once it contains every one of `needles` (the server's writer
    /// thread writes lines a little after the answer: up to its 2 ms linger
    /// and a write), or as it is after 5 s.
    pub async fn log_with(&self, needles: &[&str]) -> String {
        settled(
            || async { self.log_text() },
            |text| needles.iter().all(|n| text.contains(n)),
            Duration::from_millis(20),
        )
        .await
    }

    /// The metrics once they contain `line` (background tasks such as the
    /// sidecar-mode detection report asynchronously), or as they are after 5 s.
    pub async fn metrics_with(&self, line: &str) -> String {
        settled(
            || self.metrics_text(),
            |text| text.contains(line),
            Duration::from_millis(50),
        )
        .await
    }

    pub async fn metrics_text(&self) -> String {
        let (_, text) = plain_get(self.metrics, "/metrics")
            .await
            .expect("metrics port answers");
        text
    }
}

/// What `read` gives once `done` holds for it, read every `every`, or as
/// it is after 5 s (the caller's assertion then says what is missing).
async fn settled<F: std::future::Future<Output = String>>(
    mut read: impl FnMut() -> F,
    done: impl Fn(&str) -> bool,
    every: Duration,
) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = read().await;
        if done(&text) || std::time::Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(every).await;
    }
}

/// GET `path` over plain HTTP/1.1 (the metrics and probes port): the status
/// and the whole response, head included.
pub async fn plain_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut tcp = TcpStream::connect(addr).await?;
    let head = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    tcp.write_all(head.as_bytes()).await?;
    let mut out = String::new();
    tcp.read_to_string(&mut out).await?;
    let status = out
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {out:?}")))?;
    Ok((status, out))
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.certs);
    }
}

/// A rustls client trusting only the dev CA, offering `alpn`.
pub fn client_config(ca: &Path, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("ca file") {
        roots.add(cert.expect("ca cert")).expect("add ca");
    }
    let provider = dind_injector::crypto::provider();
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

pub async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").expect("name");
    TlsConnector::from(config).connect(name, tcp).await
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    H1,
    H2,
}

/// One HTTP connection of the given protocol.
pub enum Conn {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

pub async fn connect(addr: SocketAddr, ca: &Path, proto: Proto) -> std::io::Result<Conn> {
    let alpn: &[&[u8]] = match proto {
        Proto::H1 => &[b"http/1.1"],
        Proto::H2 => &[b"h2"],
    };
    let tls = tls_connect(addr, client_config(ca, alpn)).await?;
    let io = TokioIo::new(tls);
    let map = |e: hyper::Error| std::io::Error::other(e);
    Ok(match proto {
        Proto::H1 => {
            let (send, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(map)?;
            tokio::spawn(conn);
            Conn::H1(send)
        }
        Proto::H2 => {
            let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(map)?;
            tokio::spawn(conn);
            Conn::H2(send)
        }
    })
}

pub struct Reply {
    pub status: u16,
    pub version: hyper::Version,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Conn {
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<Reply, hyper::Error> {
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(format!("https://localhost{path}"));
        if let Some(ct) = content_type {
            builder = builder.header("content-type", ct);
        }
        let request = builder.body(Full::new(Bytes::from(body))).expect("request");
        let response = match self {
            Conn::H1(send) => {
                send.ready().await?;
                send.send_request(request).await?
            }
            Conn::H2(send) => {
                send.ready().await?;
                send.send_request(request).await?
            }
        };
        let status = response.status().as_u16();
        let version = response.version();
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Reply {
            status,
            version,
            body,
        })
    }

    pub async fn review(&mut self, review: &Value) -> Result<Reply, hyper::Error> {
        self.request(
            "POST",
            "/mutate",
            Some("application/json"),
            serde_json::to_vec(review).expect("json"),
        )
        .await
    }
}

/// An AdmissionReview for `pod`, as the apiserver sends it.
pub fn review_for(api_version: &str, uid: &str, pod: &Value) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "ci",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:job-controller"},
            "object": pod,
            "oldObject": null,
            "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
        }
    })
}

/// Sends raw bytes over an HTTP/1.1 TLS connection and reads until close.
pub async fn raw_http1(addr: SocketAddr, ca: &Path, bytes: &[u8]) -> String {
    let mut tls = tls_connect(addr, client_config(ca, &[b"http/1.1"]))
        .await
        .expect("tls");
    // The server may answer and close before all of it is written.
    let _ = tls.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

pub fn fixture(name: &str) -> Value {
    super::read_json(&super::root().join(format!("tests/fixtures/pods/{name}.json")))
}
