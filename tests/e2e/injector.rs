//! The webhook under test: the real `dind-injector serve`, with certificates
//! from the real `dind-injector certs` and the project's own config file, on
//! fixed ports so it can be stopped and started again at the same URL.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::procs::{eventually, free_port, Proc};

/// The binary cargo built for this test, or `DIND_E2E_INJECTOR` (the
/// benchmark measures the release build).
pub fn bin() -> PathBuf {
    std::env::var_os("DIND_E2E_INJECTOR").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_dind-injector")),
        PathBuf::from,
    )
}

/// `dind-injector certs --out DIR`: a dev CA (kept when `dir` has one) and
/// a serving certificate for localhost and 127.0.0.1.
pub fn certs(dir: &Path) -> Result<()> {
    crate::sandbox::output(bin(), &["certs", "--out", &dir.to_string_lossy()]).map(drop)
}

pub struct Injector {
    pub addr: SocketAddr,
    pub metrics: SocketAddr,
    pub certs: PathBuf,
    dir: PathBuf,
    kubeconfig: PathBuf,
    config: PathBuf,
    /// `--client-ca`: the cluster CA, which issued the apiserver's
    /// webhook client certificate.
    client_ca: PathBuf,
    /// A client certificate from that CA, for the suite's own requests.
    client: (PathBuf, PathBuf),
    running: Option<(Proc, BufReader<ChildStdout>)>,
}

impl Injector {
    pub fn new(
        dir: &Path,
        kubeconfig: &Path,
        config: &Path,
        client_ca: &Path,
        client: &(PathBuf, PathBuf),
    ) -> Result<Injector> {
        let injector = Injector {
            addr: SocketAddr::from(([127, 0, 0, 1], free_port()?)),
            metrics: SocketAddr::from(([127, 0, 0, 1], free_port()?)),
            certs: dir.join("injector-certs"),
            dir: dir.to_path_buf(),
            kubeconfig: kubeconfig.to_path_buf(),
            config: config.to_path_buf(),
            client_ca: client_ca.to_path_buf(),
            client: client.clone(),
            running: None,
        };
        injector.issue_certs()?;
        Ok(injector)
    }

    /// `dind-injector certs --out DIR`: the CA is kept, the serving
    /// certificate is new; the server picks it up from the watched files.
    pub fn issue_certs(&self) -> Result<()> {
        certs(&self.certs)
    }

    pub fn ca_pem(&self) -> Result<String> {
        Ok(std::fs::read_to_string(self.certs.join("ca.crt"))?)
    }

    /// The config file `serve` reads at its next start; the one it had.
    pub fn set_config(&mut self, config: &Path) -> PathBuf {
        std::mem::replace(&mut self.config, config.to_path_buf())
    }

    pub fn url(&self) -> String {
        format!("https://{}/mutate", self.addr)
    }

