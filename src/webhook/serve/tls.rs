//! The serving certificate, reloaded without a restart.
//!
//! cert-manager and the kubelet update Secret volumes by swapping a `..data`
//! symlink, which fires a burst of events and briefly shows a new key next to
//! the old certificate. Rather than watching events, the store polls the two
//! files' contents: a change is taken only when both parse and the key matches
//! the certificate; otherwise the old pair keeps serving and the problem is
//! logged once. Polling reads through any kind of symlink swap or volume
//! type, and costs two small reads per interval.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// A certificate pair that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no usable PEM private key: {message}")]
    BadKey { path: PathBuf, message: String },
    #[error("{cert} and {key} do not belong together: {message}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },
    #[error("{path}: cannot verify client certificates with it: {message}")]
    BadClientCa { path: PathBuf, message: String },
    #[error("cannot build the TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// What is served now, and what it was loaded from.
struct Loaded {
    key: Arc<CertifiedKey>,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    not_after: Option<i64>,
}

pub struct CertStore {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<Loaded>>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

/// What a reload attempt found.
#[derive(Debug, PartialEq, Eq)]
pub enum Reload {
    Unchanged,
    Reloaded,
}

impl CertStore {
    /// Loads the pair; the server does not start without a usable one.
    pub fn load(
        cert_path: &Path,
        key_path: &Path,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, CertError> {
        let (cert_pem, key_pem) = read_pair(cert_path, key_path)?;
        let loaded = parse_pair(cert_path, key_path, &provider, cert_pem, key_pem)?;
        Ok(Self {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            provider,
            current: RwLock::new(Arc::new(loaded)),
        })
    }

    fn current(&self) -> Arc<Loaded> {
        // A poisoned lock only means a panic elsewhere while swapping an Arc;
        // the Arc inside is still whole.
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Expiry of the certificate being served, seconds since the epoch.
    pub fn not_after(&self) -> Option<i64> {
        self.current().not_after
    }

    /// Re-reads the files; swaps the pair only if both changed files are
    /// usable together.
    pub fn reload(&self) -> Result<Reload, CertError> {
        let (cert_pem, key_pem) = read_pair(&self.cert_path, &self.key_path)?;
        let current = self.current();
        if cert_pem == current.cert_pem && key_pem == current.key_pem {
            return Ok(Reload::Unchanged);
        }
        let loaded = parse_pair(
            &self.cert_path,
            &self.key_path,
            &self.provider,
            cert_pem,
            key_pem,
        )?;
        let new = Arc::new(loaded);
        match self.current.write() {
            Ok(mut guard) => *guard = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
        Ok(Reload::Reloaded)
    }

    /// Polls for changes until `stop` resolves. Each distinct problem is
    /// logged once, not at every poll.
    pub async fn watch(
        self: Arc<Self>,
        every: Duration,
        on_reload: impl Fn(&CertStore),
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        let mut last_error: Option<String> = None;
        loop {
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(every) => {}
            }
            let store = self.clone();
            let result = tokio::task::spawn_blocking(move || store.reload()).await;
            match result {
                Ok(Ok(Reload::Reloaded)) => {
                    last_error = None;
                    tracing::info!(cert = %self.cert_path.display(), not_after = ?self.not_after(), "serving certificate reloaded");
                    on_reload(&self);
                }
                Ok(Ok(Reload::Unchanged)) => last_error = None,
                Ok(Err(e)) => {
                    let message = e.to_string();
                    if last_error.as_deref() != Some(&message) {
                        tracing::warn!(error = %message, "new certificate files not usable yet; still serving the previous pair");
                        last_error = Some(message);
                    }
                }
                Err(join) => tracing::error!(error = %join, "certificate reload task failed"),
            }
        }
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current().key.clone())
    }
}

fn read_pair(cert: &Path, key: &Path) -> Result<(Vec<u8>, Vec<u8>), CertError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| CertError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    Ok((read(cert)?, read(key)?))
}

fn parse_pair(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
) -> Result<Loaded, CertError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|_| CertError::NoCertificate {
            path: cert_path.to_path_buf(),
        })?;
    let Some(leaf) = chain.first() else {
        return Err(CertError::NoCertificate {
            path: cert_path.to_path_buf(),
        });
    };
    let not_after = super::x509::not_after(leaf);
    let bad_key = |message: String| CertError::BadKey {
        path: key_path.to_path_buf(),
        message,
    };
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| bad_key(e.to_string()))?;
    let signing = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| bad_key(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| CertError::Mismatch {
        cert: cert_path.to_path_buf(),
        key: key_path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(Loaded {
        key: Arc::new(certified),
        cert_pem,
        key_pem,
        not_after,
    })
}

/// The rustls server configuration: HTTP/2 and HTTP/1.1 by ALPN, TLS 1.2+,
/// certificates from the store.
/// The TLS configuration of the webhook port. With `client_ca`, every
/// client must present a certificate that CA issued for client
/// authentication (the apiserver does, through its AdmissionConfiguration's
/// `kubeConfigFile`); other pods of the cluster then cannot even complete a
/// handshake.
pub fn server_config(
    store: Arc<CertStore>,
    provider: Arc<CryptoProvider>,
    client_ca: Option<&Path>,
) -> Result<rustls::ServerConfig, CertError> {
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => builder.with_client_cert_verifier(client_verifier(path, provider)?),
    };
    let mut config = builder.with_cert_resolver(store);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Verifies client certificates against the CA certificates in `path` (PEM).
fn client_verifier(
    path: &Path,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, CertError> {
    let bad = |message: String| CertError::BadClientCa {
        path: path.to_path_buf(),
        message,
    };
    let pem = std::fs::read(path).map_err(|source| CertError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| bad(e.to_string()))?;
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(CertError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::crypto::provider;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "dind-injector-tls-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn reload_takes_only_matching_pairs() {
        let d = dir();
        crate::webhook::pki::write_dev_certs(&d, &[], 30).unwrap();
        let (cert, key) = (d.join("tls.crt"), d.join("tls.key"));
        let store = CertStore::load(&cert, &key, provider()).unwrap();
        assert_eq!(store.reload().unwrap(), Reload::Unchanged);
        let first = store.not_after();
        assert!(first.is_some());

        // A new key next to the old certificate: refused, old pair kept.
        let old_cert = std::fs::read(&cert).unwrap();
        crate::webhook::pki::write_dev_certs(&d, &[], 60).unwrap();
        std::fs::write(&cert, &old_cert).unwrap();
        assert!(matches!(store.reload(), Err(CertError::Mismatch { .. })));
        assert_eq!(store.not_after(), first);

        // Garbage: refused with the file named.
        std::fs::write(&cert, b"garbage").unwrap();
        let err = store.reload().unwrap_err().to_string();
        assert!(err.contains("tls.crt holds no PEM certificate"), "{err}");

        // A whole new pair: taken.
        crate::webhook::pki::write_dev_certs(&d, &[], 90).unwrap();
        assert_eq!(store.reload().unwrap(), Reload::Reloaded);
        assert!(store.not_after() > first);
        std::fs::remove_dir_all(&d).ok();
    }

    /// The kubelet's Secret volume update: files are links through `..data`,
    /// which is swapped to a new timestamped directory in one rename.
    #[test]
    fn follows_a_kubelet_style_symlink_swap() {
        use std::os::unix::fs::symlink;
        let d = dir();
        let (v1, v2) = (d.join("..2026_11_28_v1"), d.join("..2026_11_28_v2"));
        crate::webhook::pki::write_dev_certs(&v1, &[], 30).unwrap();
        std::fs::create_dir_all(&v2).unwrap();
        for f in ["ca.crt", "ca.key"] {
            std::fs::copy(v1.join(f), v2.join(f)).unwrap();
        }
        crate::webhook::pki::write_dev_certs(&v2, &[], 60).unwrap();
        symlink("..2026_11_28_v1", d.join("..data")).unwrap();
        for f in ["tls.crt", "tls.key"] {
            symlink(format!("..data/{f}"), d.join(f)).unwrap();
        }
        let store = CertStore::load(&d.join("tls.crt"), &d.join("tls.key"), provider()).unwrap();
        let before = store.not_after();
        symlink("..2026_11_28_v2", d.join("..data_tmp")).unwrap();
        std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
        assert_eq!(store.reload().unwrap(), Reload::Reloaded);
        assert!(store.not_after() > before);
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn missing_files_are_named() {
        let err = CertStore::load(
            Path::new("/nonexistent/tls.crt"),
            Path::new("/x"),
            provider(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("/nonexistent/tls.crt"), "{err}");
    }
}
