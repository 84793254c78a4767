//! What the webhook's two HTTPS clients share (the apiserver's,
//! `webhook/apiserver`, and the registries', `webhook/registry`): hyper-util's
//! pooled client over hyper-rustls with ring, and reading PEM certificates.

use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// GETs only: every request body is empty.
pub type Client = HttpClient<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// One TCP connect (an apiserver or registry that does not answer is
/// noticed in this time, whatever the caller's own bound).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A client trusting `roots`, presenting `identity` if given; plain HTTP
/// only when `plain_http` (the caller then decides which hosts get it).
pub fn client(
    roots: rustls::RootCertStore,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    plain_http: bool,
) -> Result<Client, rustls::Error> {
    let tls = rustls::ClientConfig::builder_with_provider(crate::crypto::provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let tls = match identity {
        Some((chain, key)) => tls.with_client_auth_cert(chain, key)?,
        None => tls.with_no_client_auth(),
    };
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let https = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls);
    let https = if plain_http {
        https.https_or_http()
    } else {
        https.https_only()
    };
    let https = https.enable_http1().wrap_connector(http);
    Ok(HttpClient::builder(TokioExecutor::new()).build(https))
}

/// The certificates in a PEM text, at least one.
pub fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no PEM certificate in it".into());
    }
    Ok(certs)
}