    /// Starts `serve` and returns once it prints its listening line.
    pub fn start(&mut self) -> Result<()> {
        ensure!(self.running.is_none(), "dind-injector is already running");
        let log = self.dir.join("injector.log");
        let mut cmd = Command::new(bin());
        cmd.arg("serve")
            .args(["--addr", &self.addr.to_string()])
            .args(["--metrics-addr", &self.metrics.to_string()])
            .arg("--tls-cert")
            .arg(self.certs.join("tls.crt"))
            .arg("--tls-key")
            .arg(self.certs.join("tls.key"))
            .arg("--config")
            .arg(&self.config)
            .arg("--client-ca")
            .arg(&self.client_ca)
            .args(["--log-format", "json"])
            .args(["--cert-reload-interval", "200ms"])
            .args(["--shutdown-delay", "0s"])
            // The auto-mode scenario adds and removes an old node.
            .args(["--detect-interval", "1s"])
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)?,
            );
        let mut proc = Proc::spawn_with("dind-injector serve", cmd, &log)?;
        let stdout = proc.child().stdout.take().context("serve's stdout")?;
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        if !line.starts_with("listening ") {
            proc.check_alive()?;
            bail!("dind-injector serve printed {line:?} instead of its listening line");
        }
        self.running = Some((proc, stdout));
        Ok(())
    }

    /// SIGTERM, as the kubelet sends it; the server must exit 0.
    pub fn stop(&mut self) -> Result<()> {
        let (mut proc, _) = self
            .running
            .take()
            .context("dind-injector is not running")?;
        let status = proc.stop(libc::SIGTERM, Duration::from_secs(30))?;
        ensure!(
            status.success(),
            "dind-injector serve exited with {status} on SIGTERM"
        );
        Ok(())
    }

    pub fn check_alive(&mut self) -> Result<()> {
        match &mut self.running {
            Some((proc, _)) => proc.check_alive(),
            None => Ok(()),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("injector.log")).unwrap_or_default()
    }

    /// The log once `found` says it holds what is looked for (the webhook's
    /// writer thread writes a line a little after the answer), or as it is
    /// after 5 s.
    pub async fn log_until(&self, found: impl Fn(&str) -> bool) -> String {
        let found = &found;
        eventually(
            "the webhook's log line",
            Duration::from_secs(5),
            || async move {
                let log = self.log();
                Ok(found(&log).then_some(log))
            },
        )
        .await
        .unwrap_or_else(|_| self.log())
    }

    pub async fn metrics(&self) -> Result<Metrics> {
        let mut tcp = TcpStream::connect(self.metrics).await?;
        tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: e2e\r\nConnection: close\r\n\r\n")
            .await?;
        let mut text = String::new();
        tcp.read_to_string(&mut text).await?;
        ensure!(
            text.starts_with("HTTP/1.1 200"),
            "metrics answered {text:?}"
        );
        Ok(Metrics(text))
    }

    /// The certificate the server presents now (DER), and the one in the
    /// watched file.
    pub async fn served_and_file_cert(&self) -> Result<(Vec<u8>, Vec<u8>)> {
        let tls = self.connect(true).await?;
        let served = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .context("no peer certificate")?
            .to_vec();
        let file = CertificateDer::from_pem_file(self.certs.join("tls.crt"))?.to_vec();
        Ok((served, file))
    }

    /// A TLS connection to the webhook port, with the suite's client
    /// certificate or without one.
    async fn connect(
        &self,
        with_certificate: bool,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(self.certs.join("ca.crt"))? {
            roots.add(cert?)?;
        }
        let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
        let mut config = if with_certificate {
            let certs =
                CertificateDer::pem_file_iter(&self.client.0)?.collect::<Result<Vec<_>, _>>()?;
            let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&self.client.1)?;
            builder.with_client_auth_cert(certs, key)?
        } else {
            builder.with_no_client_auth()
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tcp = TcpStream::connect(self.addr).await?;
        Ok(tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("127.0.0.1")?, tcp)
            .await?)
    }

    /// `GET /healthz` on the webhook port: the status line, or the error.
    pub async fn healthz(&self, with_certificate: bool) -> Result<String> {
        let mut tls = self.connect(with_certificate).await?;
        tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await?;
        let mut text = String::new();
        tls.read_to_string(&mut text).await?;
        Ok(text.lines().next().unwrap_or_default().to_string())
    }
}

/// The text of `/metrics`, with the few readings the scenarios need.
pub struct Metrics(pub String);

impl Metrics {
    /// Sum of the samples of `name` whose labels contain every `label`.
    pub fn sum(&self, name: &str, labels: &[&str]) -> f64 {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
                (metric == name && labels.iter().all(|want| rest.contains(want)))
                    .then(|| value.parse::<f64>().ok())
                    .flatten()
            })
            .sum()
    }

    /// Every review the webhook answered or failed, whatever the outcome.
    pub fn reviews(&self) -> f64 {
        self.sum("dind_injector_reviews_total", &[])
    }
}
