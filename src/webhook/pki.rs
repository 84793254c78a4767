//! Certificates for development and tests: a dev CA and serving certificates
//! signed by it (`dind-injector certs`, `make run`, the test suites).
//!
//! In a cluster, cert-manager or the Helm chart issues the webhook's
//! certificate instead; nothing here runs in production.

use std::path::{Path, PathBuf};

use crate::inpod::rundir::write_atomic;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// Subject of the dev CA. Fixed, so that an existing CA can be reloaded from
/// its key alone and keep issuing certificates that chain to `ca.crt`.
const CA_COMMON_NAME: &str = "dind-injector dev CA";

/// Names every dev serving certificate carries.
pub const DEFAULT_SANS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot generate {what}: {source}")]
    Generate {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Write(#[from] crate::inpod::rundir::Error),
    #[error("{path} is not a usable PEM private key: {source}")]
    BadKey {
        path: PathBuf,
        #[source]
        source: rcgen::Error,
    },
}

fn gen(what: &'static str) -> impl FnOnce(rcgen::Error) -> PkiError {
    move |source| PkiError::Generate { what, source }
}

/// A CA that can sign serving certificates.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub cert_pem: String,
    pub key_pem: String,
}

fn ca_params() -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(gen("CA parameters"))?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, CA_COMMON_NAME);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = rcgen::date_time_ymd(2025, 1, 1);
    params.not_after = rcgen::date_time_ymd(2035, 1, 1);
    Ok(params)
}

impl Ca {
    pub fn generate() -> Result<Self, PkiError> {
        let key = KeyPair::generate().map_err(gen("CA key"))?;
        let params = ca_params()?;
        let cert = params.self_signed(&key).map_err(gen("CA certificate"))?;
        let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
        Ok(Self {
            issuer: Issuer::new(params, key),
            cert_pem,
            key_pem,
        })
    }

    /// Reloads a CA written by [`Ca::write`] (same subject, same key).
    pub fn load(dir: &Path) -> Result<Self, PkiError> {
        let key_path = dir.join("ca.key");
        let key_pem = read(&key_path)?;
        let cert_pem = read(&dir.join("ca.crt"))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|source| PkiError::BadKey {
            path: key_path,
            source,
        })?;
        Ok(Self {
            issuer: Issuer::new(ca_params()?, key),
            cert_pem,
            key_pem,
        })
    }

    /// Issues a serving certificate for `sans` (DNS names or IP addresses),
    /// valid from `not_before` for `days`. Returns (cert PEM, key PEM).
    pub fn issue_server(&self, sans: &[String], days: u32) -> Result<(String, String), PkiError> {
        let name = sans.first().map_or("dind-injector", String::as_str);
        self.issue(sans, name, ExtendedKeyUsagePurpose::ServerAuth, days)
    }

    /// Issues a client certificate for `name` (the apiserver's, for
    /// `serve --client-ca`). Returns (cert PEM, key PEM).
    pub fn issue_client(&self, name: &str, days: u32) -> Result<(String, String), PkiError> {
        self.issue(&[], name, ExtendedKeyUsagePurpose::ClientAuth, days)
    }

    fn issue(
        &self,
        sans: &[String],
        common_name: &str,
        usage: ExtendedKeyUsagePurpose,
        days: u32,
    ) -> Result<(String, String), PkiError> {
        let key = KeyPair::generate().map_err(gen("key"))?;
        let mut params = CertificateParams::new(sans.to_vec()).map_err(gen("parameters"))?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(i64::from(days));
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(gen("certificate"))?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Writes `ca.crt` and `ca.key` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), PkiError> {
        write_atomic(&dir.join("ca.key"), self.key_pem.as_bytes(), 0o600)?;
        Ok(write_atomic(
            &dir.join("ca.crt"),
            self.cert_pem.as_bytes(),
            0o644,
        )?)
    }
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// `dind-injector certs`: the dev CA (kept if `dir` has one) and a fresh
/// serving certificate `tls.crt`/`tls.key` for the default names and `extra`.
pub fn write_dev_certs(dir: &Path, extra: &[String], days: u32) -> Result<Vec<String>, PkiError> {
    std::fs::create_dir_all(dir).map_err(|source| PkiError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let ca = if dir.join("ca.key").exists() && dir.join("ca.crt").exists() {
        Ca::load(dir)?
    } else {
        let ca = Ca::generate()?;
        ca.write(dir)?;
        ca
    };
    let mut sans: Vec<String> = DEFAULT_SANS.iter().map(|s| s.to_string()).collect();
    sans.extend(
        extra
            .iter()
            .filter(|s| !sans.contains(s))
            .cloned()
            .collect::<Vec<_>>(),
    );
    let (cert, key) = ca.issue_server(&sans, days)?;
    // Key first: a watcher that sees the new key with the old certificate
    // finds a mismatch and keeps the old pair until the certificate follows.
    write_atomic(&dir.join("tls.key"), key.as_bytes(), 0o600)?;
    write_atomic(&dir.join("tls.crt"), cert.as_bytes(), 0o644)?;
    Ok(sans)
}

/// `dind-injector certs --client NAME`: `client.crt`/`client.key` for
/// `NAME` from the dev CA in `dir` (made by [`write_dev_certs`] first).
pub fn write_client_cert(dir: &Path, name: &str, days: u32) -> Result<(), PkiError> {
    let (cert, key) = Ca::load(dir)?.issue_client(name, days)?;
    write_atomic(&dir.join("client.key"), key.as_bytes(), 0o600)?;
    write_atomic(&dir.join("client.crt"), cert.as_bytes(), 0o644)?;
    Ok(())
}
