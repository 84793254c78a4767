//! "Does dockerd answer?": `GET /_ping` over the TLS endpoint the runner
//! will use, authenticated with the client certificates from `init`. A
//! blocking TCP socket, rustls and a hand-written HTTP/1.1 request: no
//! async runtime in a helper that runs in every CI pod.
//!
//! Names are resolved without the C library: `localhost` and IP literals
//! directly (a static glibc binary cannot load NSS modules in an Alpine
//! image); other names go through the standard resolver.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

const TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0:?} is not a tcp://HOST:PORT Docker host")]
    BadHost(String),
    #[error("cannot read {path}: {source}")]
    Pem {
        path: String,
        source: rustls::pki_types::pem::Error,
    },
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("dockerd answered {0:?}, not 200 OK")]
    NotOk(String),
}

/// `tcp://HOST:PORT` (or `https://`), HOST possibly `[v6]`; port 2376 by default.
pub fn parse_host(url: &str) -> Result<(String, u16), Error> {
    let bad = || Error::BadHost(url.to_string());
    let rest = url
        .strip_prefix("tcp://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(bad)?;
    let rest = rest.trim_end_matches('/');
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(bad)?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad())?,
            None if after.is_empty() => crate::contract::DOCKER_TLS_PORT,
            None => return Err(bad()),
        };
        (h.to_string(), port)
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().map_err(|_| bad())?),
            None => (rest.to_string(), crate::contract::DOCKER_TLS_PORT),
        }
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host, port))
}

fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, Error> {
    if host == "localhost" {
        return Ok(vec![
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port),
        ]);
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|_| Error::Resolve(host.to_string()))?
        .collect();
    if addrs.is_empty() {
        return Err(Error::Resolve(host.to_string()));
    }
    Ok(addrs)
}

fn client_config(client_dir: &Path) -> Result<Arc<rustls::ClientConfig>, Error> {
    let path = |name: &str| client_dir.join(name);
    let pem_err = |name: &str| {
        let p = path(name).display().to_string();
        move |source| Error::Pem { path: p, source }
    };
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(path("ca.pem")).map_err(pem_err("ca.pem"))? {
        roots.add(ca.map_err(pem_err("ca.pem"))?)?;
    }
    let chain = CertificateDer::pem_file_iter(path("cert.pem"))
        .map_err(pem_err("cert.pem"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err("cert.pem"))?;
    let key = PrivateKeyDer::from_pem_file(path("key.pem")).map_err(pem_err("key.pem"))?;
    let config = rustls::ClientConfig::builder_with_provider(crate::crypto::provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    Ok(Arc::new(config))
}

/// One `GET /_ping` against `docker_host` with the certificates in
/// `client_dir` (`ca.pem`, `cert.pem`, `key.pem`). `Ok` means HTTP 200.
pub fn ping(docker_host: &str, client_dir: &Path) -> Result<(), Error> {
    let (host, port) = parse_host(docker_host)?;
    let config = client_config(client_dir)?;
    let name = ServerName::try_from(host.clone()).map_err(|_| Error::BadHost(host.clone()))?;
    let mut last = Error::Resolve(host.clone());
    for addr in resolve(&host, port)? {
        match ping_addr(addr, &host, name.clone(), config.clone()) {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn ping_addr(
    addr: SocketAddr,
    host: &str,
    name: ServerName<'static>,
    config: Arc<rustls::ClientConfig>,
) -> Result<(), Error> {
    let tcp = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    tcp.set_read_timeout(Some(TIMEOUT))?;
    tcp.set_write_timeout(Some(TIMEOUT))?;
    let conn = rustls::ClientConnection::new(config, name)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let request = format!("GET /_ping HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes())?;
    tls.flush()?;
    // The status line is all we need; stop reading as soon as we have it
    // (some servers close without close_notify, which is not our problem).
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    while !buf.windows(2).any(|w| w == b"\r\n") && buf.len() < 4096 {
        match tls.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if buf.is_empty() => return Err(e.into()),
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let status = text.lines().next().unwrap_or("").trim().to_string();
    let mut words = status.split_ascii_whitespace();
    match (words.next(), words.next()) {
        (Some(v), Some("200")) if v.starts_with("HTTP/1.") => Ok(()),
        _ => Err(Error::NotOk(status)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(
            parse_host("tcp://localhost:2376").unwrap(),
            ("localhost".into(), 2376)
        );
        assert_eq!(
            parse_host("tcp://127.0.0.1:9").unwrap(),
            ("127.0.0.1".into(), 9)
        );
        assert_eq!(parse_host("tcp://[::1]:23").unwrap(), ("::1".into(), 23));
        assert_eq!(parse_host("tcp://docker").unwrap(), ("docker".into(), 2376));
        assert!(parse_host("unix:///var/run/docker.sock").is_err());
        assert!(parse_host("tcp://:1").is_err());
    }
}
